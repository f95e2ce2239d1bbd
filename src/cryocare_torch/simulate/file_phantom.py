"""A specimen read from a volume file instead of the generated one: real structure for benchmarks.

A tomogram or map (MRC, TIFF, Zarr; axes ``z, y, x``) becomes the potential inside the simulator's ice slab:
its values are standardised (median 0, standard deviation ``phantom_contrast_v`` volts; higher = denser, or
lower with ``phantom_invert``), added to the ice potential and clipped at 0 (nothing below vacuum). Each axis is
centre-cropped, or mirrored at its ends, to the padded grid ``(d, h, w + 2 * lateral_pad)``, so tilted rays see
specimen everywhere as they do in a slab. A phantom made from a tomogram carries that tomogram's own missing
wedge and noise: rotate it (``--phantom-axes``) so that its wedge lies away from the simulated one, and smooth it
first, or the object holds frequencies no method can restore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputFileError
from ..io.volumes import read_whole_volume


def fit_axis(a: np.ndarray, axis: int, n: int) -> np.ndarray:
    """``a`` centre-cropped along ``axis`` to ``n``, or extended by mirroring at both ends (repeatedly)."""
    m = a.shape[axis]
    if m >= n:
        start = (m - n) // 2
        return np.take(a, np.arange(start, start + n), axis=axis)
    widths = [(0, 0)] * a.ndim
    widths[axis] = ((n - m) // 2, n - m - (n - m) // 2)
    return np.pad(a, widths, mode="symmetric")  # ... 1 0 | 0 1 ... m-1 | m-1 m-2 ..., repeated as needed


def read_phantom_volume(path: str | Path, axes: tuple[int, int, int] = (0, 1, 2)) -> np.ndarray:
    """The file's volume as float32 with its axes permuted to ``axes`` (a permutation of 0, 1, 2)."""
    if sorted(axes) != [0, 1, 2]:
        raise ConfigError(f"simulate.phantom_axes must be a permutation of 0 1 2, got {tuple(axes)}")
    data, meta = read_whole_volume(path)
    if data.ndim != 3 or min(data.shape) < 4:
        raise InputFileError(f"a phantom must be a 3D volume, this file holds shape {tuple(data.shape)}", path)
    if not np.isfinite(data).all():
        raise InputFileError("the volume holds NaN or infinite values; fix or mask them first", path)
    return np.ascontiguousarray(np.transpose(data, axes))


def phantom_potential(volume: np.ndarray, ice: torch.Tensor, *, ice_potential: float, contrast_v: float,
                      invert: bool = False) -> torch.Tensor:
    """Potential (V) on ``ice``'s grid: ``ice * (ice_potential + contrast_v * z)``, clipped at 0, where ``z`` is
    ``volume`` (sign-flipped with ``invert``) fitted to the grid and standardised to median 0, std 1."""
    v = volume.astype(np.float32, copy=False)
    for axis, n in enumerate(ice.shape):
        v = fit_axis(v, axis, int(n))
    v = -v if invert else v
    std = float(v.std())
    if std <= 0:
        raise ConfigError("the phantom volume is constant: it holds no structure to simulate")
    z = torch.from_numpy(np.ascontiguousarray((v - np.median(v)) / std))
    return (ice * (ice_potential + contrast_v * z)).clamp_(min=0.0)
