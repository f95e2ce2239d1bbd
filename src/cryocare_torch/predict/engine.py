"""The tiled prediction loop: z-slabs of tiles, batched forward passes, blended accumulation.

Data are handled as ``(d, h, w)``; a 2D model sees tiles of one z-section (``tile_shape[0] == 1``).
Input comes from a ``read(z0, z1, out)`` callback and finished output goes to a ``write(z0, outputs)``
callback, so the same loop serves in-memory tensors and memory-mapped files. Only one slab of input
plus its accumulators is alive at a time (see :func:`cryocare_torch.tiling.plan_slabs`).

Host memory does not depend on the number of sections: the slab buffers (one input buffer that the inputs
take in turn, and the accumulators, the overlap carried to the next slab included) are allocated once, for the
deepest slab, and reused; after each slab the C allocator's free pages go back to the system
(:func:`cryocare_torch.runtime.release_free_memory`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ..runtime import autocast, memory_format, place_model, release_free_memory, tune_backend
from ..tiling import Slab, TileGrid, pad_end_, plan_slabs
from ..tomo.wedge import WEDGE_FLIPS_2D, WEDGE_FLIPS_3D

ReadFn = Callable[[int, int, int, torch.Tensor], None]
"""``read(k, z0, z1, out)`` fills ``out``, a float32 CPU tensor view ``(z1 - z0, h, w)`` (``z1 <= d``), with the
normalised sections ``z0:z1`` of input ``k``."""
WriteFn = Callable[[int, Sequence[torch.Tensor]], None]
"""``write(z0, outputs)`` receives finished float32 CPU tensors ``(k, h, w)`` starting at ``z0``."""


class TileTooLarge(Exception):
    """Internal: a single tile does not fit in GPU memory; the caller retries with a smaller tile."""


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


class Forward:
    """Runs a model on batches of tiles ``(B, *tile_shape)``; on CUDA OOM splits the batch.

    A 2D model gets ``(B, 1, h, w)`` (the singleton z of the tile is dropped). Returns float32 on CPU.
    ``batch_size`` shrinks permanently after an OOM; a single tile that does not fit raises
    :class:`TileTooLarge`. With ``average_flips`` each tile is passed four times, flipped by
    :data:`~cryocare_torch.tomo.wedge.WEDGE_FLIPS_3D` (2D: ``WEDGE_FLIPS_2D``), and the outputs flipped back and
    averaged (4x the time, the same memory): the network's errors that do not follow the flip partly average out.
    """

    def __init__(self, model: nn.Module, model_ndim: int, device: torch.device, dtype: torch.dtype,
                 batch_size: int, *, average_flips: bool = False) -> None:
        self.model = model
        self.flips = (WEDGE_FLIPS_3D if model_ndim == 3 else WEDGE_FLIPS_2D) if average_flips else ((),)
        self.model_ndim = model_ndim
        self.device = device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.fmt = memory_format(model_ndim, device)
        place_model(self.model, None, self.fmt)
        tune_backend(device)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        inp = x.reshape(shape[0], 1, *shape[-self.model_ndim:])
        if self.device.type == "cuda":
            inp = inp.pin_memory()
        inp = inp.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            # without flips the output is used as it comes: no batch-sized copy on the hot path
            y = self._flip_mean(inp) if len(self.flips) > 1 else self.model(inp)
        if tuple(y.shape) != tuple(inp.shape):
            raise CheckpointError(
                f"the model returned shape {tuple(y.shape)} for input {tuple(inp.shape)}; "
                "it must map (B, 1, *spatial) to the same shape"
            )
        return y.to("cpu", torch.float32).reshape(shape)

    def _flip_mean(self, inp: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for dims in self.flips:
            y = self.model(inp.flip(dims) if dims else inp)
            y = (y.flip(dims) if dims else y).float()
            total = y if total is None else total + y
        assert total is not None
        return total / len(self.flips)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self._run(x)
        except Exception as exc:
            if self.device.type != "cuda" or not _is_oom(exc):
                raise
        torch.cuda.empty_cache()
        if x.shape[0] == 1:
            raise TileTooLarge(tuple(x.shape[1:]))
        half = (x.shape[0] + 1) // 2
        self.batch_size = max(1, min(self.batch_size, half))
        return torch.cat([self(x[:half]), self(x[half:])])

    def probe(self, tile_shape: Sequence[int]) -> None:
        """On CUDA, find a batch size for which a forward pass of ``tile_shape`` tiles fits."""
        if self.device.type != "cuda":
            return
        while True:
            try:
                self._run(torch.zeros((self.batch_size, *tile_shape)))
                return
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                torch.cuda.empty_cache()
                if self.batch_size == 1:
                    raise TileTooLarge(tuple(tile_shape)) from None
                self.batch_size = max(1, self.batch_size // 2)


def rows_per_slab(grid: TileGrid, items_per_position: int, batch_size: int) -> int:
    """Tile rows per slab: 1 for 3D tiles; for one-section (2D) tiles enough rows to fill a batch."""
    if grid.tile_shape[0] > 1:
        return 1
    per_row = max(1, grid.n_tiles // grid.axes[0].n) * items_per_position
    return max(1, -(-batch_size // per_row))


def carry_over(acc: torch.Tensor, start: int, depth: int) -> None:
    """Move the accumulated rows ``[start, depth)`` of ``acc`` to its front and zero everything after them."""
    n = depth - start
    for row in range(n):  # row by row, front to back: never reads a row already overwritten
        acc[row].copy_(acc[start + row])
    acc[n:].zero_()


def tile_weights(grid: TileGrid, scale: float) -> Callable[[tuple[int, ...]], torch.Tensor]:
    """Blending weight of a tile times ``scale``: a z ramp times a cached (y, x) plane weight."""
    planes: dict[tuple[int, ...], torch.Tensor] = {}
    sub = TileGrid(grid.axes[1:])

    def weights(idx: tuple[int, ...]) -> torch.Tensor:
        key = tuple(idx[1:])
        if key not in planes:
            planes[key] = torch.from_numpy(sub.weight(key)) * scale
        wz = torch.from_numpy(grid.axes[0].weight(idx[0]).astype("float32"))
        return wz[:, None, None] * planes[key][None]

    return weights


def run_tiled(
    forward: Forward,
    grid: TileGrid,
    read: ReadFn,
    write: WriteFn,
    *,
    n_inputs: int = 1,
    average: bool = False,
    progress: Callable[[int], object] | None = None,
) -> None:
    """Predict every tile of ``grid`` (over ``(d, h, w)``) and write blended outputs slab by slab.

    With ``average`` the outputs of the ``n_inputs`` inputs are averaged into one accumulator
    (``write`` gets one tensor), else each input has its own. ``progress(n)`` is told of each batch.
    """
    d, h, w = grid.shape
    slabs = plan_slabs(grid.axes[0], rows_per_slab(grid, 1, forward.batch_size))
    buf_shape = (max(s.in_z1 - s.in_z0 for s in slabs), *grid.padded_shape[1:])
    inp = torch.empty(buf_shape, dtype=torch.float32)
    accs = [torch.zeros(buf_shape, dtype=torch.float32) for _ in range(1 if average else n_inputs)]
    weights = tile_weights(grid, 1.0 / n_inputs if average else 1.0)
    for slab in slabs:
        depth = slab.in_z1 - slab.in_z0
        z1 = min(slab.in_z1, d)
        for k in range(n_inputs):  # the inputs in turn through one buffer
            read(k, slab.in_z0, z1, inp[: z1 - slab.in_z0, :h, :w])
            pad_end_(inp[:depth], (z1 - slab.in_z0, h, w))
            _predict_slab(forward, grid, slab, inp, accs[0 if average else k], weights, progress)
        lo, hi = slab.out_z0 - slab.in_z0, slab.out_z1 - slab.in_z0
        write(slab.out_z0, [acc[lo:hi, :h, :w] for acc in accs])
        for acc in accs:
            carry_over(acc, hi, depth)
        release_free_memory()


def _predict_slab(forward: Forward, grid: TileGrid, slab: Slab, inp: torch.Tensor, acc: torch.Tensor,
                  weights: Callable[[tuple[int, ...]], torch.Tensor], progress: Callable[[int], object] | None) -> None:
    """Every tile of the slab's rows of ``inp`` through ``forward``, blended into ``acc``."""
    items = list(grid.indices(slab.rows))
    for pos in range(0, len(items), forward.batch_size):
        batch = items[pos : pos + forward.batch_size]
        y = forward(torch.stack([inp[grid.slices(idx, slab.in_z0)] for idx in batch]))
        for idx, tile in zip(batch, y, strict=True):
            acc[grid.slices(idx, slab.in_z0)].addcmul_(weights(idx), tile)
        if progress is not None:
            progress(len(batch))
