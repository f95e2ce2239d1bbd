"""Small tensor filters shared by the model (its Gaussian skip) and the baselines.

Pure functions on float tensors; leading axes are a batch, the last ``len(sigma)`` axes are filtered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def symmetric_index(n: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices ``-pad .. n+pad-1`` folded into ``[0, n)`` by half-sample symmetric reflection."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _pad_symmetric(t: torch.Tensor, axis: int, pad: int) -> torch.Tensor:
    """``t`` padded by ``pad`` on both sides of ``axis`` with half-sample symmetric reflection.

    Flipped slices and one ``cat`` (5-10x faster on CPU than ``index_select`` along the inner axes); the
    index form where the pad is longer than the axis (several reflections)."""
    n = t.shape[axis]
    if pad > n:
        return t.index_select(axis, symmetric_index(n, pad, t.device))
    return torch.cat([t.narrow(axis, 0, pad).flip(axis), t, t.narrow(axis, n - pad, pad).flip(axis)], dim=axis)


def gaussian_smooth(t: torch.Tensor, sigma: Sequence[float], truncate: float = 4.0) -> torch.Tensor:
    """Tensor core of :func:`gaussian_filter`: smooth the last ``len(sigma)`` axes of a float tensor
    (leading axes are a batch). Separable; each pass is a sum of shifted copies of the padded array,
    which beats ``conv1d``/``conv3d`` with one channel on CPU and runs unchanged on GPU."""
    nd = len(sigma)
    out = t
    for k, s in enumerate(sigma):
        if s <= 0:
            continue
        axis = t.ndim - nd + k
        radius = max(1, int(truncate * s + 0.5))
        xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (xs / s) ** 2)
        weights: list[float] = (kernel / kernel.sum()).tolist()
        n = out.shape[axis]
        padded = _pad_symmetric(out, axis, radius)
        acc = padded.narrow(axis, 0, n) * weights[0]
        for i in range(1, 2 * radius + 1):
            acc.add_(padded.narrow(axis, i, n), alpha=weights[i])
        out = acc
    return out
