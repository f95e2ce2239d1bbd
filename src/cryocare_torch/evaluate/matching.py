"""Downstream detection check: matching detections to known centres and scoring them (the rules are in
:mod:`.detection`'s docstring), precision/recall/F1 against the component size threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from ..errors import ConfigError, DataError
from .segmentation import ArrayLike, Components, Region

Row = dict[str, float]


def as_centres(x: ArrayLike | Sequence[Sequence[float]]) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    a = a.astype(np.float64, copy=False).reshape(-1, 3) if a.size else np.zeros((0, 3))
    return a


def match_pairs(pred: ArrayLike, true: ArrayLike, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of ``pred`` ``(n, 3)`` to ``true`` ``(m, 3)`` within ``max_distance``.

    Returns the matched indices ``(pred_idx, true_idx)``; the assignment maximises the number of
    matches and, among those, minimises the total distance.
    """
    if max_distance <= 0:
        raise ConfigError(f"max_distance must be > 0 voxels, got {max_distance}")
    p, t = as_centres(pred), as_centres(true)
    if len(p) == 0 or len(t) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    dist = cdist(p, t)
    ok = dist <= max_distance
    # every allowed pair costs less than any trade of one match for another: count first, then distance
    cost = np.where(ok, dist / (max_distance * (min(len(p), len(t)) + 1)) - 1.0, 0.0)
    rows, cols = linear_sum_assignment(cost)
    keep = ok[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def match_detections(pred: ArrayLike, true: ArrayLike, max_distance: float) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of a one-to-one matching of detections to true centres within ``max_distance``."""
    p, t = as_centres(pred), as_centres(true)
    rows, _ = match_pairs(p, t, max_distance)
    return len(rows), len(p) - len(rows), len(t) - len(rows)


def _score(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def inside(centres: np.ndarray, region: Region) -> np.ndarray:
    """Which ``(n, 3)`` centres lie in ``region`` (half-open voxel ranges, centres rounded)."""
    c = np.round(as_centres(centres))
    lo = np.array([s.start for s in region])
    hi = np.array([s.stop for s in region])
    return np.all((c >= lo) & (c < hi), axis=1)


def precision_recall_vs_size(
    components: Components,
    true_centres: ArrayLike,
    size_thresholds: Sequence[int],
    max_distance: float,
    region: Region | None = None,
) -> list[Row]:
    """One row per size threshold: size_threshold, n_detections, tp, fp, fn, precision, recall, f1.

    With ``region`` only true centres inside it can be missed (see the module docstring); ``true_centres``
    may include the whole volume's.
    """
    t = as_centres(true_centres)
    in_t = inside(t, region) if region is not None else np.ones(len(t), dtype=bool)
    rows = []
    for thr in size_thresholds:
        pred = components.centroids[components.sizes >= thr]
        pi, ti = match_pairs(pred, t, max_distance)
        tp = int(in_t[ti].sum())
        fp = len(pred) - len(pi)
        fn = int(in_t.sum()) - tp
        precision, recall, f1 = _score(tp, fp, fn)
        rows.append({"size_threshold": int(thr), "n_detections": len(pred), "tp": tp, "fp": fp, "fn": fn,
                     "precision": precision, "recall": recall, "f1": f1})
    return rows


def sum_rows(per_fold: Sequence[Sequence[Row]]) -> list[Row]:
    """Rows of the same size thresholds with n_detections, tp, fp and fn summed and the scores recomputed."""
    out = []
    for parts in zip(*per_fold, strict=True):
        n, tp, fp, fn = (sum(int(p[k]) for p in parts) for k in ("n_detections", "tp", "fp", "fn"))
        precision, recall, f1 = _score(tp, fp, fn)
        out.append({"size_threshold": int(parts[0]["size_threshold"]), "n_detections": n, "tp": tp, "fp": fp,
                    "fn": fn, "precision": precision, "recall": recall, "f1": f1})
    return out


def default_size_thresholds(max_size: int, n: int = 30) -> list[int]:
    """Geometric grid of integer size thresholds from 1 to ``max_size`` voxels."""
    return sorted({int(round(v)) for v in np.geomspace(1, max(1, max_size), n)})


def centre_spacing(centres: ArrayLike) -> float:
    """Median distance (voxels) from each ``(n, 3)`` centre to its nearest neighbour (``inf`` for n < 2)."""
    c = as_centres(centres)
    if len(c) < 2:
        return float("inf")
    d, _ = cKDTree(c).query(c, k=2)
    return float(np.median(d[:, 1]))


def default_max_distance(centres: ArrayLike) -> float:
    """Half the median nearest-neighbour spacing of the centres: no detection can pass for a neighbour."""
    spacing = centre_spacing(centres)
    if not np.isfinite(spacing) or spacing <= 0:
        raise ConfigError("max_distance cannot be derived from fewer than two distinct centres; give it")
    return 0.5 * spacing


def best_rows(results: Mapping[str, Sequence[Row]]) -> dict[str, Row]:
    """The row of highest F1 (smallest size threshold on ties) per name."""
    out = {}
    for name, rows in results.items():
        if not rows:
            raise DataError(f"no rows for '{name}'")
        out[name] = max(rows, key=lambda r: (r["f1"], -r["size_threshold"]))
    return out
