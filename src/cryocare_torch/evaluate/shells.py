"""Shell sums over the Fourier voxels of maps: the one owner of FSC shell binning (``linear`` or ``nearest``,
see :mod:`.fsc`) for every curve computed from spectra (:func:`.fsc.fsc`, :mod:`.fsc_truth`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from ..errors import DataError

Binning = Literal["linear", "nearest"]
Terms = Callable[[list[torch.Tensor]], torch.Tensor]


def shell_sums(spectra: Sequence[torch.Tensor], terms: Terms, shape: Sequence[int], binning: Binning,
               n_shells: int, *, weight_power: int = 1) -> torch.Tensor:
    """``(k + 1, n_shells)``: shell sums of the ``k`` real terms ``terms([slab of each spectrum])`` (a
    ``(k, *slab)`` tensor) and, last, the full-space voxel counts. ``spectra`` are rfftn arrays of maps
    of ``shape``; they are read slab by slab along axis 0 (bounded temporary memory). Each voxel's term
    is weighted by its binning weight raised to ``weight_power`` (2: for the variance of a weighted
    sum of independent voxels); the counts always use power 1."""
    fa = spectra[0]
    dev, f64 = fa.device, torch.float64
    f0 = torch.fft.fftfreq(shape[0], device=dev, dtype=f64)
    fx = torch.fft.rfftfreq(shape[-1], device=dev, dtype=f64)
    mult = torch.where((fx == 0) | (fx == 0.5), 1.0, 2.0)  # Hermitian partners of rfft columns
    rest_sq = fx**2 if len(shape) == 2 else torch.fft.fftfreq(shape[1], device=dev, dtype=f64)[:, None] ** 2 + fx**2
    sums: torch.Tensor | None = None  # last column collects what lies beyond the last shell
    counts = torch.zeros(n_shells + 1, dtype=f64, device=dev)
    slab = max(1, 2**22 // max(1, fa[0].numel()))
    for z0 in range(0, fa.shape[0], slab):
        chunk = [sp[z0 : z0 + slab] for sp in spectra]
        coord = torch.sqrt(f0[z0 : z0 + slab].reshape(-1, *([1] * (fa.ndim - 1))) ** 2 + rest_sq) * min(shape)
        m = mult.expand_as(coord).flatten()
        vals = terms(chunk).to(f64).flatten(1)
        if sums is None:
            sums = torch.zeros(vals.shape[0], n_shells + 1, dtype=f64, device=dev)
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]]
        if binning == "linear":  # teamtomo: each rfft voxel counted once, shared by two shells
            lo = coord.floor()
            parts = [(lo, 1.0 - (coord - lo), 1.0), (lo + 1.0, coord - lo, 1.0)]
        else:
            parts = [(torch.round(coord), torch.ones_like(coord), m)]
        for idx, w, vw in parts:
            idx, w = idx.clamp(max=n_shells).long().flatten(), w.flatten()
            sums.index_add_(1, idx, vals * (w * vw) ** weight_power)
            counts.index_add_(0, idx, w * m)
    if sums is None:
        raise DataError("FSC needs non-empty maps")
    return torch.cat([sums, counts[None]])[:, :n_shells]


def shell_frequencies(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    """Frequency (1/nm) of each shell of maps of ``shape`` with voxels of ``voxel_size`` Angstrom."""
    return np.arange(min(shape) // 2 + 1) / (min(shape) * voxel_size / 10.0)
