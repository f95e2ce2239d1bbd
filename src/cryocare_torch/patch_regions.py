"""Where Noise2Noise patches come from (:mod:`.patches` re-exports all of it): the normalisation statistics
of each pair, the disjoint training and validation regions (:func:`split_regions` is the one owner of that
rule; the reasons are in :mod:`.patches`), and the patch positions inside a region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DataError

Array = np.ndarray


@dataclass(frozen=True)
class PairStats:
    """Mean and standard deviation of both halves of a pair together (from ``n`` sampled voxels)."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Region:
    """Voxels ``lo:hi`` along ``axis`` (1 = y, 2 = x of the ``(d, h, w)`` view), all of the other axes."""

    axis: int
    lo: int
    hi: int


def region_ranges(shape: Sequence[int], region: Region) -> list[list[int]]:
    """``[[z0, z1], [y0, y1], [x0, x1]]`` voxel ranges of ``region`` in data of ``(d, h, w)`` ``shape``."""
    ranges = [[0, int(n)] for n in shape]
    ranges[region.axis] = [region.lo, region.hi]
    return ranges


def as_volume(arr: Array) -> Array:
    """View ``(h, w)`` as ``(1, h, w)``; ``(d, h, w)`` unchanged (no copy; memmaps stay memmaps)."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise DataError(f"expected a 2D image or a 3D volume, got an array of shape {arr.shape}")
    return arr


def patch_shape(ndim: int, size: int) -> tuple[int, int, int]:
    return (size, size, size) if ndim == 3 else (1, size, size)


def _sample_rows(vol: Array, max_values: int, rng: np.random.Generator) -> Array:
    d, h, w = vol.shape
    n_rows = d * h
    k = min(n_rows, max(1, max_values // max(w, 1)))
    rows = np.sort(rng.choice(n_rows, size=k, replace=False)) if k < n_rows else np.arange(n_rows)
    return np.asarray(vol[rows // h, rows % h], dtype=np.float64)


def pair_statistics(
    even: Array, odd: Array, *, max_values: int = 1 << 22, seed: int = 0, name: str = "input"
) -> PairStats:
    """Mean/std of both halves together from at most ``max_values`` voxels per half (whole random rows).

    Raises :class:`DataError` for NaN/Inf, constant data or identical halves.
    """
    ev, od = as_volume(even), as_volume(odd)
    if ev.shape != od.shape:
        raise DataError(f"halves of {name} differ in shape: {even.shape} vs {odd.shape}; pair the right files")
    rng = np.random.default_rng([seed, 7])
    se = _sample_rows(ev, max_values, rng)
    so = _sample_rows(od, max_values, np.random.default_rng([seed, 7]))  # the same rows in both halves
    both = np.concatenate([se.ravel(), so.ravel()])
    if not np.isfinite(both).all():
        raise DataError(f"{name} contains NaN or Inf values; fix or re-export the data")
    mean, std = float(both.mean()), float(both.std())
    if not std > 1e-12 * max(1.0, abs(mean)):
        raise DataError(f"{name} is constant (value {mean:g}); check that the right files were given")
    if np.array_equal(se, so):
        raise DataError(f"the two halves of {name} are identical; Noise2Noise needs two independent halves")
    return PairStats(mean, std, both.size)


def pooled_statistics(stats: Sequence[PairStats]) -> tuple[float, float]:
    """Mean and std of the union of all samples (between-pair spread included)."""
    n = np.array([s.n for s in stats], dtype=np.float64)
    m = np.array([s.mean for s in stats])
    v = np.array([s.std for s in stats]) ** 2
    mean = float((n * m).sum() / n.sum())
    var = float((n * (v + (m - mean) ** 2)).sum() / n.sum())
    return mean, var**0.5


def legacy_axes(shape: Sequence[int]) -> tuple[int, int]:
    """The validation-slab axes tried by checkpoints written before 12/2026: the longer of y and x first."""
    return (1, 2) if shape[1] >= shape[2] else (2, 1)


def split_regions(
    shape: tuple[int, int, int], patch: tuple[int, int, int], val_fraction: float, name: str = "input",
    axes: Sequence[int] = (1, 2),
) -> tuple[Region, Region | None]:
    """Disjoint train and validation regions: validation is the last ``max(p, val_fraction*n)`` voxels
    along y (x only if y cannot hold both regions; see the module docstring for why y). Raises
    :class:`DataError` when the data cannot hold the patches. ``axes``: the axes to try, in order
    (checkpoints written before 12/2026 tried the longer of y and x first)."""
    if any(s < p for s, p in zip(shape, patch, strict=True)):
        dims = "x".join(str(s) for s in shape)
        raise DataError(
            f"{name} of shape {dims} (d x h x w) is smaller than a patch of {patch[-1]} voxels; "
            "use a smaller patch size"
        )
    if val_fraction <= 0:
        return Region(1, 0, shape[1]), None
    for axis in axes:
        n, p = shape[axis], patch[axis]
        n_val = max(p, int(np.ceil(val_fraction * n)))
        if n - n_val >= p:
            return Region(axis, 0, n - n_val), Region(axis, n - n_val, n)
    raise DataError(
        f"{name} of shape {shape} cannot hold separate training and validation patches of {patch[-1]} voxels "
        "(needs twice the patch size along y or x); use a smaller patch size or val_fraction 0"
    )


def sample_starts(
    shape: tuple[int, int, int],
    patch: tuple[int, int, int],
    region: Region,
    n: int,
    rng: np.random.Generator,
    mask: Array | None = None,
    name: str = "mask",
) -> Array:
    """``(n, 3)`` int64 patch corners with the patch inside ``region``; with ``mask`` (same shape as the
    data) only corners whose patch centre has ``mask > 0`` (rejection sampling, reads few mask voxels)."""
    lo = np.zeros(3, dtype=np.int64)
    hi = np.array([s - p + 1 for s, p in zip(shape, patch, strict=True)], dtype=np.int64)
    lo[region.axis] = region.lo
    hi[region.axis] = region.hi - patch[region.axis] + 1
    if mask is None:
        return rng.integers(lo, hi, size=(n, 3), dtype=np.int64)
    mvol = as_volume(mask)
    if mvol.shape != tuple(shape):
        raise DataError(f"mask shape {mask.shape} differs from the data shape {shape}; use a mask of the same size")
    half = np.array(patch, dtype=np.int64) // 2
    found: list[Array] = []
    total, tries = 0, 0
    while total < n and tries < 200:
        cand = rng.integers(lo, hi, size=(max(4 * n, 1024), 3), dtype=np.int64)
        c = cand + half
        keep = cand[np.asarray(mvol[c[:, 0], c[:, 1], c[:, 2]]) > 0]
        found.append(keep)
        total += len(keep)
        tries += 1
    ok = np.concatenate(found)
    if len(ok) == 0:
        raise DataError(f"{name} has no voxel > 0 where patches can be centred in this region; check the mask")
    if len(ok) < n:
        ok = ok[rng.integers(0, len(ok), size=n)]
    return ok[:n]
