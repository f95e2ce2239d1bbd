"""IMOD ``tilt``'s R-weighting of tilt-series rows (``flib/tilt/tilt.f90``: ``RADWT``, the row padding of its
main program, ``taperEndToStart``, ``zeroWeight``); the conventions are described in
:mod:`cryocare_torch.tomo.backproject`, which re-exports these functions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError

Radial = tuple[float, float] | None
IMOD_RADIAL: tuple[float, float] = (0.35, 0.035)


def imod_pad_length(nx: int) -> int:
    """``tilt``'s padded row length for ``nx`` pixels: ``niceframe(2 ((nx + npad) / 2), 2, 19)``."""
    n = 2 * ((nx + min(50, 2 * max(8, nx // 20))) // 2)
    while True:
        m = n
        for p in (2, 3, 5, 7, 11, 13, 17, 19):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 2


def _imod_index(value: float, nx: int, stretch: float) -> int:
    """``tilt``'s ``irmax = rrmax; if (irmax == 0) irmax = nx * rrmax`` (integer truncation), then stretched."""
    i = int(value) if value >= 1 else int(nx * value)
    return int(math.floor(i * stretch + 0.5))  # Fortran nint


def ramp_filter(n_pad: int, *, radial: Radial = IMOD_RADIAL, nx: int | None = None,
                dtype: torch.dtype = torch.float64) -> Tensor:
    """IMOD ``tilt``'s radial weighting ``(n_pad // 2 + 1,)`` for rows of ``nx`` pixels padded to ``n_pad``.

    ``RADWT`` in ``flib/tilt/tilt.f90``, with ``I = k + 1`` (1-based Fortran index of frequency ``k``):
    ``0.2`` at ``k = 0``, ``k`` for ``I <= irmax``, ``(irmax - 1) exp(-((I - irmax) / ifall)^2)`` beyond, all
    divided by ``n_pad``. ``radial = (cutoff, falloff)``: values below 1 are cycles/pixel, 1 or more pixels
    (as ``tilt``'s ``RADIAL``); ``None``: ``tilt``'s default ``irmax = nx / 2 + 1``, no roll-off.
    """
    nx = n_pad if nx is None else int(nx)
    stretch = n_pad / nx
    k = torch.arange(n_pad // 2 + 1, dtype=torch.float64)
    resp = k.clone()
    resp[0] = 0.2
    if radial is not None:
        cutoff, falloff = float(radial[0]), float(radial[1])
        if cutoff <= 0 or falloff < 0:
            raise ConfigError(f"radial filter needs cutoff > 0 and falloff >= 0, got {radial}")
        irmax, ifall = _imod_index(cutoff, nx, stretch), _imod_index(falloff, nx, stretch)
        beyond = (k + 1) > irmax
        arg = (k + 1 - irmax) / ifall if ifall > 0 else torch.full_like(k, math.inf)
        resp = torch.where(beyond, (irmax - 1) * torch.exp(-(arg**2)), resp)
    return (resp / n_pad).to(dtype)


def taper_pad(rows: Tensor, n_pad: int) -> Tensor:
    """Rows ``(r, w)`` padded to ``n_pad`` with ``tilt``'s ``taperEndToStart``: last-3 mean to first-3 mean."""
    w = int(rows.shape[-1])
    npad = n_pad - w
    st = rows[:, : min(3, w)].mean(dim=1, keepdim=True)
    nd = rows[:, max(0, w - 3) :].mean(dim=1, keepdim=True)
    f = torch.arange(1, npad + 1, dtype=rows.dtype, device=rows.device) / (npad + 1)
    return torch.cat([rows, f * st + (1 - f) * nd], dim=1)


def filter_rows(rows: Tensor, *, radial: Radial = IMOD_RADIAL) -> Tensor:
    """R-weight ``(..., w)`` rows along the last axis as IMOD ``tilt`` does (taper-padded, ``RADWT`` weights)."""
    w = int(rows.shape[-1])
    n_pad = imod_pad_length(w)
    padded = taper_pad(rows.reshape(-1, w), n_pad)
    resp = ramp_filter(n_pad, radial=radial, nx=w, dtype=rows.dtype).to(rows.device)
    out = torch.fft.irfft(torch.fft.rfft(padded) * resp, n=n_pad)[:, :w]
    return out.reshape(rows.shape)


def zero_weight(w: int, radial: Radial = IMOD_RADIAL) -> float:
    """The zero-frequency weight of :func:`filter_rows` for rows of ``w`` pixels (``tilt``'s ``zeroWeight``)."""
    n_pad = imod_pad_length(w)
    return float(ramp_filter(n_pad, radial=radial, nx=w)[0])
