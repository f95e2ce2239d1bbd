"""Missing-wedge mode with a plain warm-up: Noise2Noise first, then the wedge, from the same two halves.

In the missing-wedge mode only part of each rotated pair trains denoising (for a -60..60 range, the frequencies
around x are in both the input and the loss in 47% of the pairs, around y in 33%;
``bench/wedge_rotation_coverage.py``), and its larger patches make fewer steps: on a 30-minute budget it
restored the directions the tilt series measured less sharply than plain Noise2Noise did. With
``train.wedge_warmup_fraction`` ``f`` > 0 a run trains plain Noise2Noise (its own patches, 32 voxels on a CPU) for
the share ``f`` of the budget into ``MODEL_DIR/plain/``, then the missing-wedge mode from those weights
(``train.init_from``) for the rest into ``MODEL_DIR``. Both checkpoints stay: ``cryocare predict``/``denoise``
restore with both and merge them (:mod:`cryocare_torch.predict.wedge_merge`).

The budget is ``train.max_minutes`` (else ``train.epochs``) split ``f : 1 - f``. A resumed run continues the
wedge phase when ``MODEL_DIR/last.pt`` exists, else the plain phase (which stops at once when its share of the
budget is spent) and then starts the wedge phase.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..config import CryocareConfig
from .result import TrainResult
from .resume import prepare_output_dir

PLAIN_DIR = "plain"


def uses_warmup(cfg: CryocareConfig | None) -> bool:
    """Whether ``cfg`` asks for the plain warm-up (a missing-wedge run not already started from weights)."""
    if cfg is None:
        return False
    tc = cfg.train
    return tc.missing_wedge is not None and tc.wedge_warmup_fraction > 0 and tc.init_from is None


def phase_configs(cfg: CryocareConfig, out: Path) -> tuple[CryocareConfig, CryocareConfig]:
    """The configurations of the plain phase and of the wedge phase (which starts from the plain best.pt)."""
    tc, f = cfg.train, cfg.train.wedge_warmup_fraction
    plain, wedge = cfg.model_copy(deep=True), cfg.model_copy(deep=True)
    plain.train.missing_wedge = None
    plain.train.wedge_warmup_fraction = 0.0
    wedge.train.init_from = out / PLAIN_DIR / "best.pt"
    if tc.max_minutes is not None:
        plain.train.max_minutes = f * tc.max_minutes
        wedge.train.max_minutes = (1.0 - f) * tc.max_minutes
    else:
        n_plain = min(tc.epochs - 1, max(1, math.ceil(f * tc.epochs)))
        plain.train.epochs, wedge.train.epochs = max(1, n_plain), max(1, tc.epochs - n_plain)
    return plain, wedge


def train_with_warmup(
    train_fn: Callable[..., TrainResult], pairs: object, out: Path, cfg: CryocareConfig, *, resume: bool,
    overwrite: bool, log: Callable[[str], None], **kwargs: object,
) -> TrainResult:
    """Run the two phases with ``train_fn`` (:func:`cryocare_torch.train.train`); the wedge phase's result."""
    plain_cfg, wedge_cfg = phase_configs(cfg, out)
    plain_dir = out / PLAIN_DIR
    if resume and (out / "last.pt").exists():
        return train_fn(pairs, out, wedge_cfg, resume=True, log=log, **kwargs)
    if not resume:
        prepare_output_dir(out, overwrite)  # refuse an earlier training before the warm-up spends its minutes
    f = cfg.train.wedge_warmup_fraction
    log(f"missing-wedge mode: plain Noise2Noise warm-up for {f:.0%} of the budget into {plain_dir}, then the wedge")
    train_fn(pairs, plain_dir, plain_cfg, resume=resume and (plain_dir / "last.pt").exists(), overwrite=overwrite,
             log=log, **kwargs)
    log(f"missing-wedge mode: wedge phase from {wedge_cfg.train.init_from}")
    return train_fn(pairs, out, wedge_cfg, overwrite=overwrite, log=log, **kwargs)
