"""Cross-correlation peaks of movie frame groups: sub-pixel position and significance.

* :func:`correlate` -- each row of ``spectra`` (rFFT, working pixels) against its own reference:
  integer peak inside a search area, refined to ~1/100 pixel by an upsampled matrix DFT of the
  cross-power spectrum around it (Guizar-Sicairos et al. 2008) and a parabola, and the peak height in
  standard deviations of the correlation map away from the peak (pure-noise maps reach ~6).
"""

from __future__ import annotations

import math

import torch

from ..fourier import rfft_freqs

_UPSAMPLE = 20  # upsampled-DFT points per working pixel around the integer peak
_PEAK_EXCLUSION = 4.0  # working pixels around a peak left out of the correlation-map statistics
_STRIDE = 4  # rows of the correlation map used for its statistics


def _vertex(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    den = a - 2 * b + c
    return torch.where(den < 0, 0.5 * (a - c) / den.clamp(max=-1e-30), torch.zeros_like(den)).clamp(-1, 1)


def upsampled_peak(cross: torch.Tensor, peak: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel maxima of the correlations of rFFT cross-power spectra ``cross`` (t, h, w//2+1), and curvature.

    Evaluates the correlation on a ``1/_UPSAMPLE``-pixel grid over +-1 pixel around the integer ``peak``
    (t, 2) by two small matrix DFTs, then fits a parabola through the best point and its neighbours.
    Returns the positions (t, 2) and ``-d^2 cc / dr^2`` at the maximum (t, 2) per pixel^2.
    """
    u = _UPSAMPLE
    offs = torch.arange(-u, u + 1, device=cross.device, dtype=torch.float64) / u  # (m,)
    fy, fx = rfft_freqs(h, w, cross.device)
    ry = peak[:, 0, None].to(torch.float64) + offs  # (t, m)
    rx = peak[:, 1, None].to(torch.float64) + offs
    one = torch.ones(1, device=cross.device, dtype=torch.float64)
    ey = torch.polar(one, 2 * math.pi * ry[:, :, None] * fy[None, :, 0]).to(torch.complex64)  # (t, m, h)
    ex = torch.polar(one, 2 * math.pi * fx[0][None, :, None] * rx[:, None, :]).to(torch.complex64)  # (t, w', m)
    weight = torch.full((fx.shape[1],), 2.0, device=cross.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    cc = (ey @ (cross * weight) @ ex).real  # (t, m, m)
    m = offs.numel()
    flat = cc.reshape(cc.shape[0], -1).argmax(dim=1)
    iy, ix = (flat // m).clamp(1, m - 2), (flat % m).clamp(1, m - 2)
    t_idx = torch.arange(cc.shape[0], device=cc.device)
    a_y, b, c_y = cc[t_idx, iy - 1, ix], cc[t_idx, iy, ix], cc[t_idx, iy + 1, ix]
    a_x, c_x = cc[t_idx, iy, ix - 1], cc[t_idx, iy, ix + 1]
    pos = torch.stack([ry[t_idx, iy] + _vertex(a_y, b, c_y).double() / u,
                       rx[t_idx, ix] + _vertex(a_x, b, c_x).double() / u], dim=1)
    curv = torch.stack([2 * b - a_y - c_y, 2 * b - a_x - c_x], dim=1).double() * u * u / (h * w)  # irfft2's 1/(hw)
    return pos, curv


def peak_z(cc: torch.Tensor, peak: torch.Tensor, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Height of the peaks (flat indices ``flat``) of maps ``cc`` (t, h, w) in sd's of each map away from its peak.

    Also returns the sd (t, 2) of the map's slope (central differences along y and x) away from the peak:
    noise of that slope at the peak moves the maximum by ``slope / curvature``. The statistics use every
    ``_STRIDE``-th row (thousands of pixels are plenty for an sd; the full map costs 4x more).
    """
    t, h2, w2 = cc.shape
    rows = torch.arange(0, h2, _STRIDE, device=cc.device)
    sub = cc[:, rows]
    slope_y = (cc[:, (rows + 1) % h2] - cc[:, (rows - 1) % h2]) / 2
    slope_x = (torch.roll(sub, -1, 2) - torch.roll(sub, 1, 2)) / 2
    yy = torch.fft.fftfreq(h2, 1.0 / h2, device=cc.device)[rows]
    xx = torch.fft.fftfreq(w2, 1.0 / w2, device=cc.device)
    pk = peak.to(torch.float32)
    dy = torch.remainder(yy[None, :] - pk[:, :1] + h2 / 2, h2) - h2 / 2  # (t, rows), wrapped
    dx = torch.remainder(xx[None, :] - pk[:, 1:] + w2 / 2, w2) - w2 / 2
    away = ((dy[:, :, None] ** 2 + dx[:, None, :] ** 2) > _PEAK_EXCLUSION**2).to(cc.dtype)
    n = away.sum(dim=(1, 2)).clamp(min=2)
    mean = (sub * away).sum(dim=(1, 2)) / n
    var = (((sub - mean[:, None, None]) * away) ** 2).sum(dim=(1, 2)) / (n - 1)
    height = cc.reshape(t, -1).gather(1, flat[:, None])[:, 0]
    slope_sd = torch.stack([((s * away) ** 2).sum(dim=(1, 2)) / n for s in (slope_y, slope_x)], dim=1).sqrt()
    return (height - mean) / var.sqrt().clamp(min=1e-30), slope_sd


def correlate(spectra: torch.Tensor, refs: torch.Tensor,
              search: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sub-pixel offsets ``(t, 2)`` (working pixels) of ``spectra`` relative to ``refs``, peak z-scores ``(t,)``
    and the offsets' noise sd ``(t, 2)`` (map-slope noise over peak curvature; inf where there is no peak)."""
    h2, w2 = search.shape
    size = torch.tensor([h2, w2], device=spectra.device)
    cross = spectra * refs.conj()
    cc = torch.fft.irfft2(cross, s=(h2, w2))
    best = cc[:, search].argmax(dim=1)  # peaks inside the search area only
    flat = search.flatten().nonzero()[:, 0][best]
    peak = torch.stack([flat // w2, flat % w2], dim=1)
    peak = torch.where(peak > size // 2, peak - size, peak).to(torch.float64)
    pos, curv = upsampled_peak(cross, peak, h2, w2)
    z, slope_sd = peak_z(cc, peak, flat)
    return pos, z, torch.where(curv > 0, slope_sd.double() / curv.clamp(min=1e-30), torch.full_like(curv, math.inf))
