"""Whole-frame (global) motion estimation and Fourier shifting of dose-fractionated movies.

Conventions
-----------
* A movie is ``frames`` of shape ``(t, h, w)``; shifts are ``(t, 2)`` tensors of ``(dy, dx)`` in pixels.
* :func:`estimate_drift` returns the **drift**: the displacement of each frame's content relative to
  the reference position, i.e. ``frames[i](r) ~ image(r - drift[i])``. Aligning a movie therefore means
  ``shift_frames(frames, -drift)`` (what :func:`cryocare_torch.tomo.frames.frame_sums` does).
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

Low-dose safeguard: a peak counts only if it stands ``min_peak_z`` (9) standard deviations above its
correlation map (pure-noise movies reach ~6; their "peaks" are anywhere within ``max_shift``). If any
frame's peak is weaker, sums of 2, 4, ... consecutive frames are aligned instead (MotionCor2's frame
grouping) and the group shifts interpolated linearly; if even two halves are too weak, the drift is
returned as zero (no correction) and :class:`DriftEstimate` says so (``reliable=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from ..fourier import crop_spectrum, good_fft_size, phase_ramp, rfft_freqs
from ..tomo.frames import check_finite, validate_frames

__all__ = ["DriftEstimate", "estimate_drift", "estimate_drift_detailed", "smooth_trajectory"]

Reference = Literal["sum-minus-frame", "sum"]
Origin = Literal["mean", "first"]

_UPSAMPLE = 20  # upsampled-DFT points per working pixel around the integer peak
_MAX_BIN = 8  # largest real-space binning before the FFT
_HIGHPASS_CYCLES = 2.0  # frequencies below ~2 cycles per frame (illumination, gain gradients) are damped
_MIN_PEAK_Z = 9.0  # pure-noise movies reach ~6.3; borderline peaks (8-9) gave ~1 px errors on simulated tilts
_PEAK_EXCLUSION = 4.0  # working pixels around a peak left out of the correlation-map statistics


def _working_size(h: int, w: int, pixel: float, bfactor: float, max_work: int) -> tuple[int, int]:
    """Grid that holds the frequencies where the cross-power envelope ``exp(-B s^2/2)`` exceeds e^-4."""
    f = 1.0
    if bfactor > 0:
        s_max = math.sqrt(8.0 / bfactor)  # 1/A
        f = max(1.0, 1.0 / (2.0 * s_max * pixel))
    f = max(f, max(h, w) / max_work)
    h2, w2 = min(h, good_fft_size(h / f)), min(w, good_fft_size(w / f))
    return max(h2 - h2 % 2, 16), max(w2 - w2 % 2, 16)


def _upsampled_peak(cross: torch.Tensor, peak: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sub-pixel maxima of the correlations of rFFT cross-power spectra ``cross`` (t, h, w//2+1).

    Evaluates the correlation on a ``1/_UPSAMPLE``-pixel grid over +-1 pixel around the integer ``peak``
    (t, 2) by two small matrix DFTs, then fits a parabola through the best point and its neighbours.
    """
    u = _UPSAMPLE
    offs = torch.arange(-u, u + 1, device=cross.device, dtype=torch.float64) / u  # (m,)
    fy, fx = rfft_freqs(h, w, cross.device)
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


@dataclass(frozen=True)
class DriftEstimate:
    """Result of :func:`estimate_drift_detailed`."""

    shifts: torch.Tensor
    """``(t, 2)`` float32 drift ``(dy, dx)`` in pixels (as :func:`estimate_drift`)."""
    peak_z: torch.Tensor
    """Per group: correlation peak height in standard deviations of the correlation map over the search area."""
    group_size: int
    """Consecutive frames summed per aligned group (1: every frame aligned on its own)."""
    reliable: bool
    """False when no grouping gave significant peaks; ``shifts`` are then all zero (no correction)."""


def _align(spectra: torch.Tensor, search: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor, iterations: int,
           reference: str, smoothing: float, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterative alignment of the rows of ``spectra`` (working pixels, zero mean) and final peak z-scores."""
    t, h2, w2 = spectra.shape[0], search.shape[0], search.shape[1]
    size = torch.tensor([h2, w2], device=spectra.device)
    shifts = torch.zeros((t, 2), dtype=torch.float64, device=spectra.device)
    for _ in range(iterations):
        aligned = spectra * phase_ramp(-shifts, fy, fx)
        total = aligned.sum(dim=0, keepdim=True)
        ref = total - aligned if reference == "sum-minus-frame" else total.expand_as(aligned)
        cross = spectra * ref.conj()
        cc = torch.fft.irfft2(cross, s=(h2, w2))
        best = cc[:, search].argmax(dim=1)  # peaks inside the search area only
        flat = search.flatten().nonzero()[:, 0][best]
        peak = torch.stack([flat // w2, flat % w2], dim=1)
        peak = torch.where(peak > size // 2, peak - size, peak).to(torch.float64)
        new = _upsampled_peak(cross, peak, h2, w2)  # offset from the mean position of the other frames
        if reference == "sum-minus-frame":  # solve d_i - mean_{j!=i} d_j = new_i - mean_{j!=i} s_j for zero-mean d
            new = ((t - 1) * new + shifts - shifts.mean(dim=0)) / t  # (exact in one step; plain Jacobi oscillates)
        new = smooth_trajectory(new - new.mean(dim=0), smoothing)
        change = float((new - shifts).abs().max())
        shifts = new
        if change < tol:
            break
    # significance: peak height over the whole map's statistics away from the peak (independent of max_shift)
    yy = torch.fft.fftfreq(h2, 1.0 / h2, device=cc.device, dtype=torch.float64)
    xx = torch.fft.fftfreq(w2, 1.0 / w2, device=cc.device, dtype=torch.float64)
    dy = torch.remainder(yy[None, :] - peak[:, :1] + h2 / 2, h2) - h2 / 2  # (t, h2), wrapped
    dx = torch.remainder(xx[None, :] - peak[:, 1:] + w2 / 2, w2) - w2 / 2
    away = (dy[:, :, None] ** 2 + dx[:, None, :] ** 2) > _PEAK_EXCLUSION**2
    n = away.sum(dim=(1, 2)).clamp(min=2)
    mean = (cc * away).sum(dim=(1, 2)) / n
    var = (((cc - mean[:, None, None]) * away) ** 2).sum(dim=(1, 2)) / (n - 1)
    height = cc.reshape(t, -1).gather(1, flat[:, None])[:, 0]
    return shifts, (height - mean) / var.sqrt().clamp(min=1e-30)


def _interpolate(times: torch.Tensor, values: torch.Tensor, t: int) -> torch.Tensor:
    """Piecewise-linear (extrapolated at the ends) per-frame values from group ``times``; (t, 2)."""
    x = torch.arange(t, dtype=torch.float64, device=values.device)
    j = (torch.searchsorted(times, x) - 1).clamp(0, len(times) - 2)
    frac = ((x - times[j]) / (times[j + 1] - times[j]))[:, None]
    return values[j] + frac * (values[j + 1] - values[j])


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
    group: int | None = None,
    min_peak_z: float = _MIN_PEAK_Z,
    max_work_size: int = 1024,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Whole-frame drift ``(t, 2)`` = ``(dy, dx)`` in pixels of a ``(t, h, w)`` movie, sub-pixel.

    Float32 on the CPU; ``drift[i]`` is how far frame ``i``'s content moved. Options: see
    :func:`estimate_drift_detailed`, which also reports the peak significance and the grouping used.
    """
    return estimate_drift_detailed(
        frames, pixel_size=pixel_size, bfactor=bfactor, max_shift=max_shift, iterations=iterations,
        reference=reference, origin=origin, smoothing=smoothing, group=group, min_peak_z=min_peak_z,
        max_work_size=max_work_size, device=device).shifts


def estimate_drift_detailed(
    frames: torch.Tensor,
    *,
    pixel_size: float | None = None,
    bfactor: float = 500.0,
    max_shift: float = 50.0,
    iterations: int = 3,
    reference: Reference = "sum-minus-frame",
    origin: Origin = "mean",
    smoothing: float = 0.0,
    group: int | None = None,
    min_peak_z: float = _MIN_PEAK_Z,
    max_work_size: int = 1024,
    tolerance: float = 0.005,
    device: torch.device | str | None = None,
) -> DriftEstimate:
    """Estimate the drift of ``frames`` ``(t, h, w)``; see the module docs for the method.

    ``pixel_size`` in A (None: 1, i.e. ``bfactor`` in pixel^2 units); ``bfactor`` low-pass of each frame
    for the correlation (A^2, MotionCor2's default 500; 0 disables); ``max_shift`` largest drift searched,
    pixels; ``iterations`` alignment rounds (fewer when no shift changes by more than ``tolerance``
    pixels); ``reference`` "sum-minus-frame" (each frame against the others; unbiased) or "sum"
    (includes the frame; biased towards zero, for comparison only); ``origin`` "mean" or "first";
    ``smoothing`` sigma in frames of a temporal smoothing (0: off); ``group`` frames summed per aligned
    group (None: automatic -- 1, 2, 4, ... until every group's peak is at least ``min_peak_z`` standard
    deviations above its correlation map, up to two groups; then no correction); ``max_work_size`` cap on
    the Fourier-binned grid edge. Group shifts are interpolated linearly to the frames.
    """
    frames = validate_frames(frames)
    t, h, w = frames.shape
    for bad, msg in (
        (bfactor < 0 or not math.isfinite(bfactor), f"bfactor must be >= 0 A^2, got {bfactor}"),
        (not max_shift > 0, f"max_shift must be > 0 pixels, got {max_shift}"),
        (iterations < 1, f"iterations must be >= 1, got {iterations}"),
        (reference not in ("sum-minus-frame", "sum"), f"reference must be sum-minus-frame or sum, got '{reference}'"),
        (origin not in ("mean", "first"), f"origin must be 'mean' or 'first', got '{origin}'"),
        (pixel_size is not None and not pixel_size > 0, f"pixel_size must be > 0 A, got {pixel_size}; omit if unknown"),
        (group is not None and not 1 <= group <= t // 2, f"group must be 1..{t // 2} for {t} frames, got {group}"),
    ):
        if bad:
            raise ConfigError(msg)
    dev = torch.device(device) if device is not None else frames.device
    pixel = float(pixel_size) if pixel_size is not None else 1.0
    h2, w2 = _working_size(h, w, pixel, bfactor, max(32, int(max_work_size)))
    # real-space binning before the FFT where the kept band is <= 1/4 of the binned grid (4x cheaper FFTs
    # per factor 2; the pixel-sum attenuation at the band edge is < 10%); the pixels left over are dropped
    b = 1
    while 2 * b <= min(h / h2, w / w2) / 2 and b < _MAX_BIN:
        b *= 2
    he, we = (h // b) * b, (w // b) * b  # pixels covered by the binned frames
    scale = torch.tensor([he / h2, we / w2], dtype=torch.float64, device=dev)

    fy, fx = rfft_freqs(h2, w2, dev)
    s2 = (fy * (h2 / he) / pixel) ** 2 + (fx * (w2 / we) / pixel) ** 2  # (1/A)^2 on the working grid
    cyc2 = (fy * h2) ** 2 + (fx * w2) ** 2  # (cycles per frame)^2
    filt = torch.exp(-bfactor * s2 / 4.0) * (1.0 - torch.exp(-cyc2 / (2 * _HIGHPASS_CYCLES**2)))
    filt = filt.to(torch.float32)
    filt[h2 // 2, :] = 0.0  # Nyquist row / column carry no usable phase
    filt[:, -1] = 0.0
    spectra = torch.empty((t, h2, w2 // 2 + 1), dtype=torch.complex64, device=dev)
    for i in range(t):
        frame = frames[i].to(device=dev, dtype=torch.float32)
        if b > 1:
            frame = torch.nn.functional.avg_pool2d(frame[None, None], b)[0, 0]
        mean = frame.mean()
        check_finite(mean, f"frame {i}")
        spectra[i] = crop_spectrum(torch.fft.rfft2(frame - mean), h2, w2) * filt

    rmax = float(max_shift) / scale  # (2,) working pixels
    yy = torch.fft.fftfreq(h2, 1.0 / h2, device=dev, dtype=torch.float64)[:, None]
    xx = torch.fft.fftfreq(w2, 1.0 / w2, device=dev, dtype=torch.float64)[None, :]
    search = ((yy / rmax[0]) ** 2 + (xx / rmax[1]) ** 2) <= 1.0  # (h2, w2), wrapped coordinates
    search[0, 0] = True

    tol = tolerance / float(scale.max())
    g = group or 1
    while True:
        blocks = torch.arange(t, device=dev) // g
        n = int(blocks[-1]) + 1
        grouped = torch.zeros((n, *spectra.shape[1:]), dtype=spectra.dtype, device=dev).index_add_(0, blocks, spectra)
        times = torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, blocks, torch.arange(
            t, dtype=torch.float64, device=dev)) / torch.bincount(blocks).to(torch.float64)
        shifts, z = _align(grouped, search, fy, fx, iterations, reference, smoothing if g == 1 else 0.0, tol)
        reliable = bool((z >= min_peak_z).all())
        if reliable or group is not None or 2 * g > t // 2:
            break
        g *= 2
    drift = _interpolate(times, shifts, t) * scale if (reliable or group is not None) else torch.zeros(
        (t, 2), dtype=torch.float64, device=dev)
    drift = drift - (drift[:1] if origin == "first" else drift.mean(dim=0, keepdim=True))
    return DriftEstimate(shifts=drift.to(torch.float32).cpu(), peak_z=z.float().cpu(), group_size=g,
                         reliable=reliable)
