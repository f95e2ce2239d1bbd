"""In-memory prediction: tensors in, tensors out (the file wrapper is :mod:`.files`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypedDict, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import DataError, DeviceError
from ..logs import Log
from ..runtime import resolve_device, resolve_dtype
from ..tiling import TileGrid, make_grid
from .engine import Forward, TileTooLarge, run_tiled
from .memory import (
    TilePlan,
    bytes_per_voxel,
    choose_tiling,
    device_budget_bytes,
    model_min_overlap,
    size_multiple,
    slab_bytes_per_section,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

ArrayLike = torch.Tensor | np.ndarray
T = TypeVar("T")


class TileOptions(TypedDict, total=False):
    """Keyword options of :func:`predict_arrays` that :func:`predict_pair_arrays` passes on."""

    tile_size: int | None
    overlap: int | None
    batch_size: int | None
    device: torch.device | str
    dtype: torch.dtype | str
    memory_budget_gb: float
    ndim: int | None
    average_flips: bool
    log: Log | None
_logger = logging.getLogger("cryocare_torch.predict")


def default_log(log: Log | None) -> Log:
    return log if log is not None else _logger.info


def model_ndim(model: nn.Module, data_ndim: int) -> int:
    """The model's spatial dimensionality (``model.ndim``, else that of the data, at most 3)."""
    nd = getattr(model, "ndim", None)
    return int(nd) if nd in (2, 3) else min(max(data_ndim, 2), 3)


def build_grid(shape3: Sequence[int], ndim: int, plan: TilePlan, multiple: int) -> TileGrid:
    """Tile grid over ``(d, h, w)``; a 2D model gets one-section tiles without overlap in z."""
    if ndim == 3:
        return make_grid(shape3, plan.shape(3), plan.overlap, multiple)
    return make_grid(shape3, (1, plan.tile, plan.tile), (0, plan.overlap, plan.overlap), (1, multiple, multiple))


def run_with_retry(attempt: Callable[[TilePlan], T], plan: TilePlan, multiple: int, log: Log) -> T:
    """Call ``attempt(plan)``; when a tile does not fit in GPU memory, halve it and try again."""
    while True:
        try:
            return attempt(plan)
        except TileTooLarge:
            smaller = plan.halved(multiple)
            if smaller is None:
                raise DeviceError(
                    f"out of GPU memory even with tile size {plan.tile} and batch 1; "
                    "free GPU memory, use a smaller model, or run with --device cpu"
                ) from None
            log(f"out of GPU memory with tile size {plan.tile}; retrying with tile size {smaller.tile}")
            plan = smaller


def _as_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)


def _as_3d(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if isinstance(x, np.memmap) else x).detach().to("cpu", torch.float32)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise DataError(f"expected an image (h, w) or a volume/stack (d, h, w), got shape {tuple(t.shape)}")
    return t


def sample_stats(arrays: Sequence[ArrayLike], max_samples: int = 1 << 20, seed: int = 0) -> tuple[float, float]:
    """Pooled mean and standard deviation from a bounded random subsample of all ``arrays``."""
    rng = np.random.default_rng(seed)
    parts = []
    per = max(1, max_samples // max(1, len(arrays)))
    for a in arrays:
        flat = a.reshape(-1)
        n = flat.shape[0]
        if n <= per:
            vals = np.asarray(flat.cpu() if isinstance(flat, torch.Tensor) else flat, dtype=np.float64)
        else:
            idx = np.sort(rng.choice(n, size=per, replace=False))
            vals = np.asarray(flat[torch.from_numpy(idx)] if isinstance(flat, torch.Tensor) else flat[idx],
                              dtype=np.float64)
        parts.append(vals)
    v = np.concatenate(parts)
    if not np.isfinite(v).all():
        raise DataError("the data contain NaN or infinite values; fix or crop the input")
    mean, std = float(v.mean()), float(v.std())
    if not (np.isfinite(mean) and np.isfinite(std)):  # finite values whose square overflows
        raise DataError("the data values are too large for float64 statistics; rescale the input")
    if std <= 0:
        raise DataError("the data are constant (standard deviation 0); nothing to restore")
    return mean, std


def predict_tensor(
    model: nn.Module,
    volume: ArrayLike,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    memory_budget_gb: float = 1.0,
    ndim: int | None = None,
    log: Log | None = None,
) -> torch.Tensor:
    """Apply ``model`` to ``volume`` ``(d, h, w)`` or ``(h, w)`` tile by tile; float32 on CPU, same shape.

    No normalisation is applied. A 2D model (``ndim=2``, default ``model.ndim``, else the data's) is
    applied to each z-section of a ``(d, h, w)`` stack. Tiles blend smoothly over ``overlap``; unset
    sizes are chosen from ``memory_budget_gb``. ``dtype`` is the autocast precision (or "auto", "bf16"...).
    """
    (out3,) = predict_arrays(model, [volume], tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                             device=device, dtype=dtype, memory_budget_gb=memory_budget_gb,
                             ndim=ndim or model_ndim(model, volume.ndim), log=log)
    return out3 if volume.ndim == 3 else out3[0]


def predict_arrays(
    model: nn.Module,
    volumes: Sequence[ArrayLike],
    *,
    average: bool = False,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    memory_budget_gb: float = 1.0,
    ndim: int | None = None,
    average_flips: bool = False,
    log: Log | None = None,
) -> list[torch.Tensor]:
    """Like :func:`predict_tensor` for several same-shape volumes sharing batches; ``(d, h, w)`` results.

    With ``average`` a single tensor, the mean of the outputs, is returned. ``average_flips``: see
    :class:`cryocare_torch.predict.engine.Forward`.
    """
    log = default_log(log)
    dev = resolve_device(device) if isinstance(device, str) else device
    dt = _as_dtype(dtype, dev)
    vols = [_as_3d(v) for v in volumes]
    if any(v.shape != vols[0].shape for v in vols):
        raise DataError(f"inputs differ in shape: {[tuple(v.shape) for v in vols]}")
    nd = ndim or model_ndim(model, volumes[0].ndim)
    m = size_multiple(model)
    shape3 = tuple(vols[0].shape)
    spatial = shape3 if nd == 3 else shape3[1:]
    plan = choose_tiling(
        spatial, m, bytes_per_voxel(model, dt), device_budget_bytes(dev, memory_budget_gb),
        slab_bytes_per_z=slab_bytes_per_section(shape3, 1 if average else len(vols)),
        host_budget_bytes=None if dev.type == "cpu" else int(memory_budget_gb * 2**30),
        tile_size=tile_size, overlap=overlap, batch_size=batch_size, min_overlap=model_min_overlap(model),
    )
    model = model.to(dev).eval()

    def attempt(p: TilePlan) -> list[torch.Tensor]:
        grid = build_grid(shape3, nd, p, m)
        fwd = Forward(model, nd, dev, dt, p.batch_size, average_flips=average_flips)
        fwd.probe(grid.tile_shape)
        outs = [torch.empty(shape3, dtype=torch.float32) for _ in range(1 if average else len(vols))]

        def read(k: int, z0: int, z1: int, out: torch.Tensor) -> None:
            out.copy_(vols[k][z0:z1])

        def write(z0: int, parts: Sequence[torch.Tensor]) -> None:
            for o, part in zip(outs, parts, strict=True):
                o[z0 : z0 + part.shape[0]] = part

        run_tiled(fwd, grid, read, write, n_inputs=len(vols), average=average)
        return outs

    return run_with_retry(attempt, plan, m, log)


def predict_pair_arrays(
    model: nn.Module,
    even: ArrayLike,
    odd: ArrayLike,
    *,
    normalization: tuple[float, float] | None = None,
    **kwargs: Unpack[TileOptions],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """cryo-CARE restoration of one pair: ``(mean, even_restored, odd_restored)``, input's shape.

    Both halves are normalised with ``normalization`` = ``(mean, std)`` (default: pooled statistics
    of the pair itself), passed through the network, and denormalised with the same statistics.
    ``kwargs`` go to :func:`predict_arrays` (tile_size, overlap, batch_size, device, dtype, ...).
    """
    mean, std = normalization if normalization is not None else sample_stats([_as_3d(even), _as_3d(odd)])
    two_d = even.ndim == 2
    halves = [(_as_3d(x) - mean) / std for x in (even, odd)]
    kwargs.setdefault("ndim", model_ndim(model, even.ndim))
    e, o = predict_arrays(model, halves, average=False, **kwargs)
    e = e * std + mean
    o = o * std + mean
    avg = 0.5 * (e + o)
    if two_d:
        return avg[0], e[0], o[0]
    return avg, e, o
