"""Tile and batch sizes from a memory budget: a measured memory model, kept simple.

Host memory of a prediction = what importing torch and loading the model costs (not budgeted, ~0.3 GB) +
the z-slab buffers + one forward pass of a batch of tiles:

* slab: one float32 input buffer (the two halves pass through it in turn) and one float32 accumulator per
  output (the overlap carried to the next slab lives inside it), ``4 * h * w * (1 + n_accumulators)`` bytes
  per section of slab depth (the tile's z edge), allocated once and reused (:mod:`.engine`); reading and
  writing go through ~16 MB chunks;
* forward pass: a fixed part plus a part linear in the tile voxels and the first level's channels
  (deeper levels have 2x the channels but 1/8 (3D) or 1/4 (2D) of the voxels). Measured with
  ``bench/bench_tile_size.py`` (``ru_maxrss`` around one pass of the default U-Net, depth 2, 16 channels,
  bf16 autocast, tiles 48^3 to 128^3): 55 MB + 189 bytes per voxel (11.8 per voxel per channel; the fit is
  within 10% at every size). The factors below add 10% to that; float32 keeps the earlier measurement
  (29-30 bytes per voxel per channel, 36 with headroom). Very narrow networks cost more per channel
  (oneDNN pads channels; a 2-channel toy U-Net measured 167 bytes per voxel), hence at least 4 channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..tiling import plan_axis, round_down, round_up

BYTES_PER_VOXEL_PER_CHANNEL = {torch.float32: 36.0, torch.bfloat16: 13.0, torch.float16: 13.0}
FORWARD_FIXED_BYTES = 60 * 2**20
"""The part of a forward pass's peak that does not grow with the tile (measured 55 MB on CPU)."""
LOOP_BYTES_PER_VOXEL = 24.0
MAX_TILE = {2: 4096, 3: 160}
"""Largest automatic tile edge (3D: its z edge): bigger 3D tiles bring little speed but thicker z-slabs."""
MAX_TILE_LATERAL = 256
"""Largest automatic y/x edge of a 3D tile (its z edge can be smaller: :func:`choose_tiling`)."""
MIN_TILE = {2: 64, 3: 32}
"""Smallest automatic tile edge: below it the overlap would eat most of each tile (a budget too small for the
sections' area then gives this tile and an over-budget warning instead of a run that never ends)."""
MAX_BATCH = 64


def first_channels(model: nn.Module, default: int = 16) -> int:
    """Output channels of the model's first convolution (the U-Net's ``n_first``)."""
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Conv3d)):
            return int(mod.out_channels)
    return default


def size_multiple(model: nn.Module) -> int:
    return max(1, int(getattr(model, "size_multiple", 1)))


def bytes_per_voxel(model: nn.Module, dtype: torch.dtype) -> float:
    """Estimated peak bytes per tile voxel of one forward pass (activations and loop buffers)."""
    per = BYTES_PER_VOXEL_PER_CHANNEL.get(dtype, BYTES_PER_VOXEL_PER_CHANNEL[torch.float32])
    return per * max(4, first_channels(model)) + LOOP_BYTES_PER_VOXEL


def device_budget_bytes(device: torch.device, budget_gb: float) -> int:
    """The budget for slab and tiles: on CPU less the fixed cost of a forward pass, on CUDA limited to 90% of
    the GPU memory free now."""
    budget = int(budget_gb * 2**30)
    if device.type == "cpu":
        budget = max(budget // 2, budget - FORWARD_FIXED_BYTES)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, int(0.9 * free))
    return budget


@dataclass(frozen=True)
class TilePlan:
    """Tile edge (voxels, in the model's spatial dimensions), overlap and tiles per forward pass."""

    tile: int
    overlap: int
    batch_size: int
    auto_overlap: bool = True
    over_budget: bool = False
    """True when even the smallest tile exceeds the budget (the caller should say so)."""
    min_overlap: int = 0
    """The model's halo (e.g. the radius of its Gaussian skip): an automatic overlap is never smaller."""
    tile_z: int | None = None
    """z edge of a 3D tile when thinner than ``tile`` (the y/x edge); None: cubic."""

    def shape(self, ndim: int) -> tuple[int, ...]:
        """Tile edges per model axis: ``(z, y, x)`` or ``(y, x)``."""
        if ndim == 3:
            return (self.tile_z or self.tile, self.tile, self.tile)
        return (self.tile, self.tile)

    def halved(self, multiple: int) -> TilePlan | None:
        """Half the tile (for a retry after running out of GPU memory); None when already minimal."""
        tile = max(multiple, round_down(self.tile // 2, multiple))
        if tile >= self.tile:
            return None
        overlap = auto_overlap(tile, self.min_overlap) if self.auto_overlap else min(self.overlap, tile // 2)
        return TilePlan(tile, overlap, 1, self.auto_overlap, min_overlap=self.min_overlap)


def auto_overlap(tile: int, min_overlap: int = 0) -> int:
    """``min_overlap`` (the model's seam overlap and halo) where the model gives one, else a quarter of the tile;
    at most half the tile. (A quarter of a large tile, 41 voxels of a 164 one, only cost compute: seams depend on
    the overlap against the model's reach, not on the tile.)"""
    return min(int(min_overlap), tile // 2) if min_overlap > 0 else tile // 4


def model_halo(model: nn.Module) -> int:
    """Voxels near a tile edge that depend on data beyond it, beyond what the U-Net's zero padding gives:
    the radius (4 sigma) of a Gaussian skip. Tiles overlap by at least this much."""
    sigma = getattr(model, "skip_sigma", None)
    return math.ceil(4 * max(sigma)) if sigma else 0


SEAM_OVERLAP_PER_LEVEL = 7
"""Overlap (voxels) per 2x level of a U-Net below which its tile edges show. The default depth-2 U-Net sees 21
voxels each way (its output is exactly the same beyond that); on three trained default models, tiled against
untiled in float32, overlap 24 left seams up to 2.3x the RMS (1.5x the largest) bf16 rounding error, overlap 28
(tiles keeping the middle third of each overlap) 0.29-0.65x the RMS and 0.4-0.6x the largest
(bench/RESULTS.md, "Seams"); deeper nets see further."""

SEAM_OVERLAP_PER_LEVEL_WEDGE = 9
"""The same for a model trained in the missing-wedge mode, which fills low frequencies from further away: on a
30-minute wedge model (tiles on the pooling grid), overlap 28 left seams of 0.9x the RMS and 4.6x the largest
bf16 rounding error, overlap 36 0.15x and 1.0x (bench/RESULTS.md, "Seams of a missing-wedge model")."""


def model_min_overlap(model: nn.Module, *, wedge: bool = False) -> int:
    """The smallest automatic overlap: the model's halo (:func:`model_halo`) and, for a U-Net of depth ``n``
    (``model.depth``), ``SEAM_OVERLAP_PER_LEVEL * 2**n`` (28 for the default depth 2); with ``wedge`` (a model
    trained in the missing-wedge mode) ``SEAM_OVERLAP_PER_LEVEL_WEDGE * 2**n`` (36)."""
    depth = getattr(model, "depth", None)
    per_level = SEAM_OVERLAP_PER_LEVEL_WEDGE if wedge else SEAM_OVERLAP_PER_LEVEL
    seam = per_level * 2 ** int(depth) if isinstance(depth, int) else 0
    return max(model_halo(model), seam)


def slab_bytes_per_section(spatial_shape: Sequence[int], n_accumulators: int) -> float:
    """Host bytes per z-section of a slab: the float32 input buffer plus the accumulators (the carry inside)."""
    h, w = spatial_shape[-2:]
    return 4.0 * h * w * (1 + n_accumulators)


def choose_tiling(
    spatial_shape: Sequence[int],
    multiple: int,
    bytes_per_vox: float,
    budget_bytes: int,
    *,
    slab_bytes_per_z: float = 0.0,
    host_budget_bytes: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    min_overlap: int = 0,
) -> TilePlan:
    """The largest tile (a multiple of ``multiple``, capped by the data) and batch within the budget.

    ``spatial_shape`` holds the dimensions the model sees (``(d, h, w)`` or ``(h, w)``). A 3D tile of
    edge ``t`` also needs a z-slab of input and output of about ``t * slab_bytes_per_z`` host bytes.
    With ``host_budget_bytes`` None (CPU) activations and slab share ``budget_bytes``; otherwise
    (GPU) activations must fit ``budget_bytes`` and the slab ``host_budget_bytes``. Explicit
    ``tile_size`` / ``overlap`` / ``batch_size`` are kept (the tile rounded up to ``multiple``).
    """
    nd = len(spatial_shape)
    shared = host_budget_bytes is None

    def tile_vox(t: int, tz: int | None = None) -> int:
        edges = ((tz or t),) + (t,) * (nd - 1) if nd == 3 else (t,) * nd
        return math.prod(min(e, round_up(s, multiple)) for e, s in zip(edges, spatial_shape, strict=True))

    def slab(t: int, tz: int | None = None) -> float:
        return slab_bytes_per_z * (min(tz or t, round_up(spatial_shape[0], multiple)) if nd == 3 else 1)

    def fits(t: int, tz: int | None = None) -> bool:
        act = tile_vox(t, tz) * bytes_per_vox
        if host_budget_bytes is None:  # shared
            return act + slab(t, tz) <= budget_bytes
        return act <= budget_bytes and slab(t, tz) <= host_budget_bytes

    over = False
    tile_z: int | None = None
    if tile_size is not None:
        tile = round_up(tile_size, multiple)
    elif nd == 3 and overlap is None and (best := _best_3d_tile(spatial_shape, multiple, fits, min_overlap)):
        tile_z, tile = best
    else:
        cap = min(round_up(max(spatial_shape), multiple), max(multiple, round_down(MAX_TILE[nd], multiple)))
        floor = min(cap, round_up(MIN_TILE[nd], multiple))
        tile = cap
        while tile > floor and not fits(tile):
            tile -= multiple
        over = not fits(tile)
    if overlap is None:
        ov = auto_overlap(tile, min_overlap)
    else:
        ov = int(overlap)
        if ov >= tile:
            raise ConfigError(
                f"predict.overlap ({ov}) must be smaller than the tile size ({tile}); lower --overlap or raise --tile"
            )
    if batch_size is None:
        room = budget_bytes - (slab(tile, tile_z) if shared else 0.0)
        batch = min(max(1, int(room // max(1.0, tile_vox(tile, tile_z) * bytes_per_vox))), MAX_BATCH)
    else:
        batch = int(batch_size)
    return TilePlan(tile, ov, batch, overlap is None, over, min_overlap, tile_z if tile_z != tile else None)


def _best_3d_tile(shape: Sequence[int], multiple: int, fits: Callable[[int, int], bool],
                  min_overlap: int) -> tuple[int, int] | None:
    """``(z edge, y/x edge)`` of the automatic 3D tile: of the tiles within the budget (the largest y/x edge for
    each z edge), the one that computes the fewest voxels per voxel of data -- with the overlap it gets and the
    tiling :func:`plan_axis` makes. The forward pass's rate per voxel differs by at most ~25% between these tile
    shapes, with no trend that held from one run to the next (bench/RESULTS.md, "Tile size", "Forward-pass
    rate"), so this is about the fastest; counting the rate would give thin and deep volumes different memory.
    Where z-slabs dominate the budget (wide sections) the best tile is thinner in z than in y/x, and a volume
    thinner than it gets the same tile: the same peak memory from a thin to a deep tomogram. None when no tile
    of at least ``MIN_TILE`` fits."""
    d = shape[0]
    cap_z = min(round_up(d, multiple), max(multiple, round_down(MAX_TILE[3], multiple)))
    cap_l = min(round_up(max(shape[1:]), multiple), max(multiple, round_down(MAX_TILE_LATERAL, multiple)))
    floor = round_up(MIN_TILE[3], multiple)
    best: tuple[float, int, int] | None = None
    for tz in range(min(floor, cap_z), cap_z + 1, multiple):
        lateral = cap_l
        while lateral > max(tz, floor) and not fits(lateral, tz):
            lateral -= multiple
        if lateral < min(tz, cap_l) or not fits(lateral, tz):
            continue
        ov = auto_overlap(lateral, min_overlap)  # the overlap the plan will get
        if any(n > t and ov >= t for n, t in zip(shape, (tz, lateral, lateral), strict=True)):
            continue
        computed = 1.0
        for n, t in zip(shape, (tz, lateral, lateral), strict=True):
            ax = plan_axis(n, t, ov, multiple)
            computed *= ax.n * ax.tile
        score = math.prod(shape) / computed
        if best is None or score > best[0] * (1 + 1e-9):
            best = (score, tz, lateral)
    return None if best is None else (best[1], best[2])
