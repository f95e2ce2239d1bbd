"""Downstream detection check, part 2: train/evaluation slabs, raw vs restored (matching and scores: :mod:`.matching`).

cryo-CARE's downstream experiment (Buchholz et al. 2019: outer dynein arms on microtubule doublets)
trains one segmenter per tomogram version with the same labels and compares how well the detected
objects match the known ones. Here the volume is split along ``axis`` into two slabs (the first
``train_fraction`` and the rest) separated by a ``gap`` wider than one object, so that no labelled
object is seen in both. With ``folds=2`` (default) each slab is held out once (two-fold cross-validation:
every object outside the gap is scored once); with ``folds=1`` only the second slab is. For every
size threshold the components of at least that many voxels are matched one-to-one to the true centres
(Hungarian assignment on distances, pairs further apart than ``max_distance`` voxels never match;
default half the median spacing of the centres, so that no detection can pass for a neighbour) and
scored, counts summed over the folds:

* TP: matches whose true centre lies inside the evaluation region;
* FN: true centres inside the region left unmatched;
* FP: unmatched detections. Detections matched to a true centre just outside the region (an object
  cut by the border) count as neither.

Precision is 0 when nothing is detected and recall is 0 when nothing is to be found.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io.atomic import atomic_path
from .matching import (
    Row,
    as_centres,
    best_rows,
    centre_spacing,
    default_max_distance,
    default_size_thresholds,
    inside,
    match_detections,
    match_pairs,
    precision_recall_vs_size,
    sum_rows,
)
from .segmentation import (
    ArrayLike,
    Components,
    Log,
    Region,
    as_region,
    find_components,
    segment,
    to_numpy,
    train_segmenter,
)

_logger = logging.getLogger("cryocare_torch.evaluate.detection")

__all__ = ["Row", "best_rows", "centre_spacing", "default_max_distance", "default_size_thresholds",
           "downstream_comparison", "fold_regions", "inside", "match_detections", "match_pairs",
           "plot_precision_recall", "precision_recall_vs_size", "split_regions", "sum_rows"]


def split_regions(shape: Sequence[int], axis: int, train_fraction: float, gap: int) -> tuple[Region, Region]:
    """Training slab ``[0, a)`` and evaluation slab ``[a + gap, n)`` along ``axis`` (1 = y, 2 = x)."""
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0.0 < train_fraction < 1.0 or gap < 0:
        raise ConfigError(f"train_fraction must be in (0, 1) and gap >= 0, got {train_fraction} and {gap}")
    n = int(shape[axis])
    a = int(round(train_fraction * n)) - gap // 2
    b = a + gap
    if a < 8 or n - b < 8:
        raise DataError(f"axis {axis} ({n} voxels) is too short for a training and an evaluation part with a "
                        f"{gap}-voxel gap; lower the gap or use another axis")
    full = [slice(0, int(s)) for s in shape]
    train, evaluation = list(full), list(full)
    train[axis], evaluation[axis] = slice(0, a), slice(b, n)
    return as_region(train), as_region(evaluation)


def fold_regions(shape: Sequence[int], axis: int, train_fraction: float, gap: int,
                 folds: int = 2) -> list[tuple[Region, Region]]:
    """``(train, evaluation)`` per fold: :func:`split_regions`, then (``folds=2``) the same with the roles swapped."""
    if folds not in (1, 2):
        raise ConfigError(f"folds must be 1 or 2, got {folds}")
    train, evaluation = split_regions(shape, axis, train_fraction, gap)
    return [(train, evaluation), (evaluation, train)][:folds]


def _fold_components(vol: ArrayLike, mask: np.ndarray, pairs: Sequence[tuple[Region, Region]], repeats: int,
                     seed: int, device: str, log: Log, train_options: dict[str, Any]
                     ) -> list[tuple[Components, Region]]:
    """Components found by a segmenter trained on each fold's training slab (``repeats`` seeds each), in the
    fold's evaluation slab."""
    found = []
    for (train, evaluation), k in itertools.product(pairs, range(repeats)):
        model = train_segmenter(vol, mask, train, seed=seed + k, device=device, log=log, **train_options)
        prob = segment(model, vol, region=evaluation, device=device)
        found.append((find_components(prob, offset=[s.start for s in evaluation]), evaluation))
    return found


def downstream_comparison(
    volumes: Mapping[str, ArrayLike],
    labels: ArrayLike,
    decoration_centres: ArrayLike,
    *,
    target_label: int | None = 3,
    folds: int = 2,
    repeats: int = 1,
    train_fraction: float = 0.5,
    axis: int = 1,
    gap: int = 16,
    max_distance: float | None = None,
    size_thresholds: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "cpu",
    log: Log | None = None,
    **train_options: Any,
) -> dict[str, list[Row]]:
    """Precision/recall vs size threshold on the held-out slab(s) for each named ``(d, h, w)`` volume.

    Each volume gets its own segmenter per fold, trained on that fold's training slab with the same
    target: ``labels == target_label`` (``target_label=None``: ``labels`` is already a mask). Objects
    should not touch each other (their labels would form one component). Further keyword arguments go
    to :func:`~.segmentation.train_segmenter` (``steps``, ``learning_rate``, ...). ``repeats`` trains that
    many segmenters per fold (seeds ``seed``, ``seed + 1``, ...) and pools their counts: with a few dozen
    objects one segmenter's best F1 varies by +-0.1 from seed to seed. Rows as in
    :func:`precision_recall_vs_size`, summed over folds and repeats (:func:`sum_rows`), each also with
    ``seconds`` (training plus segmentation of that volume, all of them). Default size thresholds: a shared
    geometric grid up to the largest component found.
    """
    log = log or _logger.info
    lab = to_numpy(labels, None)
    mask = lab != 0 if target_label is None else lab == target_label
    if not volumes:
        raise ConfigError("no volumes to compare")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    centres = as_centres(decoration_centres)
    distance = default_max_distance(centres) if max_distance is None else float(max_distance)
    pairs = fold_regions(mask.shape, axis, train_fraction, gap, folds)
    comps: dict[str, list[tuple[Components, Region]]] = {}
    seconds: dict[str, float] = {}
    for name, vol in volumes.items():
        if tuple(vol.shape) != mask.shape:
            raise DataError(f"volume '{name}' has shape {tuple(vol.shape)}, labels have {mask.shape}")
        t0 = time.perf_counter()
        comps[name] = _fold_components(vol, mask, pairs, repeats, seed, device, log, train_options)
        seconds[name] = time.perf_counter() - t0
        log(f"{name}: {sum(len(c.sizes) for c, _ in comps[name])} components, {seconds[name]:.1f} s")
    if size_thresholds is None:
        largest = max((int(c.sizes.max()) for cs in comps.values() for c, _ in cs if len(c.sizes)), default=1)
        size_thresholds = default_size_thresholds(largest)
    results = {}
    for name, cs in comps.items():
        rows = sum_rows([precision_recall_vs_size(c, centres, size_thresholds, distance, ev) for c, ev in cs])
        for r in rows:
            r["seconds"] = seconds[name]
        results[name] = rows
    return results


def plot_precision_recall(
    results: Mapping[str, Sequence[Row]], path: str | Path, *, overwrite: bool = True, title: str | None = None
) -> Path:
    """Precision, recall and F1 against the size threshold (log axis), one line per name; 150 dpi."""
    import matplotlib
    from matplotlib.figure import Figure

    if not results:
        raise DataError("nothing to plot: no results")
    matplotlib.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9})
    fig = Figure(figsize=(11.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    best = best_rows(results)
    for i, (name, rows) in enumerate(results.items()):
        x = [r["size_threshold"] for r in rows]
        colour = f"C{i}"
        for ax, key in zip(axes, ("precision", "recall", "f1"), strict=True):
            label = f"{name} (best F1 {best[name]['f1']:.2f})" if key == "f1" else name
            ax.plot(x, [r[key] for r in rows], color=colour, lw=1.8, marker="o", ms=3, label=label)
    for ax, key in zip(axes, ("Precision", "Recall", "F1"), strict=True):
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("size threshold (voxels)")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[2].legend(loc="best")
    if title:
        fig.suptitle(title)
    out = Path(path)
    with atomic_path(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".").lower() or "png", dpi=150, bbox_inches="tight")
    return out
