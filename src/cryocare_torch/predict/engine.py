"""The tiled prediction loop: z-slabs of tiles, batched forward passes, blended accumulation.

Data are handled as ``(d, h, w)``; a 2D model sees tiles of one z-section (``tile_shape[0] == 1``).
Input comes from a ``read(z0, z1)`` callback and finished output goes to a ``write(z0, outputs)``
callback, so the same loop serves in-memory tensors and memory-mapped files. Only one slab of input
plus its accumulators is alive at a time (see :func:`cryocare_torch.tiling.plan_slabs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ..runtime import autocast, memory_format, place_model, tune_backend
from ..tiling import TileGrid, pad_end, plan_slabs

ReadFn = Callable[[int, int], Sequence[torch.Tensor]]
"""``read(z0, z1)`` -> one float32 CPU tensor ``(min(z1, d) - z0, h, w)`` per input (already normalised)."""
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
    :class:`TileTooLarge`.
    """

    def __init__(self, model: nn.Module, model_ndim: int, device: torch.device, dtype: torch.dtype,
                 batch_size: int) -> None:
        self.model = model
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
            y = self.model(inp)
        if tuple(y.shape) != tuple(inp.shape):
            raise CheckpointError(
                f"the model returned shape {tuple(y.shape)} for input {tuple(inp.shape)}; "
                "it must map (B, 1, *spatial) to the same shape"
            )
        return y.to("cpu", torch.float32).reshape(shape)

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
    hp, wp = grid.padded_shape[1:]
    n_acc = 1 if average else n_inputs
    scale = 1.0 / n_inputs if average else 1.0
    carry: list[torch.Tensor] | None = None
    plane_weights: dict[tuple[int, ...], torch.Tensor] = {}

    def weights(idx: tuple[int, ...]) -> torch.Tensor:
        # separable: z ramp times a cached (y, x) plane weight
        key = tuple(idx[1:])
        if key not in plane_weights:
            sub = TileGrid(grid.axes[1:])
            plane_weights[key] = torch.from_numpy(sub.weight(key)) * scale
        wz = torch.from_numpy(grid.axes[0].weight(idx[0]).astype("float32"))
        return wz[:, None, None] * plane_weights[key][None]

    for slab in plan_slabs(grid.axes[0], rows_per_slab(grid, n_inputs, forward.batch_size)):
        depth = slab.in_z1 - slab.in_z0
        inputs = [pad_end(x, (depth, hp, wp)) for x in read(slab.in_z0, min(slab.in_z1, d))]
        if len(inputs) != n_inputs:
            raise ValueError(f"read returned {len(inputs)} arrays, expected {n_inputs}")
        accs = [torch.zeros((depth, hp, wp), dtype=torch.float32) for _ in range(n_acc)]
        if carry is not None:
            for acc, c in zip(accs, carry, strict=True):
                acc[: c.shape[0]] = c
        items = [(idx, k) for idx in grid.indices(slab.rows) for k in range(n_inputs)]
        pos = 0
        while pos < len(items):
            batch = items[pos : pos + forward.batch_size]
            pos += len(batch)
            x = torch.stack([inputs[k][grid.slices(idx, slab.in_z0)] for idx, k in batch])
            y = forward(x)
            for (idx, k), tile in zip(batch, y, strict=True):
                accs[0 if average else k][grid.slices(idx, slab.in_z0)].addcmul_(weights(idx), tile)
            if progress is not None:
                progress(len(batch))
        del inputs
        lo, hi = slab.out_z0 - slab.in_z0, slab.out_z1 - slab.in_z0
        write(slab.out_z0, [acc[lo:hi, :h, :w] for acc in accs])
        carry = [acc[hi:].clone() for acc in accs]
        del accs
