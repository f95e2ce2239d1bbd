"""Whole-frame (global) motion estimation and Fourier shifting of dose-fractionated movies.

Conventions
-----------
* A movie is ``frames`` of shape ``(t, h, w)``; shifts are ``(t, 2)`` tensors of ``(dy, dx)`` in pixels.
* :func:`estimate_drift` returns the **drift**: the displacement of each frame's content relative to
  the reference position, i.e. ``frames[i](r) ~ image(r - drift[i])``. Aligning a movie therefore means
  ``shift_frames(frames, -drift)`` (what :func:`cryocare_torch.prepare.frames.frame_sums` does).
* The trajectory has no absolute origin (every frame is aligned to the others); ``origin="mean"``
  (default) makes the shifts average to zero, ``origin="first"`` makes ``drift[0] == (0, 0)``.
  "mean" keeps the aligned sum at the exposure-averaged specimen position, minimises the shifts
  applied (less wrap-around at the borders) and spreads the estimation error over all frames.

Method (MotionCor2/Unblur-style, implemented from the published descriptions)
------------------------------------------------------------------------------
Each frame is Fourier transformed once, its mean removed, and the spectrum cropped to the band that
the B-factor envelope ``exp(-B s^2 / 4)`` leaves (``B`` in A^2, ``s`` in 1/A; per image, as in
MotionCor2 and teamtomo) -- this Fourier binning makes 4k frames cheap without losing the
frequencies that carry the alignment signal. Then, ``iterations`` times: every frame is
cross-correlated with the sum of all *other* frames shifted by the current estimates (excluding the
frame itself so its own noise does not pull the peak towards zero shift), the integer peak is found
within ``max_shift``, and refined to ~1/100 pixel by an upsampled matrix DFT of the cross-power
spectrum around the peak (Guizar-Sicairos et al. 2008) followed by a parabolic fit. Optionally the
trajectory is smoothed in time by a Gaussian-weighted local linear fit (unbiased for linear drift).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..errors import ConfigError, DataError

Reference = Literal["sum-minus-frame", "sum"]
Origin = Literal["mean", "first"]

_UPSAMPLE = 20  # upsampled-DFT points per working pixel around the integer peak
_MAX_BIN = 8
_HIGHPASS_CYCLES = 2.0  # frequencies below ~2 cycles per frame (illumination, gain gradients) are damped


def _good_size(n: int) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3 and 5 (fast FFT size)."""
    n = max(2, int(math.ceil(n)))
    n += n % 2
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def validate_frames(frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
    """Check the shape of a ``(t, h, w)`` movie; raises :class:`DataError` with a one-line reason.

    Finiteness is checked frame by frame where the frames are read anyway (a full pass costs seconds on 4k).
    """
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(frames)
    if frames.ndim != 3:
        raise DataError(f"{name} must be a (t, h, w) movie, got shape {tuple(frames.shape)}")
    t, h, w = frames.shape
    if t < 2:
        raise DataError(f"{name} has {t} frame(s); motion correction needs at least 2")
    if h < 16 or w < 16:
        raise DataError(f"{name} frames are {h}x{w} pixels; at least 16x16 are needed")
    return frames


def check_finite(value: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` when ``value`` (e.g. a frame's sum: NaN/inf propagate) is not finite."""
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"{what} contains NaN or infinite values; fix or mask the movie first")


def _freqs(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rFFT frequency grids (cycles per pixel), shapes ``(h, 1)`` and ``(1, w//2+1)``, float64."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)[None, :]
    return fy, fx


def _phase(shifts: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i k.s)``: multiplying a spectrum by it moves the content by ``+s``; ``(t, h, w//2+1)``.

    Built as the outer product of a column and a row phase (separable), so only ``t (h + w)`` sines.
    """
    s = shifts.to(torch.float64)
    one = torch.ones((), dtype=torch.float64, device=s.device)
    py = torch.polar(one, -2.0 * math.pi * s[:, 0, None, None] * fy).to(torch.complex64)  # (t, h, 1)
    px = torch.polar(one, -2.0 * math.pi * s[:, 1, None, None] * fx).to(torch.complex64)  # (t, 1, w')
    return py * px


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move the content of each frame by ``shifts[i] = (dy, dx)`` pixels (Fourier shift, circular).

    ``out[i](r) = frames[i](r - shifts[i])``; content leaving one border re-enters at the opposite one.
    Integer shifts are exact (a circular roll up to float32 rounding); sub-pixel shifts are band-limited
    interpolation, the Nyquist row/column of even sizes is attenuated by ``cos(pi * frac)``.
    Accepts ``(h, w)`` with ``shifts`` of shape ``(2,)``, or ``(t, h, w)`` with ``(t, 2)``. Returns float32.
    """
    single = frames.ndim == 2
    x = frames[None] if single else frames
    s = torch.as_tensor(shifts, dtype=torch.float64, device=x.device).reshape(-1, 2)
    if x.ndim != 3 or s.shape[0] != x.shape[0]:
        raise DataError(f"shift_frames needs (t, h, w) frames and (t, 2) shifts, got {tuple(frames.shape)} "
                        f"and {tuple(torch.as_tensor(shifts).shape)}")
    h, w = x.shape[-2:]
    fy, fx = _freqs(h, w, x.device)
    spec = torch.fft.rfft2(x.to(torch.float32)) * _phase(s, fy, fx)
    out = torch.fft.irfft2(spec, s=(h, w))
    return out[0] if single else out


def _crop_spectrum(spec: torch.Tensor, h2: int, w2: int) -> torch.Tensor:
    """Keep the lowest ``h2 x (w2//2+1)`` frequencies of an rFFT spectrum (Fourier binning)."""
    top = spec[..., : h2 // 2, : w2 // 2 + 1]
    bottom = spec[..., spec.shape[-2] - h2 // 2 :, : w2 // 2 + 1]
    return torch.cat([top, bottom], dim=-2)


def _working_size(h: int, w: int, pixel: float, bfactor: float, max_work: int) -> tuple[int, int]:
    """Grid that holds the frequencies where the cross-power envelope ``exp(-B s^2/2)`` exceeds e^-4."""
    f = 1.0
    if bfactor > 0:
        s_max = math.sqrt(8.0 / bfactor)  # 1/A
        f = max(1.0, 1.0 / (2.0 * s_max * pixel))
    f = max(f, max(h, w) / max_work)
    h2, w2 = min(h, _good_size(h / f)), min(w, _good_size(w / f))
    return max(h2 - h2 % 2, 16), max(w2 - w2 % 2, 16)


def _upsampled_peak(cross: torch.Tensor, peak: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sub-pixel maxima of the correlations of rFFT cross-power spectra ``cross`` (t, h, w//2+1).

    Evaluates the correlation on a ``1/_UPSAMPLE``-pixel grid over +-1 pixel around the integer ``peak``
    (t, 2) by two small matrix DFTs, then fits a parabola through the best point and its neighbours.
    """
    u = _UPSAMPLE
    offs = torch.arange(-u, u + 1, device=cross.device, dtype=torch.float64) / u  # (m,)
    fy, fx = _freqs(h, w, cross.device)
    ry = peak[:, 0, None].to(torch.float64) + offs  # (t, m)
    rx = peak[:, 1, None].to(torch.float64) + offs
    ey = torch.polar(torch.ones(1, device=cross.device, dtype=torch.float64),
                     2 * math.pi * ry[:, :, None] * fy[None, :, 0]).to(torch.complex64)  # (t, m, h)
    ex = torch.polar(torch.ones(1, device=cross.device, dtype=torch.float64),
                     2 * math.pi * fx[0][None, :, None] * rx[:, None, :]).to(torch.complex64)  # (t, w', m)
    weight = torch.full((fx.shape[1],), 2.0, device=cross.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    cc = (ey @ (cross * weight) @ ex).real  # (t, m, m)
    m = offs.numel()
    flat = cc.reshape(cc.shape[0], -1).argmax(dim=1)
    iy, ix = (flat // m).clamp(1, m - 2), (flat % m).clamp(1, m - 2)
    t_idx = torch.arange(cc.shape[0], device=cc.device)

    def vertex(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        den = a - 2 * b + c
        return torch.where(den < 0, 0.5 * (a - c) / den.clamp(max=-1e-30), torch.zeros_like(den)).clamp(-1, 1)

    dy = vertex(cc[t_idx, iy - 1, ix], cc[t_idx, iy, ix], cc[t_idx, iy + 1, ix])
    dx = vertex(cc[t_idx, iy, ix - 1], cc[t_idx, iy, ix], cc[t_idx, iy, ix + 1])
    return torch.stack([ry[t_idx, iy] + dy.double() / u, rx[t_idx, ix] + dx.double() / u], dim=1)


def smooth_trajectory(shifts: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-weighted local linear fit of a ``(t, 2)`` trajectory (sigma in frames; 0: unchanged).

    Unlike a plain moving average it leaves a constant-velocity drift (and its end points) unbiased.
    """
    if sigma <= 0 or shifts.shape[0] < 3:
        return shifts
    t = shifts.shape[0]
    idx = torch.arange(t, dtype=torch.float64, device=shifts.device)
    d = idx[None, :] - idx[:, None]  # (t0, j)
    wgt = torch.exp(-0.5 * (d / sigma) ** 2)
    s0, s1, s2 = wgt.sum(1), (wgt * d).sum(1), (wgt * d * d).sum(1)
    y = shifts.to(torch.float64)
    b0, b1 = wgt @ y, (wgt * d) @ y  # (t0, 2)
    det = (s0 * s2 - s1 * s1).clamp(min=1e-12)
    return ((s2[:, None] * b0 - s1[:, None] * b1) / det[:, None]).to(shifts.dtype)


def estimate_drift(
    frames: torch.Tensor,
    *,
    pixel_size: float | None = None,
    bfactor: float = 500.0,
    max_shift: float = 50.0,
    iterations: int = 3,
    reference: Reference = "sum-minus-frame",
    origin: Origin = "mean",
    smoothing: float = 0.0,
    max_work_size: int = 1024,
    tolerance: float = 0.005,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Whole-frame drift ``(t, 2)`` = ``(dy, dx)`` in pixels of a ``(t, h, w)`` movie, sub-pixel.

    Parameters: ``pixel_size`` in A (None: 1, i.e. ``bfactor`` in pixel^2 units); ``bfactor`` low-pass
    of each frame for the correlation (A^2, MotionCor2's default 500; 0 disables); ``max_shift`` largest
    drift searched, in pixels from the reference position; ``iterations`` alignment rounds (stops early
    when no shift changes by more than ``tolerance`` pixels); ``reference`` "sum-minus-frame" (each
    frame against the others; unbiased) or "sum" (includes the frame; biased towards zero, for
    comparison only); ``origin`` "mean" or "first" (see module docs); ``smoothing`` sigma in frames of
    the temporal smoothing (0: off); ``max_work_size`` cap on the Fourier-binned grid edge.
    Returns float32 shifts on the CPU; ``drift[i]`` is how far frame ``i``'s content moved.
    """
    frames = validate_frames(frames)
    if bfactor < 0 or not math.isfinite(bfactor):
        raise ConfigError(f"bfactor must be >= 0 A^2, got {bfactor}")
    if not max_shift > 0:
        raise ConfigError(f"max_shift must be > 0 pixels, got {max_shift}")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    if reference not in ("sum-minus-frame", "sum"):
        raise ConfigError(f"reference must be 'sum-minus-frame' or 'sum', got '{reference}'")
    if origin not in ("mean", "first"):
        raise ConfigError(f"origin must be 'mean' or 'first', got '{origin}'")
    if pixel_size is not None and not pixel_size > 0:
        raise ConfigError(f"pixel_size must be > 0 A, got {pixel_size}; omit it if unknown")
    dev = torch.device(device) if device is not None else frames.device
    t, h, w = frames.shape
    pixel = float(pixel_size) if pixel_size is not None else 1.0
    h2, w2 = _working_size(h, w, pixel, bfactor, max(32, int(max_work_size)))
    # real-space binning before the FFT where the kept band is <= 1/4 of the binned grid (4x cheaper FFTs
    # per factor 2; the pixel-sum attenuation at the band edge is < 10%); the pixels left over are dropped
    b = 1
    while 2 * b <= min(h / h2, w / w2) / 2 and b < _MAX_BIN:
        b *= 2
    he, we = (h // b) * b, (w // b) * b  # pixels covered by the binned frames
    scale = torch.tensor([he / h2, we / w2], dtype=torch.float64, device=dev)

    fy, fx = _freqs(h2, w2, dev)
    s2 = (fy * (h2 / he) / pixel) ** 2 + (fx * (w2 / we) / pixel) ** 2  # (1/A)^2 on the working grid
    filt = torch.exp(-bfactor * s2 / 4.0)
    cyc2 = (fy * h2) ** 2 + (fx * w2) ** 2  # (cycles per frame)^2
    filt = (filt * (1.0 - torch.exp(-cyc2 / (2 * _HIGHPASS_CYCLES**2)))).to(torch.float32)
    filt[h2 // 2, :] = 0.0  # Nyquist row / column carry no usable phase
    filt[:, -1] = 0.0 if w2 % 2 == 0 else filt[:, -1]

    spectra = torch.empty((t, h2, w2 // 2 + 1), dtype=torch.complex64, device=dev)
    for i in range(t):
        frame = frames[i].to(device=dev, dtype=torch.float32)
        if b > 1:
            frame = torch.nn.functional.avg_pool2d(frame[None, None], b)[0, 0]
        mean = frame.mean()
        check_finite(mean, f"frame {i}")
        spectra[i] = _crop_spectrum(torch.fft.rfft2(frame - mean), h2, w2) * filt

    rmax = float(max_shift) / scale  # (2,) working pixels
    yy = torch.fft.fftfreq(h2, 1.0 / h2, device=dev, dtype=torch.float64)[:, None]
    xx = torch.fft.fftfreq(w2, 1.0 / w2, device=dev, dtype=torch.float64)[None, :]
    search = ((yy / rmax[0]) ** 2 + (xx / rmax[1]) ** 2) <= 1.0  # (h2, w2), wrapped coordinates
    search[0, 0] = True

    shifts = torch.zeros((t, 2), dtype=torch.float64, device=dev)  # working pixels
    for _ in range(iterations):
        aligned = spectra * _phase(-shifts, fy, fx)
        total = aligned.sum(dim=0, keepdim=True)
        ref = total - aligned if reference == "sum-minus-frame" else total.expand_as(aligned)
        cross = spectra * ref.conj()
        cc = torch.fft.irfft2(cross, s=(h2, w2)).masked_fill(~search, -torch.inf)
        flat = cc.reshape(t, -1).argmax(dim=1)
        peak = torch.stack([flat // w2, flat % w2], dim=1).to(torch.float64)
        peak = torch.where(peak > torch.tensor([h2 // 2, w2 // 2], device=dev), peak - torch.tensor([h2, w2],
                           device=dev), peak)
        new = _upsampled_peak(cross, peak, h2, w2)
        new = smooth_trajectory(new - new.mean(dim=0), smoothing)
        change = float((new - shifts).abs().max() * scale.max())
        shifts = new
        if change < tolerance:
            break

    drift = shifts * scale
    drift = drift - (drift[:1] if origin == "first" else drift.mean(dim=0, keepdim=True))
    return drift.to(torch.float32).cpu()
