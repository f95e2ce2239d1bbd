"""Frame sums of dose-fractionated movies (pure tensor functions): the independent halves every cryo-CARE
regime trains on; used by :mod:`cryocare_torch.prepare` and by the simulator's reference.

* :func:`frame_sums` -> :class:`FrameSums` from a ``(t, h, w)`` movie and optional drift:
  ``even`` = aligned sum of frames 0, 2, 4, ...; ``odd`` = aligned sum of frames 1, 3, 5, ...;
  ``full`` = ``even + odd``; ``first_half`` / ``second_half`` = sums of frames ``[0, t//2)`` and
  ``[t//2, t)`` **without alignment** (the P2P-ip regime of Buchholz et al. 2019, where the two
  halves of the exposure are summed as recorded; with an odd ``t`` the middle frame goes to the second
  half). With an odd ``t`` ``even`` holds one frame more than ``odd``.
* Alignment applies ``-drift`` (see :mod:`cryocare_torch.prepare.motion`) by Fourier shifting
  (:func:`cryocare_torch.fourier.shift_frames`), which is circular: within ``max |drift|`` pixels of a
  border the aligned sums contain wrapped-around content.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError
from ..fourier import phase_ramp, rfft_freqs


def validate_frames(frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
    """Check the shape of a ``(t, h, w)`` movie; raises :class:`DataError` with a one-line reason.

    Finiteness is checked frame by frame where the frames are read anyway (a full pass costs seconds on 4k).
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 3:
        raise DataError(f"{name} must be a (t, h, w) movie, got shape {tuple(frames.shape)}")
    t, h, w = frames.shape
    if t < 2 or h < 16 or w < 16:
        raise DataError(f"{name} has {t} frame(s) of {h}x{w} pixels; at least 2 frames of 16x16 are needed")
    return frames


def check_finite(value: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` when ``value`` (e.g. a frame's sum: NaN/inf propagate) is not finite."""
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"{what} contains NaN or infinite values; fix or mask the movie first")


@dataclass(frozen=True)
class FrameSums:
    """Float32 ``(h, w)`` sums of one movie (see module docs for what each holds)."""

    even: torch.Tensor
    odd: torch.Tensor
    full: torch.Tensor
    first_half: torch.Tensor
    second_half: torch.Tensor
    n_frames: int

    def by_kind(self) -> dict[str, torch.Tensor]:
        """The sums keyed by output-file suffix: even, odd, sum, firsthalf, secondhalf."""
        return {"even": self.even, "odd": self.odd, "sum": self.full,
                "firsthalf": self.first_half, "secondhalf": self.second_half}


def frame_sums(frames: torch.Tensor, shifts: torch.Tensor | None = None) -> FrameSums:
    """Even/odd/full aligned sums and unaligned first/second-half sums of a ``(t, h, w)`` movie.

    ``shifts`` is the ``(t, 2)`` drift from :func:`~cryocare_torch.prepare.motion.estimate_drift`
    (pixels; each frame is moved by ``-shifts[i]``); ``None`` sums without alignment.
    Frames are converted to float32 one at a time, so integer movies need no float copy.
    """
    frames = validate_frames(torch.as_tensor(frames))
    t, h, w = frames.shape
    dev = frames.device
    if shifts is not None:
        shifts = torch.as_tensor(shifts, dtype=torch.float64, device=dev)
        if shifts.shape != (t, 2):
            raise DataError(f"shifts must have shape ({t}, 2) for a {t}-frame movie, got {tuple(shifts.shape)}")
        if not bool(torch.isfinite(shifts).all()):
            raise DataError("shifts contain NaN or infinite values")
    half = t // 2
    first = torch.zeros((h, w), dtype=torch.float32, device=dev)
    second = torch.zeros_like(first)
    if shifts is None:
        acc = [torch.zeros_like(first), torch.zeros_like(first)]
    else:
        fy, fx = rfft_freqs(h, w, dev)
        acc = [torch.zeros((h, w // 2 + 1), dtype=torch.complex64, device=dev) for _ in range(2)]
    for i in range(t):
        frame = frames[i].to(torch.float32)
        (first if i < half else second).add_(frame)
        acc[i % 2].add_(frame if shifts is None else torch.fft.rfft2(frame) * phase_ramp(-shifts[i : i + 1], fy, fx)[0])
    if shifts is not None:
        acc = [torch.fft.irfft2(a, s=(h, w)) for a in acc]
    even, odd = acc
    check_finite(first.sum() + second.sum(), "the movie")
    return FrameSums(even=even, odd=odd, full=even + odd, first_half=first, second_half=second, n_frames=t)
