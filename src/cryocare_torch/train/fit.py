"""Noise2Noise training, the entry point: :func:`train` resolves the configuration (fresh, or resumed from
``last.pt``), opens the pairs, extracts the patches and runs the loop of :mod:`.loop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CryocareConfig
from ..errors import CheckpointError, ConfigError
from ..logs import resolve_progress
from ..patches import build_patch_data
from ..runtime import describe, resolve_dtype
from .checkpoint import config_from, read_checkpoint
from .distributed import preflight, session
from .inputs import open_mask, open_pairs
from .loop import _Run
from .result import TrainResult
from .resume import merge_resume_config, normalization_dict, prepare_output_dir, stored_stats
from .smoothing import resolve_skip
from .warmup import train_with_warmup, uses_warmup

_logger = logging.getLogger("cryocare_torch.train")
Source = str | Path | np.ndarray


def train(
    pairs: Sequence[tuple[Source, Source]],
    output_dir: str | Path,
    config: CryocareConfig | None = None,
    *,
    resume: bool | str | Path = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a U-Net on even/odd ``pairs`` (MRC paths or arrays) and write checkpoints to ``output_dir``.

    ``resume=True`` continues from ``output_dir/last.pt`` (a path: from that file) with the stored
    optimiser, schedule and random state; explicitly set options such as ``epochs`` or ``max_minutes``
    may change, settings that define the model or the data may not (:class:`ConfigError`). ``max_minutes``
    counts the training time of all runs together. On SIGINT/SIGTERM the current step is finished,
    ``last.pt`` is written and :class:`KeyboardInterrupt` is raised. Under ``torchrun`` (``WORLD_SIZE`` > 1)
    each process trains on its share of every batch and only rank 0 logs and writes files. ``progress``: tqdm bars
    (default: only when stderr is a terminal); without them a plain line per epoch, at most one per ~10 s apart
    from every 10% of the epochs, and one every ~30 s within a long epoch.
    """
    log = log or _logger.info
    progress = resolve_progress(progress)
    out = Path(output_dir)
    if uses_warmup(config):  # missing-wedge mode after a plain warm-up: two runs of this function (.warmup)
        assert config is not None
        return train_with_warmup(train, pairs, out, config, resume=bool(resume), overwrite=overwrite, log=log,
                                 progress=progress)
    raw, cfg = _start(out, config, resume, overwrite)
    opened = open_pairs(pairs)
    ndim = opened[0].ndim
    if raw is not None and int(raw["ndim"]) != ndim:
        raise CheckpointError(f"checkpoint is a {raw['ndim']}D model but the data are {ndim}D", out / "last.pt")
    device_type = preflight(cfg.train.device, cfg.train.batch_size).type  # device/torchrun errors before the data
    cfg, patch_size = _resolved_patches(cfg, ndim, device_type)
    tc, pc = cfg.train, cfg.patches
    mask = open_mask(pc.mask, opened) if pc.mask is not None else None
    data = build_patch_data(
        [(p.even, p.odd) for p in opened],
        ndim=ndim,
        patch_size=patch_size,
        n_patches=pc.resolved_n_patches(ndim),
        val_fraction=pc.val_fraction,
        seed=tc.seed,
        masks=[mask] * len(opened),
        names=[p.name for p in opened],
        stats=stored_stats(raw, opened, out) if raw is not None else None,
        cache_gb=pc.cache_gb,
        legacy_split=raw is not None and not all("validation_region" in p for p in raw["normalization"]["pairs"]),
    )
    norm = normalization_dict(data.stats, opened, data.val_regions)
    with session(tc.device, tc.num_threads, log) as ranks:  # torchrun's process group; CPU threads
        log, progress = (log, progress) if ranks.main else ((lambda _m: None), False)
        cfg = resolve_skip(cfg, data.train, ndim, log) if raw is None else cfg  # Gaussian skip widths
        device, dtype = ranks.device, resolve_dtype(tc.precision, ranks.device)
        n_val = len(data.val) if data.val is not None else 0
        where = "in memory (float16)" if data.train.cached else "read from the inputs per batch"
        run = _Run(cfg, ndim, data, norm, device, dtype, out, raw, progress, log, ranks)  # restores a checkpoint first
        log(f"{len(opened)} pair(s): {len(data.train)} training / {n_val} validation patches of "
            f"{patch_size}^{ndim} voxels, {where}; {describe(device, dtype)}")
        return run.run()


def _start(out: Path, config: CryocareConfig | None, resume: bool | str | Path, overwrite: bool
           ) -> tuple[dict[str, Any] | None, CryocareConfig]:
    """The checkpoint to resume from (None: a fresh run) and the configuration; prepares ``out``."""
    if not resume:
        prepare_output_dir(out, overwrite)
        return None, config if config is not None else CryocareConfig()
    ck_path = out / "last.pt" if resume is True else Path(resume)
    if not ck_path.exists():
        raise CheckpointError("no checkpoint to resume from; train without --resume to start anew", ck_path)
    raw = read_checkpoint(ck_path)
    cfg = merge_resume_config(config_from(raw, ck_path), config, ck_path)
    out.mkdir(parents=True, exist_ok=True)
    return raw, cfg


def _resolved_patches(cfg: CryocareConfig, ndim: int, device_type: str) -> tuple[CryocareConfig, int]:
    """The patch size used, checked against the U-Net depth, and the configuration recording it."""
    pc = cfg.patches
    patch_size = pc.resolved_patch_size(ndim, device_type, missing_wedge=cfg.train.missing_wedge is not None)
    if patch_size % 2**cfg.model.depth:
        raise ConfigError(
            f"patches.patch_size {patch_size} must be a multiple of 2**model.depth = {2**cfg.model.depth}"
        )
    if pc.patch_size is None or pc.n_patches is None:  # record what was used (a resume on another device keeps it)
        cfg = cfg.model_copy(deep=True)
        cfg.patches.patch_size, cfg.patches.n_patches = patch_size, pc.resolved_n_patches(ndim)
    return cfg, patch_size
