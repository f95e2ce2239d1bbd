"""Tile grids, blending weights and z-slab plans for memory-bounded prediction (no model here).

Shapes are ``(..., d, h, w)``. Along each axis a grid of equally long tiles covers every voxel:

* an axis at least one tile long gets tiles spread as evenly as starts on multiples of ``size_multiple`` allow,
  so that neighbours overlap by at least ``overlap`` voxels; the last tile may reach up to
  ``size_multiple - 1`` voxels past the data;
* a shorter axis gets a single tile, rounded up to ``size_multiple``;
* past the end of the data, tiles see it padded (reflect where the axis is long enough, else replicate) --
  see :func:`pad_end`.

Why starts on multiples of ``size_multiple`` (``2**depth`` for a U-Net): a U-Net's max-pooling makes it
equivariant only to shifts by that multiple. A tile starting 2 voxels off the grid pools other voxel pairs than
the untiled volume does and gives another, equally valid, restoration: on a trained missing-wedge model the
interior of such tiles differed from the untiled result by up to 1.2x the restored volume's standard deviation
(bench/RESULTS.md, "Seams"). Aligned, the interior of every tile is the untiled result, whatever the tile plan
(memory budget, device), and the blend only has to hide the tile edges.

Blending weights are separable raised-cosine ramps over each overlap with a neighbour and 1
elsewhere. The third of an overlap nearest a tile's edge gets weight 0 from that tile (the
neighbour, whose interior it is, takes over), so a network whose receptive-field radius is at most
``overlap // 3`` gives exactly the untiled result; a voxel covered by a single tile always has
weight 1. Weights are normalised per axis so that all tiles covering a voxel sum to 1, and
stitching ``sum(weight * tile)`` of an identity returns the input up to float rounding.

:func:`plan_slabs` groups rows of tiles along z into slabs: only the input z-range of one slab (and
the accumulator of the overlap it shares with the next) is ever needed in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


def round_up(n: int, m: int) -> int:
    return -(-int(n) // int(m)) * int(m)


def round_down(n: int, m: int) -> int:
    return (int(n) // int(m)) * int(m)


@dataclass(frozen=True)
class AxisTiling:
    """The tiles along one axis: ``starts[i]`` to ``starts[i] + tile`` in padded coordinates."""

    length: int
    """Data length along the axis."""
    tile: int
    starts: tuple[int, ...]

    @property
    def padded(self) -> int:
        """Length after end-padding: where the last tile ends (at least ``length``)."""
        return max(self.length, self.starts[-1] + self.tile)

    @property
    def n(self) -> int:
        return len(self.starts)

    def overlaps(self, i: int) -> tuple[int, int]:
        """Voxels tile ``i`` shares with its previous and next neighbour."""
        left = self.starts[i - 1] + self.tile - self.starts[i] if i > 0 else 0
        right = self.starts[i] + self.tile - self.starts[i + 1] if i + 1 < self.n else 0
        return max(left, 0), max(right, 0)

    @cached_property
    def _raw(self) -> list[np.ndarray]:
        for margin in (True, False):
            raw = [_ramp_weight(self.tile, *self.overlaps(i), margin=margin) for i in range(self.n)]
            if _coverage(self.starts, raw, self.padded).min() > 0:
                break
        return raw

    @cached_property
    def _norm(self) -> np.ndarray:
        return _coverage(self.starts, self._raw, self.padded)

    def weight(self, i: int) -> np.ndarray:
        """Normalised blending weight of tile ``i`` (float64, length ``tile``)."""
        s = self.starts[i]
        return self._raw[i] / self._norm[s : s + self.tile]


def _coverage(starts: Sequence[int], weights: Sequence[np.ndarray], length: int) -> np.ndarray:
    total = np.zeros(length, dtype=np.float64)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + w.shape[0]] += w
    return total


def _ramp_weight(tile: int, left: int, right: int, margin: bool = True) -> np.ndarray:
    """1 inside, a raised-cosine ramp over each overlap with a neighbour.

    With ``margin`` the first third of each overlap (the voxels nearest this tile's edge, where
    the network lacks context) gets weight 0 and the neighbour's weight 1; the ramp spans the
    middle third. Ramps of two neighbours over their shared overlap sum to 1. (A third rather than a
    quarter: for trained default U-Nets at overlap 28 the seams fell from 0.40-0.91x to 0.29-0.65x
    the bf16 rounding noise's RMS; bench/RESULTS.md, "Seams".)
    """
    w = np.ones(tile, dtype=np.float64)
    for ov, sl in ((left, slice(0, None)), (right, slice(None, None, -1))):
        ov = min(ov, tile)
        if ov > 0:
            mg = ov // 3 if margin else 0
            ramp = np.zeros(ov)
            ramp[ov - mg :] = 1.0
            n = ov - 2 * mg
            ramp[mg : ov - mg] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
            view = w[sl]
            view[:ov] = np.minimum(view[:ov], ramp)
    return w


def plan_axis(length: int, tile: int, overlap: int, size_multiple: int = 1) -> AxisTiling:
    """Tiles of at most ``tile`` voxels (rounded up to ``size_multiple``) covering ``length`` voxels.

    Tiles start on multiples of ``size_multiple`` (module docstring). The tile is shrunk to the smallest
    multiple of ``size_multiple`` that covers the axis with the fewest tiles sharing at least ``overlap``
    voxels with each neighbour. An axis shorter than the tile gets one tile of ``round_up(length,
    size_multiple)`` voxels. ``overlap`` must be smaller than the tile; when ``tile - overlap`` is below
    ``size_multiple`` no aligned plan exists and the starts are only spread evenly.
    """
    if length < 1 or tile < 1 or overlap < 0 or size_multiple < 1:
        raise ValueError(f"invalid axis tiling: length={length} tile={tile} overlap={overlap} m={size_multiple}")
    m = size_multiple
    tile = round_up(tile, m)
    if length <= tile:
        return AxisTiling(length, min(tile, round_up(length, m)), (0,))
    if overlap >= tile:
        raise ValueError(f"overlap {overlap} must be smaller than the tile size {tile}")
    n = math.ceil((length - tile) / (tile - overlap)) + 1

    def smallest(n: int) -> int:  # the smallest tile that covers the axis with n tiles sharing `overlap`
        return max(overlap + 1, round_up(math.ceil((length - overlap) / n) + overlap, m))

    if tile - overlap < m:  # no room for a step of one multiple: even spread, as for m = 1
        small = smallest(n)
        return AxisTiling(length, small, tuple((i * (length - small)) // (n - 1) for i in range(n)))
    while True:  # terminates: with enough tiles a step of one multiple (<= tile - overlap) covers the axis
        for t in range(smallest(n), tile + 1, m):
            k = math.ceil((length - t) / m)  # the last start, in multiples of m, so that the last tile reaches the end
            if m * math.ceil(k / (n - 1)) <= t - overlap:  # the widest step still leaves the overlap
                return AxisTiling(length, t, tuple(m * ((i * k) // (n - 1)) for i in range(n)))
        n += 1


@dataclass(frozen=True)
class TileGrid:
    """A Cartesian grid of tiles over an N-D shape."""

    axes: tuple[AxisTiling, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.length for a in self.axes)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        return tuple(a.padded for a in self.axes)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return tuple(a.tile for a in self.axes)

    @property
    def n_tiles(self) -> int:
        return math.prod(a.n for a in self.axes)

    def indices(self, first_axis_rows: Sequence[int] | None = None) -> Iterator[tuple[int, ...]]:
        """Tile indices in C order; optionally only those whose first-axis index is in the rows."""
        rows = range(self.axes[0].n) if first_axis_rows is None else first_axis_rows
        for i in rows:
            for rest in np.ndindex(*(a.n for a in self.axes[1:])):
                yield (int(i), *(int(j) for j in rest))

    def slices(self, index: Sequence[int], offset0: int = 0) -> tuple[slice, ...]:
        """Where tile ``index`` lies in the padded data (first axis shifted by ``-offset0``)."""
        out = []
        for k, (a, i) in enumerate(zip(self.axes, index, strict=True)):
            s = a.starts[i] - (offset0 if k == 0 else 0)
            out.append(slice(s, s + a.tile))
        return tuple(out)

    def weight(self, index: Sequence[int]) -> np.ndarray:
        """Separable normalised blending weight of one tile (float32, ``tile_shape``)."""
        w = np.ones((), dtype=np.float64)
        for a, i in zip(self.axes, index, strict=True):
            w = np.multiply.outer(w, a.weight(i))
        return w.astype(np.float32)


def make_grid(
    shape: Sequence[int],
    tile_size: int | Sequence[int],
    overlap: int | Sequence[int],
    size_multiple: int | Sequence[int] = 1,
) -> TileGrid:
    """A :class:`TileGrid` for ``shape``; scalars apply to every axis."""
    nd = len(shape)

    def per_axis(v: int | Sequence[int]) -> list[int]:
        vals = [int(v)] * nd if isinstance(v, (int, np.integer)) else [int(x) for x in v]
        if len(vals) != nd:
            raise ValueError(f"expected {nd} values, got {vals}")
        return vals

    return TileGrid(
        tuple(
            plan_axis(n, t, o, m)
            for n, t, o, m in zip(shape, per_axis(tile_size), per_axis(overlap), per_axis(size_multiple), strict=True)
        )
    )


def pad_end(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Pad the last ``len(shape)`` axes of ``x`` at their end up to ``shape``.

    Reflect (without repeating the edge voxel) where the axis is long enough, else replicate.
    """
    lead = x.ndim - len(shape)
    for k, target in enumerate(shape):
        axis = lead + k
        n = x.shape[axis]
        p = int(target) - n
        if p < 0:
            raise ValueError(f"cannot pad axis of length {n} down to {target}")
        if p == 0:
            continue
        if p <= n - 1:
            idx = torch.arange(n - 2, n - 2 - p, -1)
        else:
            idx = torch.full((p,), n - 1, dtype=torch.long)
        x = torch.cat([x, x.index_select(axis, idx.to(x.device))], dim=axis)
    return x


def pad_end_(buf: torch.Tensor, valid: Sequence[int]) -> torch.Tensor:
    """In place, what :func:`pad_end` returns: ``buf``'s last ``len(valid)`` axes hold data in ``[0, valid)``;
    fill the rest of each axis by reflection (else replication), axis after axis as :func:`pad_end` does."""
    lead = buf.ndim - len(valid)
    for k, n in enumerate(int(v) for v in valid):
        axis = lead + k
        p = buf.shape[axis] - n
        if p < 0 or n < 1:
            raise ValueError(f"cannot pad axis of length {n} to {buf.shape[axis]}")
        if p == 0:
            continue
        region = buf
        for j in range(k + 1, len(valid)):
            region = region.narrow(lead + j, 0, int(valid[j]))
        idx = torch.arange(n - 2, n - 2 - p, -1) if p <= n - 1 else torch.full((p,), n - 1, dtype=torch.long)
        region.narrow(axis, n, p).copy_(region.index_select(axis, idx.to(buf.device)))
    return buf


@dataclass(frozen=True)
class Slab:
    """One step of out-of-core prediction along z (axis 0).

    Read input ``[in_z0, min(in_z1, d))`` (pad beyond ``d``), predict the tile ``rows``; afterwards
    output ``[out_z0, out_z1)`` is final. Accumulated output in ``[out_z1, in_z1)`` is carried into
    the next slab, whose ``in_z0`` equals this ``out_z1``.
    """

    rows: tuple[int, ...]
    in_z0: int
    in_z1: int
    out_z0: int
    out_z1: int


def plan_slabs(axis: AxisTiling, rows_per_slab: int = 1) -> list[Slab]:
    """Group the tiles along z into slabs of ``rows_per_slab`` tile rows."""
    k = max(1, int(rows_per_slab))
    slabs = []
    out_z0 = 0
    for first in range(0, axis.n, k):
        rows = tuple(range(first, min(first + k, axis.n)))
        nxt = rows[-1] + 1
        out_z1 = axis.starts[nxt] if nxt < axis.n else axis.length
        slabs.append(Slab(rows, axis.starts[rows[0]], axis.starts[rows[-1]] + axis.tile, out_z0, out_z1))
        out_z0 = out_z1
    return slabs


def stitch(grid: TileGrid, tiles: Sequence[torch.Tensor | np.ndarray]) -> torch.Tensor:
    """Blend tiles (one per :meth:`TileGrid.indices`, in order) into an array of ``grid.shape``."""
    out = torch.zeros(grid.padded_shape, dtype=torch.float32)
    for index, tile in zip(grid.indices(), tiles, strict=True):
        t = torch.as_tensor(tile, dtype=torch.float32)
        out[grid.slices(index)] += torch.from_numpy(grid.weight(index)) * t
    return out[tuple(slice(0, n) for n in grid.shape)]


def extract(grid: TileGrid, data: torch.Tensor) -> list[torch.Tensor]:
    """All tiles of ``data`` (shape ``grid.shape``), padded as needed, in :meth:`TileGrid.indices` order."""
    padded = pad_end(data, grid.padded_shape)
    return [padded[grid.slices(i)] for i in grid.indices()]
