"""Noise2Noise training data: normalisation, train/validation regions, patch sampling, augmentation.

Inputs are pairs of arrays (numpy or read-only ``np.memmap``) of shape ``(d, h, w)`` (volumes, or image
stacks for 2D training) or ``(h, w)``. Internally every array is viewed as ``(d, h, w)`` and a patch is
``(p, p, p)`` (3D) or ``(1, p, p)`` (2D), so one code path serves both.

* Statistics come from a bounded random subsample of whole rows (``max_values`` voxels), so they
  work on memory maps larger than RAM.
* Validation patches come from a slab at the end of the y axis (the tilt axis; x only when y is too
  short for both regions) that no training patch touches: both regions are disjoint voxel ranges and
  every patch lies entirely inside its region. y, not the longest axis: defocus and ice thickness of
  tilted views change along x (across the tilt axis), so a slab cut along y samples every x and is
  representative of the whole tomogram, and it is where ``cryocare evaluate`` finds data the network
  never trained on (:func:`split_regions` is the one owner of the rule).
* Patch pairs are kept as a normalised float16 copy when it fits ``PatchConfig.cache_gb`` (1200 x 64^3
  pairs = 1.26 GB instead of 2.5 GB in float32; float16's 11-bit mantissa is far finer than the noise
  of normalised data), otherwise they are read from the memory maps per batch. Both paths round to
  float16, so results do not depend on which one is used.
* Augmentation (:func:`augment_batch`) only flips axes and swaps halves. In 3D only the flips that
  keep a missing wedge in place, even an asymmetric one (lamellae): flip y, and z with x together
  (the 180-degree rotation about the tilt axis y); never z alone or x alone (derivation at
  :func:`augment_batch`). No 90-degree rotation ever mixes z with y or x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

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


def augment_batch(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random wedge-preserving flips and a random swap of the two halves, per sample.

    ``batch`` is ``(B, 2, *spatial)`` (channel 0 and 1 = the two halves). 2D ``(h, w)``: flips of y
    and x. 3D ``(d, h, w)``: flip y, and flip z and x together -- the group {1, y, zx, zyx}.

    Why not z alone or x alone: for a tilt series about y, view ``theta`` samples the Fourier plane
    spanned by ky and ``(kx, kz) = t (cos theta, -sin theta)``, so a Fourier voxel is measured when
    ``arctan(-kz / kx)`` lies in the tilt range ``[a, b]``. x -> -x (kx -> -kx) or z -> -z alone maps
    that angle to its negative: the range becomes ``[-b, -a]``, a mirrored wedge unless ``a = -b``
    (lamellae are often tilted -60..+40 degrees about a pre-tilt). Flipping both keeps the angle
    (and is the 180-degree rotation about y); y -> -y does not touch (kx, kz). The wedge is point
    symmetric (real data), so all four flips keep it. Draws ``1 + spatial dims`` numbers per sample
    (in 3D the x draw is unused; distributed ranks skip that many draws per sample).
    """
    nsp = batch.dim() - 2
    out = []
    for sample in batch:
        u = rng.random(nsp + 1)
        if nsp == 3:
            dims = ([1, 3] if u[0] < 0.5 else []) + ([2] if u[1] < 0.5 else [])
        else:
            dims = [1 + i for i in range(nsp) if u[i] < 0.5]
        if u[nsp] < 0.5:
            sample = sample.flip(0)
        out.append(sample.flip(dims) if dims else sample)
    return torch.stack(out)


class PatchPairs(Dataset):
    """Patch pairs ``(2, *spatial)`` (even, odd), normalised per pair, float32 tensors.

    ``index`` is ``(N, 4)``: pair number and patch corner ``(z, y, x)``. With ``cache`` the pairs are
    extracted once into a float16 array, otherwise read from ``sources`` per access.
    """

    def __init__(
        self,
        sources: Sequence[tuple[Array, Array]],
        stats: Sequence[PairStats],
        index: Array,
        patch: tuple[int, int, int],
        ndim: int,
        *,
        names: Sequence[str] | None = None,
        cache: bool = True,
    ) -> None:
        self.sources = [(as_volume(e), as_volume(o)) for e, o in sources]
        self.stats = list(stats)
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 4)
        self.patch = tuple(patch)
        self.ndim = ndim
        self.names = list(names) if names is not None else [f"pair {i}" for i in range(len(self.sources))]
        self._cache: Array | None = None
        if cache and len(self.index):
            order = np.lexsort((self.index[:, 1], self.index[:, 0]))  # by pair, then z: memmap locality
            self._cache = np.empty((len(self.index), 2, *self.patch), dtype=np.float16)
            for i in order:
                self._cache[i] = self._extract(int(i))

    @property
    def cached(self) -> bool:
        """True when the patch pairs are held in memory (float16), False when read per access."""
        return self._cache is not None

    def __len__(self) -> int:
        return len(self.index)

    def _extract(self, i: int) -> Array:
        k, z, y, x = (int(v) for v in self.index[i])
        pd, ph, pw = self.patch
        st = self.stats[k]
        out = np.empty((2, pd, ph, pw), dtype=np.float32)
        for c, vol in enumerate(self.sources[k]):
            out[c] = vol[z : z + pd, y : y + ph, x : x + pw]
        if not np.isfinite(out).all():
            raise DataError(f"{self.names[k]} contains NaN or Inf values near (z={z}, y={y}, x={x}); fix the data")
        out -= st.mean
        out /= st.std
        np.clip(out, -65000.0, 65000.0, out=out)  # extreme outliers must not become float16 inf
        return out.astype(np.float16)

    def get_batch(self, indices: Sequence[int] | Array) -> torch.Tensor:
        """``(B, 2, *spatial)`` float32."""
        idx = np.asarray(indices, dtype=np.int64)
        arr = self._cache[idx] if self._cache is not None else np.stack([self._extract(int(i)) for i in idx])
        t = torch.from_numpy(arr.astype(np.float32))
        return t[:, :, 0] if self.ndim == 2 else t

    def replace(self, indices: Sequence[int] | Array, pairs: Array) -> None:
        """Overwrite cached patch pairs ``(B, 2, *patch)`` (normalised; the missing-wedge refresh)."""
        if self._cache is None:
            raise DataError("patch pairs are read from the inputs per batch (not cached); nothing to replace")
        self._cache[np.asarray(indices, dtype=np.int64)] = np.clip(pairs, -65000.0, 65000.0).astype(np.float16)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.get_batch([i])[0]


@dataclass
class PatchData:
    """Training and validation patch pairs of all input pairs and each pair's statistics."""

    train: PatchPairs
    val: PatchPairs | None
    stats: list[PairStats]
    val_regions: list[Region | None]
    """Each pair's validation region (no training patch touches it), ``None`` without validation."""


def build_patch_data(
    pairs: Sequence[tuple[Array, Array]],
    *,
    ndim: int,
    patch_size: int,
    n_patches: int,
    val_fraction: float,
    seed: int,
    masks: Sequence[Array | None] | None = None,
    names: Sequence[str] | None = None,
    stats: Sequence[PairStats] | None = None,
    cache_gb: float = 2.0,
    legacy_split: bool = False,
) -> PatchData:
    """Sample ``n_patches`` pairs from every input pair (``val_fraction`` of them from its validation
    region). ``stats`` (e.g. from a checkpoint) skips the statistics pass; ``masks`` is one per pair.
    ``legacy_split``: validation slabs as checkpoints before 12/2026 cut them (resuming one of those)."""
    names = list(names) if names is not None else [f"pair {i}" for i in range(len(pairs))]
    masks = list(masks) if masks is not None else [None] * len(pairs)
    patch = patch_shape(ndim, patch_size)
    vols = [(as_volume(e), as_volume(o)) for e, o in pairs]
    if stats is None:
        stats = [pair_statistics(e, o, seed=seed, name=nm) for (e, o), nm in zip(vols, names, strict=True)]
    n_val = 0 if val_fraction <= 0 else max(1, round(n_patches * val_fraction))
    tr_idx, va_idx, va_regions = [], [], []
    for k, ((ev, _), mask, nm) in enumerate(zip(vols, masks, names, strict=True)):
        rng = np.random.default_rng([seed, k, 3])
        axes = legacy_axes(ev.shape) if legacy_split else (1, 2)
        tr_region, va_region = split_regions(ev.shape, patch, val_fraction, nm, axes)
        va_regions.append(va_region)
        tr = sample_starts(ev.shape, patch, tr_region, n_patches - n_val, rng, mask, f"mask of {nm}")
        tr_idx.append(np.column_stack([np.full(len(tr), k), tr]))
        if va_region is not None:
            va = sample_starts(ev.shape, patch, va_region, n_val, rng, mask, f"mask of {nm}")
            va_idx.append(np.column_stack([np.full(len(va), k), va]))
    n_total = sum(len(i) for i in tr_idx) + sum(len(i) for i in va_idx)
    cache = n_total * 4 * int(np.prod(patch)) <= cache_gb * 2**30
    train = PatchPairs(vols, stats, np.concatenate(tr_idx), patch, ndim, names=names, cache=cache)
    val = PatchPairs(vols, stats, np.concatenate(va_idx), patch, ndim, names=names, cache=cache) if va_idx else None
    return PatchData(train, val, list(stats), va_regions)
