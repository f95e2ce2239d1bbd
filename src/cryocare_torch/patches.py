"""Noise2Noise training data: normalisation, train/validation regions, patch sampling, augmentation.

Inputs are pairs of arrays (numpy or read-only ``np.memmap``) of shape ``(d, h, w)`` (volumes, or image
stacks for 2D training) or ``(h, w)``. Internally every array is viewed as ``(d, h, w)`` and a patch is
``(p, p, p)`` (3D) or ``(1, p, p)`` (2D), so one code path serves both.

* Statistics come from a bounded random subsample of whole rows (``max_values`` voxels), so they
  work on memory maps larger than RAM (:mod:`.patch_regions`, with the regions and patch positions).
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
from .patch_regions import (
    Array,
    PairStats,
    Region,
    as_volume,
    legacy_axes,
    pair_statistics,
    patch_shape,
    pooled_statistics,
    region_ranges,
    sample_starts,
    split_regions,
)
from .tomo.wedge import WEDGE_FLIPS_2D, WEDGE_FLIPS_3D

__all__ = ["Array", "PairStats", "PatchData", "PatchPairs", "Region", "as_volume", "augment_batch",
           "build_patch_data", "legacy_axes", "pair_statistics", "patch_shape", "pooled_statistics",
           "region_ranges", "sample_starts", "split_regions"]


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
    group = WEDGE_FLIPS_3D if nsp == 3 else WEDGE_FLIPS_2D  # indexed by 2 x (first draw) + (second draw)
    out = []
    for sample in batch:
        u = rng.random(nsp + 1)
        dims = group[2 * int(u[0] < 0.5) + int(u[1] < 0.5)]  # 3D: z+x, y; 2D: y, x
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
