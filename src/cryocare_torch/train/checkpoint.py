"""Checkpoint format: one dict written atomically with ``torch.save``, readable with ``weights_only=True``.

Keys (format version 1)::

    format            "cryocare-torch-checkpoint"
    format_version    1
    package_version   cryocare-torch version that wrote it
    torch_version     torch version that wrote it
    config            CryocareConfig.model_dump(mode="json")
    ndim              2 or 3
    normalization     {"mode": "per_pair", "pairs": [{"mean", "std", "name", "shape", "validation_region"}, ...],
                       "mean", "std"}  (pooled over all pairs; validation_region: [[z0, z1], [y0, y1],
                       [x0, x1]] voxels never in a training patch, or None; absent before 12/2026)
    model_state       state_dict of the UNet (float32, never a compiled wrapper)
    optimizer_state   Adam state_dict
    scheduler_state   learning-rate schedule state_dict (or None)
    scaler_state      GradScaler state_dict (fp16 on GPU) or None
    rng_state         {"torch": ByteTensor, "numpy": {...}, "python": tuple}
    epoch             completed epochs
    epoch_step        steps already done in the epoch in progress (0 at an epoch boundary)
    epoch_loss        [sum, count] of the training loss in the epoch in progress
    step              optimisation steps done in total
    elapsed_s         training wall time in seconds, over all resumed runs
    history           [{"epoch", "train_loss", "val_loss", "lr", "time_s", "elapsed_s", "steps"}, ...]
    best_val_loss     best validation loss so far (training loss when there is no validation set)

Only plain Python values and tensors are stored, so loading never needs to unpickle arbitrary objects.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ..config import CryocareConfig, ModelConfig
from ..errors import CheckpointError
from ..io.atomic import atomic_torch_save
from ..model import UNet, build_model
from ..version import __version__

FORMAT = "cryocare-torch-checkpoint"
FORMAT_VERSION = 1


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready for inference: ``model`` is in eval mode on the requested device."""

    model: UNet
    config: CryocareConfig
    ndim: int
    normalization: dict[str, Any]
    history: list[dict[str, Any]]
    raw: dict[str, Any]
    path: Path


def rng_state() -> dict[str, Any]:
    """torch, numpy (global) and Python ``random`` states as plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    if not state:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].numpy().astype(np.uint32)
        np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind ``torch.compile``."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: CryocareConfig,
    ndim: int,
    normalization: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    epoch: int = 0,
    epoch_step: int = 0,
    epoch_loss: tuple[float, int] = (0.0, 0),
    step: int = 0,
    elapsed_s: float = 0.0,
    history: list[dict[str, Any]] | None = None,
    best_val_loss: float | None = None,
) -> Path:
    """Write a checkpoint atomically (the previous file stays intact until the new one is complete)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}
    ckpt = {
        "checksums": tensor_checksums(state),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": str(__version__),
        "torch_version": str(torch.__version__),
        "config": config.model_dump(mode="json"),
        "ndim": int(ndim),
        "normalization": normalization,
        "model_state": state,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng_state": rng_state(),
        "epoch": int(epoch),
        "epoch_step": int(epoch_step),
        "epoch_loss": [float(epoch_loss[0]), int(epoch_loss[1])],
        "step": int(step),
        "elapsed_s": float(elapsed_s),
        "history": list(history or []),
        "best_val_loss": None if best_val_loss is None else float(best_val_loss),
    }
    return atomic_torch_save(ckpt, path)


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def tensor_checksums(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """SHA-256 of every weight tensor's bytes: flipped bits inside a tensor load silently otherwise."""
    return {k: _digest(v) for k, v in state.items()}


def _verify(raw: dict[str, Any], p: Path) -> None:
    sums, state = raw.get("checksums"), raw["model_state"]
    if sums is None:  # written before checksums existed
        return
    if not isinstance(sums, dict) or not isinstance(state, dict) or set(sums) != set(state):
        raise CheckpointError("checkpoint is damaged: its weights do not match their list of checksums", p)
    bad = [k for k, t in state.items() if not isinstance(t, torch.Tensor) or _digest(t) != sums[k]]
    if bad:
        raise CheckpointError(
            f"checkpoint is damaged: the weights of {bad[0]!r} do not match their checksum (the file changed after "
            "it was written); use last.pt or retrain", p,
        )


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or ``path/best.pt`` for a model folder."""
    p = Path(path)
    return p / "best.pt" if p.is_dir() else p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (tensors on CPU). A folder means its ``best.pt``."""
    p = checkpoint_file(path)
    if not p.exists():
        raise CheckpointError("checkpoint not found; give the best.pt (or last.pt) written by 'cryocare train'", p)
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"not a readable cryocare-torch checkpoint (corrupt, truncated or another format: {reason})", p
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError("not a cryocare-torch checkpoint (wrong format marker); use a best.pt or last.pt", p)
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"invalid checkpoint format_version {version!r}; the file is damaged", p)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {version} was written by a newer cryocare-torch "
            f"({raw.get('package_version', '?')}); upgrade cryocare-torch to read it",
            p,
        )
    missing = [k for k in ("config", "ndim", "normalization", "model_state") if k not in raw]
    if missing:
        raise CheckpointError(f"checkpoint is incomplete (missing {', '.join(missing)}); the file is damaged", p)
    _verify(raw, p)
    return raw


def config_from(raw: dict[str, Any], path: str | Path) -> CryocareConfig:
    """The checkpoint's configuration. Settings added since it was written take the value that reproduces
    what that version did, not today's default: a missing-wedge run saved without
    ``train.wedge_upright_fraction`` drew all 24 rotations alike (``None``), and one saved without
    ``train.wedge_warmup_fraction`` had no plain warm-up (0)."""
    cfg = dict(raw["config"])
    train = cfg.get("train")
    if isinstance(train, dict) and train.get("missing_wedge") is not None and "wedge_upright_fraction" not in train:
        train = cfg["train"] = {**train, "wedge_upright_fraction": None}
    if isinstance(train, dict) and "wedge_warmup_fraction" not in train:  # trained without the plain warm-up
        cfg["train"] = {**train, "wedge_warmup_fraction": 0.0}
    try:
        return CryocareConfig.model_validate(cfg)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise CheckpointError(
            f"checkpoint configuration is not valid for this cryocare-torch ({loc}: {first['msg']})", path
        ) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read a checkpoint and rebuild its model (eval mode, float32) on ``device``.

    Raises :class:`CheckpointError` for a missing, corrupt, foreign or newer-format file.
    """
    p = checkpoint_file(path)
    raw = read_checkpoint(p)
    config = config_from(raw, p)
    ndim = int(raw["ndim"])
    if ndim not in (2, 3):
        raise CheckpointError(f"checkpoint has ndim {ndim}; expected 2 or 3 (the file is damaged)", p)
    model = build_model(config.model, ndim)
    try:
        model.load_state_dict(raw["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise CheckpointError(f"model weights do not match the stored architecture ({reason})", p) from None
    model.to(torch.device(device) if isinstance(device, str) else device).eval()
    return LoadedCheckpoint(
        model=model,
        config=config,
        ndim=ndim,
        normalization=dict(raw["normalization"]),
        history=list(raw.get("history") or []),
        raw=raw,
        path=p,
    )


def initial_weights(path: str | Path, model: ModelConfig, ndim: int) -> dict[str, torch.Tensor]:
    """The weights of checkpoint ``path`` to start a new training from (``train.init_from``); its model settings
    and dimensionality must be those of the new run, but for the Gaussian skip's widths (no weights: each run
    chooses its own from its patches)."""
    raw = read_checkpoint(path)
    stored = config_from(raw, path).model.model_dump(exclude={"skip_sigma"})
    new = model.model_dump(exclude={"skip_sigma"})
    if stored != new or int(raw["ndim"]) != ndim:
        diff = sorted(k for k in new if stored.get(k) != new[k]) or ["ndim"]
        raise CheckpointError(
            f"train.init_from: its model differs from this run's in {', '.join(diff)}; start from a checkpoint "
            "with the same model settings", checkpoint_file(path))
    return cast(dict[str, torch.Tensor], raw["model_state"])

