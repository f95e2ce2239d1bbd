"""``cryocare evaluate``'s estimated FSC against the truth: where the network never trained, the restored
halves there, and the estimate (:func:`cryocare_torch.evaluate.fsc_truth.estimate_fsc_truth`).

* The region is the validation slab that the model's checkpoint records for this tomogram
  (``normalization.pairs[].validation_region``). Checkpoints written before it was recorded get the
  slab recomputed with the rule they were trained with (the longer of y and x first). A tomogram of a
  shape the model never trained on was never seen at all: the whole volume is used.
* The restored halves there are cut from ``<stem>_even/_odd.mrc`` beside the restored file (``predict
  --write-halves``) or predicted with the model, on the region plus half a patch of context.
* Without a model the region is unknown: the whole volume is used and the estimate is biased upwards
  (the network trained there); one ``warning:`` line and ``"biased": true`` say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError
from ..evaluate.fsc_truth import TruthFSCEstimate, estimate_fsc_truth
from ..io.mrc import read_volume
from ..patches import legacy_axes, patch_shape, region_ranges, split_regions
from ..predict.arrays import predict_pair_arrays
from ..train.checkpoint import checkpoint_file, load_checkpoint, read_checkpoint

Ranges = list[list[int]]
BIASED = ("warning: the estimated FSC against the truth uses the {source}; it is biased upwards where the network "
          "trained on the data (give the model folder with --model, trained with a validation region)")


@dataclass
class UnseenRegion:
    """Voxel ranges ``[[z0, z1], [y0, y1], [x0, x1]]`` to score, and how they were found."""

    ranges: Ranges
    biased: bool
    source: str
    normalization: tuple[float, float] | None = None
    """``(mean, std)`` the model was trained with on this tomogram."""


def _whole(shape: tuple[int, ...], biased: bool, source: str,
           normalization: tuple[float, float] | None = None) -> UnseenRegion:
    return UnseenRegion([[0, int(n)] for n in shape], biased, source, normalization)


def _matching_pair(pairs: list[dict[str, Any]], even: Path, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The checkpoint's entry for this tomogram: same file, else the first of the same shape."""
    for p in pairs:
        name = str(p.get("name", ""))
        if name and Path(name).resolve() == even.resolve():
            return p
    return next((p for p in pairs if tuple(p.get("shape") or ()) == shape), None)


def unseen_region(model_dir: Path | None, even: Path, shape: tuple[int, ...]) -> UnseenRegion:
    """Where the model in ``model_dir`` never trained on the tomogram ``even`` of ``shape`` (z, y, x)."""
    if model_dir is None:
        return _whole(shape, True, "whole volume (no model given)")
    raw = read_checkpoint(model_dir)
    entry = _matching_pair(list((raw.get("normalization") or {}).get("pairs") or []), even, shape)
    if entry is None:
        return _whole(shape, False, "whole volume (the model never trained on a tomogram of this shape)")
    norm = (float(entry["mean"]), float(entry["std"])) if "mean" in entry and "std" in entry else None
    if "validation_region" in entry:
        ranges = entry["validation_region"]
        if ranges is None:
            return _whole(shape, True, "whole volume (the model was trained without a validation region)", norm)
        return UnseenRegion([[int(a), int(b)] for a, b in ranges], False, "validation slab recorded in the "
                            "checkpoint", norm)
    cfg = raw.get("config") or {}
    patches = cfg.get("patches") or {}
    size, frac = patches.get("patch_size"), float(patches.get("val_fraction", 0.1))
    if size is None or frac <= 0:
        return _whole(shape, True, "whole volume (the model was trained without a validation region)", norm)
    shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    _, val = split_regions(shape3, patch_shape(int(raw.get("ndim", 3)), int(size)), frac, str(even),
                           legacy_axes(shape3))
    if val is None:
        return _whole(shape, True, "whole volume (the model was trained without a validation region)", norm)
    return UnseenRegion(region_ranges(shape3, val), False, "validation slab recomputed from the checkpoint's "
                        "configuration (older checkpoint)", norm)


def _crop(vol: np.ndarray, ranges: Ranges) -> np.ndarray:
    return np.ascontiguousarray(vol[tuple(slice(a, b) for a, b in ranges)])


def predicted_halves(model_dir: Path, e: np.ndarray, o: np.ndarray, region: UnseenRegion,
                      device: str) -> tuple[np.ndarray, np.ndarray]:
    """``f(e)``, ``f(o)`` on the region, predicted with half a patch of context around it."""
    ck = load_checkpoint(checkpoint_file(model_dir), device="cpu")
    margin = int(ck.config.patches.patch_size or 32) // 2
    outer = [[max(0, a - margin), min(n, b + margin)] for (a, b), n in zip(region.ranges, e.shape, strict=True)]
    inner = [[a - oa, b - oa] for (a, b), (oa, _) in zip(region.ranges, outer, strict=True)]
    _, fe, fo = predict_pair_arrays(ck.model, _crop(e, outer), _crop(o, outer), normalization=region.normalization,
                                    device=device)
    return _crop(fe.numpy(), inner), _crop(fo.numpy(), inner)


def estimated_fsc_truth(
    e: np.ndarray, o: np.ndarray, *, even: Path, halves: tuple[Path, Path] | None, model_dir: Path | None,
    truth: np.ndarray | None, voxel_size: float, soft_edge: float, device: str = "cpu",
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any] | None, TruthFSCEstimate | None, str | None]:
    """``(metrics entry, estimate, note)``; ``(None, None, note)`` when neither restored halves nor a model
    exist. Warnings (biased, untrustworthy) go to ``log`` as ``warning:`` lines and into the entry."""
    try:
        region = unseen_region(model_dir, even, tuple(e.shape))
    except CheckpointError as exc:
        region = _whole(tuple(e.shape), True, f"whole volume (the model's checkpoint is unusable: {exc})")
    if halves is not None:
        fe, fo = (_crop(read_volume(p)[0], region.ranges) for p in halves)
    elif model_dir is not None and (model_dir / "best.pt").is_file():
        log(f"predicting the restored halves on the region {region.ranges} for the estimated FSC against the truth")
        fe, fo = predicted_halves(model_dir, e, o, region, device)
    else:
        return None, None, ("The estimated FSC against the truth needs the restored halves ('cryocare predict "
                            "--write-halves') or the model folder (--model); neither was found.")
    est = estimate_fsc_truth(_crop(e, region.ranges), _crop(o, region.ranges), fe, fo, voxel_size=voxel_size,
                             soft_edge=soft_edge, truth=None if truth is None else _crop(truth, region.ranges))
    warnings = ([BIASED.format(source=region.source)] if region.biased else []) + list(est.warnings)
    for w in warnings:
        log(w)
    entry = est.to_dict() | {"region": region.ranges, "region_source": region.source, "biased": region.biased,
                             "warnings": warnings}
    return entry, est, None
