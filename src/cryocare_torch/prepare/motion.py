"""Whole-frame (global) drift of dose-fractionated movies, robust at tilt-series doses, with its own error.

Conventions
-----------
* A movie is ``frames`` of shape ``(t, h, w)``; shifts are ``(t, 2)`` tensors of ``(dy, dx)`` in pixels.
* :func:`estimate_drift` returns the **drift**: ``frames[i](r) ~ image(r - drift[i])``; aligning a movie
  means ``cryocare_torch.fourier.shift_frames(frames, -drift)`` (what
  :func:`cryocare_torch.tomo.frames.frame_sums` does).
* The trajectory has no absolute origin; ``origin="mean"`` (default) makes the shifts average to zero,
  ``origin="first"`` makes ``drift[0] == (0, 0)``.

Method (each step chosen from the data; MotionCor2, RELION and Warp as anchors)
-------------------------------------------------------------------------------
1. Each frame is Fourier transformed once, high-passed (< 2 cycles per frame: gain and illumination
   gradients) and cropped to the band the weakest low-pass keeps (Fourier binning, as RELION's own
   motioncorr and MotionCor2 do; 3dem/relion src/motioncorr_runner.cpp, ``ccf_downsample``).
2. Low-pass: the per-image envelope ``exp(-B s^2/4)`` with ``B`` (A^2) chosen among 4..400 pixel^2 as
   the one whose cross-correlation of the even-frame and the odd-frame sums has the highest peak
   z-score (MotionCor2/RELION use a fixed B, default 150 pixel^2 in RELION; Warp a fixed 500-10 A band
   and B -500 A^2, warpem/warp WarpTools/Commands/Frameseries/MotionFrameseries.cs). On the CTF-modulated
   low-dose movies of issue 17 the fixed B = 500 A^2 (8 pixel^2 at 8 A) left 0.6-1 px errors.
3. Group size ``g``: among 1, 2, 4, ... whose sliding windows of ``g`` frames reach a median peak z of
   ``min_peak_z`` against the rest of the movie, the one whose fitted trajectory has the smallest
   posterior error (MotionCor2's and RELION's ``-Group`` / ``--group_frames``, here chosen from the
   correlation SNR); if none reaches it, no correction.
4. Trajectory: the smooth random-walk fit of all window measurements, smoothing weight cross-validated
   between even and odd frames (:mod:`~cryocare_torch.prepare.drift_fit`).
5. Reliability: each frame's error is the larger of half the even/odd-frame trajectory difference
   (noise) and the fit's posterior sd (noise and smoothing bias, which the halves share). The movie is
   unreliable, and **left unshifted**, when the rms error exceeds ``max_error`` pixels or
   ``error_fraction`` of the drift's expected rms (then correcting could be worse than not); frames
   whose own error exceeds ``max_error`` are flagged. A ``warning:`` line gives the numbers. On the
   issue-17 movies the reported error was 1.1-1.3x the true one (bench/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from ..fourier import crop_spectrum, good_fft_size, rfft_freqs
from ..tomo.frames import check_finite, validate_frames
from . import drift_fit
from .drift_windows import UNCHECKED, Candidate, choose_group
from .peaks import correlate

__all__ = ["DriftEstimate", "estimate_drift", "estimate_drift_detailed"]

Origin = Literal["mean", "first"]

_MAX_BIN = 8  # largest real-space binning before the FFT
_HIGHPASS_CYCLES = 2.0  # frequencies below ~2 cycles per frame (illumination, gain gradients) are damped
_MIN_PEAK_Z = 8.0  # median window peak; pure-noise maps reach ~6.3
_B_PIXEL2 = (4.0, 12.0, 40.0, 120.0, 400.0)  # low-pass candidates in pixel^2 (1/e of the cross-power at 0.7-0.07/px)


@dataclass(frozen=True)
class DriftEstimate:
    """Result of :func:`estimate_drift_detailed`."""

    shifts: torch.Tensor
    """``(t, 2)`` float32 drift ``(dy, dx)`` in pixels (all zero when not ``reliable``)."""
    peak_z: torch.Tensor
    """Per window of ``group_size`` frames: correlation peak height in standard deviations of its map."""
    group_size: int
    """Consecutive frames summed per aligned window (1: every frame aligned on its own)."""
    reliable: bool
    """False when the estimate's own error is too large; ``shifts`` are then all zero (no correction)."""
    frame_error: torch.Tensor
    """``(t,)`` estimated error (pixels) of each frame's drift, from the even/odd-frame disagreement."""
    error_px: float
    """rms of ``frame_error`` (pixels); ``nan`` when no grouping gave significant peaks."""
    bfactor: float
    """Low-pass B (A^2, or pixel^2 without a pixel size) used."""
    fitted: torch.Tensor
    """``(t, 2)`` the fitted trajectory even when it was not applied (for reports)."""
    frame_reliable: torch.Tensor
    """``(t,)`` bool: frames whose estimated error is within ``max_error`` (all False when not ``reliable``)."""
    message: str = ""
    """One ``warning:`` line when the estimate is unreliable or frames are flagged, else empty."""


def _working_size(h: int, w: int, b_px: float, max_work: int) -> tuple[int, int]:
    """Grid that holds the frequencies where the cross-power envelope ``exp(-B s^2/2)`` exceeds e^-4."""
    f = max(1.0, 1.0 / (2.0 * math.sqrt(8.0 / b_px))) if b_px > 0 else 1.0
    f = max(f, max(h, w) / max_work)
    h2, w2 = min(h, good_fft_size(math.ceil(h / f))), min(w, good_fft_size(math.ceil(w / f)))
    return max(h2 - h2 % 2, 16), max(w2 - w2 % 2, 16)


def _spectra(frames: torch.Tensor, h2: int, w2: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """High-passed, Fourier-binned frame spectra (t, h2, w2//2+1), pixel scale (2,) and real-space binning."""
    t, h, w = frames.shape
    b = 1  # real-space binning where the kept band is <= 1/4 of the binned grid (< 10% loss at its edge)
    while 2 * b <= min(h / h2, w / w2) / 2 and b < _MAX_BIN:
        b *= 2
    he, we = (h // b) * b, (w // b) * b
    fy, fx = rfft_freqs(h2, w2, dev)
    cyc2 = (fy * h2) ** 2 + (fx * w2) ** 2
    hp = (1.0 - torch.exp(-cyc2 / (2 * _HIGHPASS_CYCLES**2))).to(torch.float32)
    hp[h2 // 2, :] = 0.0  # Nyquist row / column carry no usable phase
    hp[:, -1] = 0.0
    out = torch.empty((t, h2, w2 // 2 + 1), dtype=torch.complex64, device=dev)
    for i in range(t):
        frame = frames[i].to(device=dev, dtype=torch.float32)
        if b > 1:
            frame = torch.nn.functional.avg_pool2d(frame[None, None], b)[0, 0]
        mean = frame.mean()
        check_finite(mean, f"frame {i}")
        out[i] = crop_spectrum(torch.fft.rfft2(frame - mean), h2, w2) * hp
    return out, torch.tensor([he / h2, we / w2], dtype=torch.float64, device=dev), b


def _lowpass(h2: int, w2: int, scale: torch.Tensor, b_px: float) -> torch.Tensor:
    """Per-image envelope ``exp(-B s^2/4)`` on the working grid, B in original pixel^2."""
    fy, fx = rfft_freqs(h2, w2, scale.device)
    s2 = (fy / scale[0]) ** 2 + (fx / scale[1]) ** 2  # (cycles per original pixel)^2
    return torch.exp(-b_px * s2 / 4.0).to(torch.float32)


def _bfactor_candidates(spectra: torch.Tensor, scale: torch.Tensor, search: torch.Tensor) -> tuple[float, ...]:
    """The B (pixel^2) whose even-sum vs odd-sum correlation peak has the highest z-score, and the next stronger.

    (A stronger low-pass often aligns single frames better than the half-sums' optimum; the posterior
    error of the fitted trajectory decides between them.)
    """
    h2, w2 = search.shape
    even, odd = spectra[0::2].sum(dim=0, keepdim=True), spectra[1::2].sum(dim=0, keepdim=True)
    zs = [float(correlate(even * _lowpass(h2, w2, scale, b) ** 2, odd, search)[1][0]) for b in _B_PIXEL2]
    best = max(range(len(zs)), key=zs.__getitem__)
    return _B_PIXEL2[best : best + 2]


def _search_area(h2: int, w2: int, scale: torch.Tensor, max_shift: float) -> torch.Tensor:
    rmax = float(max_shift) / scale
    yy = torch.fft.fftfreq(h2, 1.0 / h2, device=scale.device, dtype=torch.float64)[:, None]
    xx = torch.fft.fftfreq(w2, 1.0 / w2, device=scale.device, dtype=torch.float64)[None, :]
    search = ((yy / rmax[0]) ** 2 + (xx / rmax[1]) ** 2) <= 1.0  # wrapped coordinates
    search[0, 0] = True
    return search


def estimate_drift(frames: torch.Tensor, **options: object) -> torch.Tensor:
    """Whole-frame drift ``(t, 2)`` = ``(dy, dx)`` in pixels of a ``(t, h, w)`` movie (zero when unreliable).

    Float32 on the CPU; options as for :func:`estimate_drift_detailed`.
    """
    return estimate_drift_detailed(frames, **options).shifts  # type: ignore[arg-type]


def _check(t: int, bfactor: float | None, max_shift: float, iterations: int, origin: str,
           pixel_size: float | None, group: int | None, max_error: float) -> None:
    for bad, msg in (
        (bfactor is not None and not 0 <= bfactor < math.inf, f"bfactor must be >= 0 A^2, got {bfactor}"),
        (not max_shift > 0, f"max_shift must be > 0 pixels, got {max_shift}"),
        (iterations < 1, f"iterations must be >= 1, got {iterations}"),
        (origin not in ("mean", "first"), f"origin must be 'mean' or 'first', got '{origin}'"),
        (pixel_size is not None and not pixel_size > 0, f"pixel_size must be > 0 A, got {pixel_size}; omit if unknown"),
        (group is not None and not 1 <= group <= t // 2, f"group must be 1..{t // 2} for {t} frames, got {group}"),
        (not max_error > 0, f"max_error must be > 0 pixels, got {max_error}"),
    ):
        if bad:
            raise ConfigError(msg)


def estimate_drift_detailed(
    frames: torch.Tensor,
    *,
    pixel_size: float | None = None,
    bfactor: float | None = None,
    max_shift: float = 50.0,
    iterations: int = 3,
    origin: Origin = "mean",
    group: int | None = None,
    min_peak_z: float = _MIN_PEAK_Z,
    max_error: float = 0.5,
    error_fraction: float = 0.5,
    max_work_size: int = 1024,
    tolerance: float = 0.01,
    device: torch.device | str | None = None,
) -> DriftEstimate:
    """Estimate the drift of ``frames`` ``(t, h, w)``; see the module docs for the method.

    ``pixel_size`` in A (None: 1, i.e. ``bfactor`` in pixel^2); ``bfactor`` per-image low-pass (A^2; None:
    chosen from the data; 0: none); ``max_shift`` largest drift searched (pixels); ``iterations`` alignment
    rounds (fewer once no shift changes by more than ``tolerance`` pixels); ``group`` frames per window (None:
    from the data); ``min_peak_z`` median window peak needed; ``max_error`` (pixels) and ``error_fraction``
    (of the estimated drift's rms) bound the estimated error of a movie flagged reliable; ``max_work_size``
    caps the Fourier-binned grid edge.
    """
    frames = validate_frames(frames)
    t, h, w = frames.shape
    _check(t, bfactor, max_shift, iterations, origin, pixel_size, group, max_error)
    dev = torch.device(device) if device is not None else frames.device
    pixel = float(pixel_size) if pixel_size is not None else 1.0
    b_px = None if bfactor is None else bfactor / pixel**2
    h2, w2 = _working_size(h, w, min(_B_PIXEL2) if b_px is None else b_px, max(32, int(max_work_size)))
    spectra, scale, _ = _spectra(frames, h2, w2, dev)
    search = _search_area(h2, w2, scale, max_shift)
    fy, fx = rfft_freqs(h2, w2, dev)
    tol = tolerance / float(scale.max())
    best: Candidate | None = None
    for b in (_bfactor_candidates(spectra, scale, search) if b_px is None else (b_px,)):
        filtered = spectra * _lowpass(h2, w2, scale, b)

        def measure(members: torch.Tensor, g: int, init: torch.Tensor | None, spec: torch.Tensor = filtered
                    ) -> drift_fit.Measured:
            return drift_fit.measure_windows(spec, members, g, search, fy, fx, iterations, tol, init)

        cand = choose_group(measure, t, group, min_peak_z, b * pixel**2, 2 * max_error / float(scale.max()))
        if best is None or cand.score < best.score or not math.isfinite(best.score):
            best = cand
    assert best is not None
    if not math.isfinite(best.score):
        return _unmeasurable(best, t, scale, min_peak_z, max_error)
    return _finish(best, scale, origin, max_error, error_fraction)


def _unmeasurable(best: Candidate, t: int, scale: torch.Tensor, min_peak_z: float, max_error: float
                  ) -> DriftEstimate:
    """No shifts (the movie is left unshifted) and the warning line saying why."""
    zero = torch.zeros((t, 2), dtype=torch.float32)
    sd = float(best.full.sd.median()) * float(scale.max())
    msg = (f"warning: drift not measurable: even for windows of {best.g} frames the median correlation peak "
           f"has z {float(best.full.z.median()):.1f} (needed {min_peak_z:g}) and a position sd of {sd:.2f} px "
           f"(needed {2 * max_error:g}); movie left unshifted")
    return DriftEstimate(zero, best.full.z.float().cpu(), best.g, False, torch.full((t,), float("nan")),
                         float("nan"), best.bfactor, zero, torch.zeros(t, dtype=torch.bool), msg)


def _finish(c: Candidate, scale: torch.Tensor, origin: str, max_error: float, fraction: float) -> DriftEstimate:
    """Full fit in pixels, its error, the reliability decision and the warning line."""
    t = c.full.a.shape[1]
    fit = c.full.fit.mean * scale
    fit = fit - (fit[:1] if origin == "first" else fit.mean(dim=0, keepdim=True))
    err = c.full.fit.sd * float(scale.max()) * max(1.0, c.ratio)
    err_rms = float(err.pow(2).mean().sqrt())
    # the fit is shrunk towards zero; the drift's expected rms adds back the posterior variance
    drift_rms = math.sqrt(float((fit - fit.mean(dim=0)).norm(dim=1).pow(2).mean()) + err_rms**2)
    ok = err_rms <= max_error and err_rms <= fraction * drift_rms
    frame_ok = (err <= max_error) & ok
    msg = ""
    if not ok:
        msg = (f"warning: drift estimate unreliable: estimated error {err_rms:.2f} px rms (posterior sd x "
               f"{max(1.0, c.ratio):.2f} from the even/odd-frame check{'' if c.ratio != UNCHECKED else ' (too weak)'})"
               f" for {drift_rms:.2f} px rms expected drift "
               f"(limits {max_error:g} px and {fraction:g} of the drift); movie left unshifted")
    elif not bool(frame_ok.all()):
        bad = (~frame_ok).nonzero()[:, 0].tolist()
        msg = (f"warning: {len(bad)} of {t} frames have an estimated drift error above {max_error:g} px "
               f"(max {float(err.max()):.2f} px, frames {bad[:8]}{'...' if len(bad) > 8 else ''}); smooth fit kept")
    shifts = fit.float().cpu() if ok else torch.zeros((t, 2), dtype=torch.float32)
    return DriftEstimate(shifts, c.full.z.float().cpu(), c.g, ok, err.float().cpu(), err_rms, c.bfactor,
                         fit.float().cpu(), frame_ok.cpu(), msg)
