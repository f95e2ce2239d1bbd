"""Restore an even/odd MRC pair into an MRC file, slab by slab, with bounded memory.

Inputs are read through :func:`cryocare_torch.io.mrc.read_slab` (short-lived maps), outputs go
through :class:`cryocare_torch.io.mrc.VolumeWriter` (a temporary file renamed when complete), so a
failure at any point leaves nothing at the output paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import PredictConfig
from ..errors import CheckpointError, DataError
from ..io.atomic import check_output
from ..io.halves import check_halves, header_voxel
from ..io.mrc import HEADER_BYTES, VolumeMeta, VolumeWriter
from ..io.volumes import read_volume_meta, read_volume_slab, with_voxel_size
from ..logs import PercentLog, resolve_progress
from ..runtime import describe, resolve_device, resolve_dtype, set_threads
from ..train.checkpoint import load_checkpoint
from .arrays import Log, build_grid, default_log, run_with_retry, sample_stats
from .engine import Forward, run_tiled
from .memory import (
    TilePlan,
    bytes_per_voxel,
    choose_tiling,
    device_budget_bytes,
    model_min_overlap,
    size_multiple,
    slab_bytes_per_section,
)

_LABEL = "cryocare-torch predict"
_IO_CHUNK_VOXELS = 1 << 22


def half_paths(output: Path) -> tuple[Path, Path]:
    """``<stem>_even.mrc`` and ``<stem>_odd.mrc`` beside ``output``."""
    suffix = output.suffix or ".mrc"
    return output.with_name(f"{output.stem}_even{suffix}"), output.with_name(f"{output.stem}_odd{suffix}")


def read_section(path: Path, meta: VolumeMeta, z0: int, z1: int) -> np.ndarray:
    """``data[z0:z1]`` as float32 ``(k, h, w)``; a 2D image is one section.

    Read a few sections at a time so that the mapped file pages (resident while mapped) stay few.
    """
    if meta.ndim == 3:
        h, w = meta.shape[1:]
        step = max(1, _IO_CHUNK_VOXELS // (h * w))
        if z1 - z0 <= step:
            return read_volume_slab(path, meta, z0, z1)
        out = np.empty((z1 - z0, h, w), dtype=np.float32)
        for z in range(z0, z1, step):
            out[z - z0 : z - z0 + step] = read_volume_slab(path, meta, z, min(z + step, z1))
        return out
    return read_volume_slab(path, meta, 0, 1)


def file_stats(paths: Sequence[Path], meta: VolumeMeta, max_sections: int = 32, max_samples: int = 1 << 20,
               seed: int = 0) -> tuple[float, float]:
    """Pooled mean/std of several files from random voxels of up to ``max_sections`` random z-sections."""
    rng = np.random.default_rng(seed)
    d = meta.shape[0] if meta.ndim == 3 else 1
    zs = np.sort(rng.choice(d, size=min(d, max_sections), replace=False))
    per = max(1, max_samples // (len(paths) * len(zs)))
    samples = []
    for p in paths:
        for z in zs:
            sec = read_section(p, meta, int(z), int(z) + 1).reshape(-1)
            samples.append(sec if sec.size <= per else sec[rng.choice(sec.size, size=per, replace=False)])
    try:
        return sample_stats([np.concatenate(samples)], max_samples=sum(s.size for s in samples))
    except DataError as err:
        raise DataError(f"{paths[0]} / {paths[-1]}: {err}") from None


def _load(checkpoint: Any) -> Any:
    if isinstance(checkpoint, (str, Path)):

        return load_checkpoint(Path(checkpoint), device="cpu")
    return checkpoint  # an already loaded checkpoint (model, ndim, normalization, config)


def _check_pair(even: Path, odd: Path) -> VolumeMeta:
    me, mo = read_volume_meta(even), read_volume_meta(odd)
    check_halves(even, odd, me.shape, mo.shape, header_voxel(me), header_voxel(mo))
    if not me.has_voxel_size and mo.has_voxel_size:  # as training: a header without a voxel size does not conflict
        return replace(me, voxel_size=mo.voxel_size)
    return me


def _warn_voxel_size(meta: VolumeMeta, even: Path, odd: Path, log: Log) -> None:
    if not meta.has_voxel_size:
        log(f"warning: {even} and {odd} have no voxel size in their headers; the restored tomogram has none "
            "either (the restoration does not need it; set it afterwards, e.g. IMOD 'alterheader -del')")


def _normalization(cfg: PredictConfig, ck: Any, even: Path, odd: Path, meta: VolumeMeta) -> tuple[float, float, str]:
    """``(mean, std, where from)``: the checkpoint's training statistics or this pair's."""
    if cfg.normalization != "checkpoint":
        mean, std = file_stats([even, odd], meta)
        return mean, std, "this pair"
    try:
        return float(ck.normalization["mean"]), float(ck.normalization["std"]), "training data"
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError("the checkpoint has no normalisation statistics; use normalization=input") from None


def _tile_plan(model: torch.nn.Module, cfg: PredictConfig, device: torch.device, dtype: torch.dtype,
               shape3: tuple[int, ...], nd: int, m: int, log: Log, *, wedge: bool = False) -> TilePlan:
    spatial = shape3 if nd == 3 else shape3[1:]
    plan = choose_tiling(
        spatial, m, bytes_per_voxel(model, dtype), device_budget_bytes(device, cfg.memory_budget_gb),
        slab_bytes_per_z=slab_bytes_per_section(shape3, 2 if cfg.write_halves else 1),
        host_budget_bytes=None if device.type == "cpu" else int(cfg.memory_budget_gb * 2**30),
        tile_size=cfg.tile_size, overlap=cfg.overlap, batch_size=cfg.batch_size,
        min_overlap=model_min_overlap(model, wedge=wedge),
    )
    if plan.over_budget:
        log(f"warning: even {plan.tile}-voxel tiles need more than --memory-budget {cfg.memory_budget_gb} GB "
            f"for sections of {shape3[1]}x{shape3[2]}; continuing with them")
    return plan


def _section_reader(even: Path, odd: Path, meta: VolumeMeta, shape3: tuple[int, ...], mean: float,
                    std: float) -> Callable[[int, int, int, torch.Tensor], None]:
    """Fill a buffer with sections ``z0:z1`` of half ``k`` (0 even, 1 odd), normalised, a few sections at a time
    (no slab-sized temporaries); NaN/inf refused (the statistics only sample the data)."""
    step = max(1, _IO_CHUNK_VOXELS // (shape3[1] * shape3[2]))

    def read(k: int, z0: int, z1: int, out: torch.Tensor) -> None:
        p = (even, odd)[k]
        for z in range(z0, z1, step):
            ze = min(z + step, z1)
            chunk = read_section(p, meta, z, ze)
            if not np.isfinite(chunk).all():  # never write NaN blobs
                raise DataError(f"sections {z0}-{z1 - 1} contain NaN or infinite values; fix or crop the input", p)
            out[z - z0 : ze - z0].copy_(torch.from_numpy(chunk).sub_(mean).div_(std))

    return read


def _slab_writer(writers: list[VolumeWriter], shape3: tuple[int, ...], mean: float,
                 std: float) -> Callable[[int, Sequence[torch.Tensor]], None]:
    """Finished rows back to data units, written a few sections at a time (the writer's float64 statistics stay
    small): the average, and with three writers the two restored halves too."""

    def write(z0: int, parts: Sequence[torch.Tensor]) -> None:
        for x in parts:  # in place: these accumulator rows are finished
            x.mul_(std).add_(mean)
        step = max(1, _IO_CHUNK_VOXELS // (shape3[1] * shape3[2]))
        for k in range(0, parts[0].shape[0], step):
            chunk = [x[k : k + step] for x in parts]
            if len(chunk) == 1:
                writers[0].write_slab(z0 + k, chunk[0].numpy())
                continue
            writers[0].write_slab(z0 + k, (0.5 * (chunk[0] + chunk[1])).numpy())
            writers[1].write_slab(z0 + k, chunk[0].numpy())
            writers[2].write_slab(z0 + k, chunk[1].numpy())

    return write


def _check_float16(writer: VolumeWriter, log: Log) -> None:
    rel = writer.rounding_rms / writer.data_std if writer.data_std > 0 else 0.0
    log(f"float16 output (MRC mode 12): rounding error RMS {100 * rel:.3f}% of the restored data's standard deviation")
    if rel > 0.01:
        log(f"warning: float16 rounding costs {100 * rel:.2f}% of the data's spread (the values sit far from zero "
            "relative to their spread); write float32 (--output-dtype float32) if that matters")


def predict_files(
    checkpoint: Path | Any,
    even: Path,
    odd: Path,
    output: Path,
    config: PredictConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    log: Log | None = None,
) -> Path:
    """Restore the pair ``even``/``odd`` with a trained model into ``output`` (float32 MRC).

    The network is applied to both halves and the outputs are averaged; with
    ``config.write_halves`` the restored halves go to ``<stem>_even.mrc`` / ``<stem>_odd.mrc`` too.
    Shape, voxel size and origin are those of ``even``. ``checkpoint`` is a path (see
    :func:`cryocare_torch.train.checkpoint.load_checkpoint`) or an already loaded checkpoint.
    Returns ``output``. ``progress``: a tqdm bar (default: only when stderr is a terminal), else one line per ~10%.
    ``config.output_dtype`` float16 writes MRC mode 12 and reports its rounding error against the data's spread.
    """
    cfg = config or PredictConfig()
    log = default_log(log)
    progress = resolve_progress(progress)
    even, odd, output = Path(even), Path(odd), Path(output)
    meta = with_voxel_size(_check_pair(even, odd), cfg.voxel_size)
    shape3 = meta.shape if meta.ndim == 3 else (1, *meta.shape)
    outputs = [output, *(half_paths(output) if cfg.write_halves else ())]
    inputs = [even, odd] + ([Path(checkpoint)] if isinstance(checkpoint, (str, Path)) else [])
    nbytes = int(np.prod(shape3)) * (2 if cfg.output_dtype == "float16" else 4) + HEADER_BYTES
    for i, out in enumerate(outputs):
        check_output(out, overwrite=overwrite, inputs=inputs, nbytes=nbytes * (len(outputs) if i == 0 else 1))
    ck = _load(checkpoint)
    nd = int(ck.ndim)
    if nd == 3 and meta.ndim == 2:
        raise DataError(f"{even} is a 2D image but the checkpoint is a 3D model; use a model trained on 2D data")
    if nd == 2 and meta.ndim == 3:
        log(f"applying the 2D model to each of the {meta.shape[0]} sections of {even.name}")
    # everything that can refuse the data comes before the first log line
    mean, std, source = _normalization(cfg, ck, even, odd, meta)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.precision, device)
    set_threads(cfg.num_threads)
    _warn_voxel_size(meta, even, odd, log)
    log(describe(device, dtype))
    model = ck.model.to(device).eval()
    log(f"normalising with mean {mean:.6g}, std {std:.6g} ({source})")
    m = size_multiple(model)
    wedge = getattr(getattr(ck.config, "train", None), "missing_wedge", None) is not None
    plan = _tile_plan(model, cfg, device, dtype, shape3, nd, m, log, wedge=wedge)
    read = _section_reader(even, odd, meta, shape3, mean, std)

    written: list[VolumeWriter] = []  # the writers of the last attempt (a retry after out-of-memory makes new ones)

    def attempt(p: TilePlan) -> None:
        grid = build_grid(shape3, nd, p, m)
        fwd = Forward(model, nd, device, dtype, p.batch_size, average_flips=cfg.average_flips)
        fwd.probe(grid.tile_shape)
        log(f"tiles {'x'.join(map(str, grid.tile_shape))} voxels, overlap {p.overlap}, batch {fwd.batch_size}, "
            f"{grid.n_tiles} tiles per half")
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(VolumeWriter(o, shape3, meta, overwrite=overwrite, inputs=inputs,
                                                        label=_LABEL, dtype=cfg.output_dtype)) for o in outputs]
            written.extend(writers)
            lines = PercentLog(2 * grid.n_tiles, f"restoring {output.name}", log)  # without a terminal
            bar = stack.enter_context(tqdm(total=2 * grid.n_tiles, unit="tile", disable=not progress,
                                           desc=output.name, leave=False))

            def tick(n: int) -> None:
                bar.update(n) if progress else lines.update(n)

            run_tiled(fwd, grid, read, _slab_writer(writers, shape3, mean, std), n_inputs=2,
                      average=not cfg.write_halves, progress=tick)

    run_with_retry(attempt, plan, m, log)
    if cfg.output_dtype == "float16":
        _check_float16(written[-len(outputs)], log)
    log(f"wrote {output}" + (f" and its restored halves {outputs[1].name}, {outputs[2].name}" if cfg.write_halves
                             else ""))
    return output
