"""What a run needs from a previous one: merged configuration, stored statistics, output-folder checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import CryocareConfig
from ..errors import CheckpointError, ConfigError, OutputError
from ..patches import PairStats, Region, as_volume, pooled_statistics, region_ranges
from .inputs import OpenedPair

# Settings that define the model, the patches or the order of the batches: a resumed run must keep them.
FIXED_KEYS: dict[str, tuple[str, ...] | None] = {
    "model": None,  # all keys
    "patches": ("patch_size", "n_patches", "val_fraction", "mask", "augment"),
    "train": ("seed", "batch_size", "steps_per_epoch", "learning_rate", "lr_schedule", "missing_wedge",
              "wedge_missing_weight", "wedge_upright_fraction"),
}
CHECKPOINT_FILES = ("best.pt", "last.pt", "history.json")


def merge_resume_config(stored: CryocareConfig, new: CryocareConfig | None, path: Path) -> CryocareConfig:
    """The stored configuration with the *explicitly set* fields of ``new`` on top.

    Explicitly changing a setting in :data:`FIXED_KEYS` raises :class:`ConfigError`; other settings
    (epochs, max_minutes, device, precision, threads, checkpoint interval...) may change.
    """
    if new is None:
        return stored
    data = stored.model_dump()
    diffs = []
    for section in ("model", "patches", "train"):
        new_sec = getattr(new, section)
        fixed = FIXED_KEYS[section]
        for key in new_sec.model_fields_set:
            value = getattr(new_sec, key)
            if (fixed is None or key in fixed) and value != data[section][key]:
                diffs.append(f"{section}.{key} ({data[section][key]!r} in the checkpoint, {value!r} now)")
            data[section][key] = value
    if diffs:
        raise ConfigError(
            f"cannot resume {path}: {'; '.join(diffs)}; keep the original settings or start a new training"
        )
    data["predict"] = new.predict.model_dump()
    data["simulate"] = new.simulate.model_dump()
    return CryocareConfig.model_validate(data)


def stored_stats(raw: dict[str, Any], pairs: Sequence[OpenedPair], path: Path) -> list[PairStats]:
    """Per-pair statistics of the checkpoint; the pairs must be the ones it was trained on."""
    entries = list(raw["normalization"].get("pairs") or [])
    if len(entries) != len(pairs):
        raise CheckpointError(
            f"checkpoint was trained on {len(entries)} pair(s), {len(pairs)} given; resume with the same pairs", path
        )
    out = []
    for e, p in zip(entries, pairs, strict=True):
        shape = tuple(e.get("shape") or p.even.shape)
        if shape != tuple(p.even.shape):
            raise CheckpointError(
                f"{p.name} has shape {tuple(p.even.shape)} but the checkpoint's pair had {shape}; "
                "resume with the same pairs in the same order",
                path,
            )
        out.append(PairStats(float(e["mean"]), float(e["std"]), int(e.get("n", 1))))
    return out


def normalization_dict(
    stats: Sequence[PairStats], pairs: Sequence[OpenedPair], val_regions: Sequence[Region | None]
) -> dict[str, Any]:
    """Per-pair and pooled statistics; each pair also records its validation region as voxel ranges of
    its ``(d, h, w)`` view (``validation_region``, ``None`` without one): ``cryocare evaluate`` scores
    the restoration there, where the network never trained."""
    mean, std = pooled_statistics(stats)
    return {
        "mode": "per_pair",
        "pairs": [
            {"mean": s.mean, "std": s.std, "n": s.n, "name": p.name, "shape": list(p.even.shape),
             "validation_region": None if r is None else region_ranges(as_volume(p.even).shape, r)}
            for s, p, r in zip(stats, pairs, val_regions, strict=True)
        ],
        "mean": mean,
        "std": std,
    }


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Create the model folder; refuse to replace an earlier training unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise OutputError("model folder path is a file; give a folder name", out)
    existing = [n for n in CHECKPOINT_FILES[:2] if (out / n).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"model folder already holds a training ({', '.join(existing)}); pass --resume to continue it, "
            "--overwrite to start over, or choose another folder",
            out,
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the model folder ({exc.strerror})", out) from None
    if overwrite:
        for n in CHECKPOINT_FILES:
            (out / n).unlink(missing_ok=True)
