"""Fourier helpers shared by frame sums, motion estimation and the simulator (pure tensor functions).

* :func:`rfft_freqs` -- the rFFT frequency grids; :func:`phase_ramp` -- the phase that shifts content;
* :func:`good_fft_size` -- a fast FFT size; :func:`crop_spectrum` -- Fourier binning of an rFFT spectrum;
* :func:`fourier_shift` -- the sub-pixel (circular) Fourier shift; :func:`shift_frames` -- the same for a
  checked ``(t, h, w)`` movie.
"""

from __future__ import annotations

import math

import torch

from .errors import DataError


def rfft_freqs(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rFFT frequency grids (cycles per pixel), shapes ``(h, 1)`` and ``(1, w//2+1)``, float64."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)[None, :]
    return fy, fx


def phase_ramp(shifts: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor,
               dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """``exp(-2 pi i k.s)``: multiplying a spectrum by it moves the content by ``+s``; shifts ``(..., 2)`` ->
    ``(..., h, w//2+1)``.

    Built as the outer product of a column and a row phase (separable), so only ``t (h + w)`` sines.
    """
    s = shifts.to(torch.float64)
    one = torch.ones((), dtype=torch.float64, device=s.device)
    py = torch.polar(one, -2.0 * math.pi * s[..., 0, None, None] * fy).to(dtype)  # (..., h, 1)
    px = torch.polar(one, -2.0 * math.pi * s[..., 1, None, None] * fx).to(dtype)  # (..., 1, w')
    return py * px


def good_fft_size(n: float) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3 and 5 (fast FFT size)."""
    n = max(2, int(math.ceil(n)))
    n += n % 2
    while not any(n == 2**a * 3**b * 5**c for a in range(1, 16) for b in range(10) for c in range(7)):
        n += 2
    return n


def crop_spectrum(spec: torch.Tensor, h2: int, w2: int) -> torch.Tensor:
    """Keep the lowest ``h2 x (w2//2+1)`` frequencies of an rFFT spectrum (Fourier binning)."""
    top = spec[..., : h2 // 2, : w2 // 2 + 1]
    bottom = spec[..., spec.shape[-2] - h2 // 2 :, : w2 // 2 + 1]
    return torch.cat([top, bottom], dim=-2)


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
    out = fourier_shift(x, s)
    return out[0] if single else out


def fourier_shift(images: torch.Tensor, shifts: torch.Tensor, *,
                  precision: torch.dtype = torch.float32) -> torch.Tensor:
    """The one Fourier shift: images ``(..., h, w)`` moved by ``shifts`` ``(..., 2)`` = ``(dy, dx)`` pixels
    (periodic), computed in ``precision`` (float32 or float64) and returned in it."""
    h, w = images.shape[-2:]
    fy, fx = rfft_freqs(h, w, images.device)
    complex_dtype = torch.complex128 if precision == torch.float64 else torch.complex64
    ramp = phase_ramp(torch.as_tensor(shifts, device=images.device), fy, fx, complex_dtype)
    return torch.fft.irfft2(torch.fft.rfft2(images.to(precision)) * ramp, s=(h, w))
