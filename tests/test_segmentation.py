"""Downstream detection check: matching, Otsu components, size curves, segmenter training, comparison."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.errors import ConfigError, DataError
from cryocare_torch.evaluate.detection import (
    best_rows,
    centre_spacing,
    default_max_distance,
    downstream_comparison,
    fold_regions,
    match_detections,
    match_pairs,
    plot_precision_recall,
    precision_recall_vs_size,
    split_regions,
    sum_rows,
)
from cryocare_torch.evaluate.segmentation import (
    detections_by_size,
    find_components,
    resolve_region,
    segment,
    train_segmenter,
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny 3D convolutions run fastest on one thread (and the test machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")


def blob_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """24x64x64: ~20 bright labelled blobs on a jittered 12-voxel grid, dark unlabelled distractors between."""
    rng = np.random.default_rng(seed)
    shape = (24, 64, 64)
    zz, yy, xx = _grid(shape)
    vol = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    centres = []
    for cy in range(6, 64, 12):
        for cx in range(6, 64, 12):
            if rng.random() < 0.2:
                continue
            c = np.array([rng.uniform(8, 16), cy + rng.uniform(-1, 1), cx + rng.uniform(-1, 1)])
            r2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
            vol += np.exp(-r2 / 6.0)
            labels[r2 <= 7.0] = 3
            centres.append(c)
            if rng.random() < 0.4:  # a smaller dark object half-way to the next grid point
                c = c + [rng.uniform(-3, 3), 6, 6]
                vol -= 0.8 * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / 3.0)
    return vol, labels, np.array(centres)


# --- matching -------------------------------------------------------------------------------------


def test_match_counts_exact() -> None:
    pred = [[0, 0, 0], [10, 0, 0], [20, 0, 0], [50, 50, 50]]
    true = [[1, 0, 0], [10, 2, 0], [30, 0, 0]]
    assert match_detections(pred, true, 3.0) == (2, 2, 1)
    assert match_detections(pred, true, 100.0) == (3, 1, 0)
    # one-to-one: two detections of the same object give one TP and one FP
    assert match_detections([[0, 0, 0], [0, 1, 0]], [[0, 0, 0]], 2.0) == (1, 1, 0)
    # distance is inclusive
    assert match_detections([[0, 0, 0]], [[0, 0, 2]], 2.0) == (1, 0, 0)
    assert match_detections([[0, 0, 0]], [[0, 0, 2.01]], 2.0) == (0, 1, 1)


def test_match_is_maximal_not_greedy() -> None:
    # nearest-first would pair A-X (1.0) and leave B and Y apart (4.0); the optimum pairs A-Y and B-X
    pred = np.array([[0.0, 0, 0], [2.5, 0, 0]])  # A, B
    true = np.array([[1.0, 0, 0], [-1.5, 0, 0]])  # X, Y
    assert match_detections(pred, true, 2.0) == (2, 0, 0)
    rows, cols = match_pairs(pred, true, 2.0)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_match_empty_and_bad_distance() -> None:
    assert match_detections(np.zeros((0, 3)), [[1, 2, 3]], 5.0) == (0, 0, 1)
    assert match_detections([[1, 2, 3]], torch.zeros((0, 3)), 5.0) == (0, 1, 0)
    assert match_detections([], [], 5.0) == (0, 0, 0)
    with pytest.raises(ConfigError):
        match_detections([[0, 0, 0]], [[0, 0, 0]], 0.0)


# --- components ----------------------------------------------------------------------------------


def test_otsu_components_recover_planted_blobs() -> None:
    rng = np.random.default_rng(1)
    shape = (20, 40, 60)
    prob = rng.uniform(0.0, 0.05, size=shape)
    zz, yy, xx = _grid(shape)
    planted = {1: (5, 8, 8), 2: (10, 20, 20), 3: (10, 20, 40), 4: (10, 30, 52)}
    expected = {}
    for radius, c in planted.items():
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2
        prob[ball] = rng.uniform(0.85, 0.95, size=int(ball.sum()))
        expected[c] = int(ball.sum())
    prob[15, 5, 50] = prob[16, 6, 51] = 0.9  # touching only at a corner: one 26-connected component
    comps = find_components(prob, offset=(100, 0, -5))
    assert 0.05 < comps.threshold < 0.85
    assert len(comps.sizes) == len(planted) + 1
    for c, size in expected.items():
        k = int(np.argmin(np.linalg.norm(comps.centroids - (np.array(c) + [100, 0, -5]), axis=1)))
        assert comps.sizes[k] == size
        np.testing.assert_allclose(comps.centroids[k], np.array(c) + [100, 0, -5], atol=1e-9)
    assert 2 in comps.sizes.tolist()
    assert comps.labels.shape == shape and comps.labels.max() == len(comps.sizes)


def test_constant_map_has_no_components() -> None:
    comps = find_components(np.full((4, 8, 8), 0.3))
    assert len(comps.sizes) == 0 and comps.centroids.shape == (0, 3)


def test_size_filtering_is_monotonic() -> None:
    rng = np.random.default_rng(2)
    prob = np.zeros((16, 48, 48))
    truths = []
    for _ in range(25):
        c = rng.integers([2, 2, 2], [14, 46, 46])
        r = int(rng.integers(0, 3))
        prob[c[0] - r : c[0] + r + 1, c[1] - r : c[1] + r + 1, c[2] - r : c[2] + r + 1] = 1.0
        truths.append(c)
    comps = find_components(prob)
    thresholds = [1, 2, 5, 10, 27, 50, 125, 1000]
    counts = [len(d) for d in detections_by_size(comps, thresholds)]
    assert counts == sorted(counts, reverse=True) and counts[0] == len(comps.sizes) and counts[-1] == 0
    rows = precision_recall_vs_size(comps, truths, thresholds, 2.0)
    recalls = [r["recall"] for r in rows]
    assert recalls == sorted(recalls, reverse=True)
    assert [r["n_detections"] for r in rows] == counts
    assert rows[-1]["precision"] == 0.0 and rows[-1]["f1"] == 0.0


def test_objects_cut_by_the_region_border_are_not_false_positives() -> None:
    prob = np.zeros((8, 20, 8))
    prob[3:6, 0:2, 3:6] = 1.0  # the edge of an object centred at y = -1, outside the region
    prob[3:6, 9:12, 3:6] = 1.0  # an object inside
    region = resolve_region((8, 40, 8), (slice(None), slice(20, 40), slice(None)))
    comps = find_components(prob, offset=(0, 20, 0))
    truths = [[4, 19, 4], [4, 30, 4], [4, 35, 4]]  # the first lies outside the region
    (row,) = precision_recall_vs_size(comps, truths, [1], 3.0, region)
    assert (row["tp"], row["fp"], row["fn"]) == (1, 0, 1)


# --- folds and spacing ---------------------------------------------------------------------------


def test_folds_and_summed_rows() -> None:
    (tr1, ev1), (tr2, ev2) = fold_regions((24, 64, 64), axis=1, train_fraction=0.5, gap=8)
    assert (tr1, ev1) == split_regions((24, 64, 64), axis=1, train_fraction=0.5, gap=8) and (tr2, ev2) == (ev1, tr1)
    assert len(fold_regions((24, 64, 64), 1, 0.5, 8, folds=1)) == 1
    with pytest.raises(ConfigError):
        fold_regions((24, 64, 64), 1, 0.5, 8, folds=3)
    a = [{"size_threshold": 1, "n_detections": 3, "tp": 2, "fp": 1, "fn": 0, "precision": 0.0, "recall": 0.0,
          "f1": 0.0}]
    b = [{"size_threshold": 1, "n_detections": 1, "tp": 1, "fp": 0, "fn": 2, "precision": 0.0, "recall": 0.0,
          "f1": 0.0}]
    (row,) = sum_rows([a, b])
    assert (row["n_detections"], row["tp"], row["fp"], row["fn"]) == (4, 3, 1, 2)
    assert row["precision"] == pytest.approx(0.75) and row["recall"] == pytest.approx(0.6)
    assert default_max_distance([[0, 0, 0], [0, 0, 10], [0, 0, 24]]) == pytest.approx(5.0)
    assert centre_spacing([[0, 0, 0], [0, 3, 4], [0, 0, 30]]) == pytest.approx(5.0)  # median of 5, 5, 26.2
    assert np.isinf(centre_spacing([[1, 2, 3]]))
    with pytest.raises(ConfigError):
        default_max_distance([[0, 0, 0]])


def test_repeats_pool_the_counts_of_several_segmenters(one_thread: None) -> None:
    vol, labels, centres = blob_volume()
    kw = dict(folds=1, gap=8, max_distance=3.0, steps=3, batch_size=2, patch_size=16, log=lambda _: None)
    once = downstream_comparison({"v": vol}, labels, centres, **kw)["v"]
    twice = downstream_comparison({"v": vol}, labels, centres, repeats=2, **kw)["v"]
    n_eval = int(np.sum(np.round(centres[:, 1]) >= 36))
    assert all(r["tp"] + r["fn"] == n_eval for r in once) and all(r["tp"] + r["fn"] == 2 * n_eval for r in twice)
    with pytest.raises(ConfigError):
        downstream_comparison({"v": vol}, labels, centres, repeats=0, **kw)


# --- regions and errors --------------------------------------------------------------------------


def test_split_regions_and_errors() -> None:
    train, evaluation = split_regions((24, 64, 64), axis=1, train_fraction=0.5, gap=8)
    assert train[1] == slice(0, 28) and evaluation[1] == slice(36, 64)
    assert train[0] == evaluation[0] == slice(0, 24)
    with pytest.raises(DataError):
        split_regions((24, 20, 64), axis=1, train_fraction=0.5, gap=8)
    with pytest.raises(ConfigError):
        split_regions((24, 64, 64), axis=1, train_fraction=1.0, gap=8)
    with pytest.raises(ConfigError):
        resolve_region((4, 4, 4), (slice(0, 2), slice(0, 2)))
    with pytest.raises(ConfigError):
        resolve_region((4, 4, 4), (slice(0, 2), slice(3, 3), slice(None)))
    vol = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    labels = np.zeros_like(vol, dtype=np.uint8)
    labels[:, 12:, :] = 1
    with pytest.raises(DataError, match="no target voxel"):
        train_segmenter(vol, labels, (slice(None), slice(0, 8), slice(None)), steps=1)
    with pytest.raises(DataError, match="same"):
        train_segmenter(vol, labels[:, :8], steps=1)


# --- training and the comparison -----------------------------------------------------------------


def test_segmenter_learns_blobs(one_thread: None) -> None:
    vol, labels, _ = blob_volume()
    noisy = vol + np.random.default_rng(5).normal(0, 0.05, vol.shape).astype(np.float32)
    region = (slice(None), slice(0, 28), slice(None))
    model = train_segmenter(noisy, labels == 3, region, steps=150, patch_size=16, seed=0, log=lambda _: None)
    prob = segment(model, noisy, region=(slice(None), slice(36, 64), slice(None)))
    assert prob.shape == (24, 28, 64) and prob.min() >= 0.0 and prob.max() <= 1.0
    target = labels[:, 36:] == 3
    assert prob[target].mean() > 0.5 and prob[~target].mean() < 0.05


def test_downstream_comparison_detects_and_can_fail(one_thread: None, tmp_path: Path) -> None:
    vol, labels, centres = blob_volume()
    rng = np.random.default_rng(3)
    volumes = {
        "clean": vol + rng.normal(0, 0.05, vol.shape).astype(np.float32),
        "noisy": vol + rng.normal(0, 3.0, vol.shape).astype(np.float32),
    }
    results = downstream_comparison(volumes, labels, centres, gap=8, max_distance=3.0, steps=150, batch_size=4,
                                    patch_size=16, log=lambda _: None)
    assert set(results) == {"clean", "noisy"}
    sizes = [r["size_threshold"] for r in results["clean"]]
    assert sizes == [r["size_threshold"] for r in results["noisy"]] and sizes == sorted(sizes)
    best = best_rows(results)
    y = np.round(centres[:, 1])
    n_eval = int(np.sum(y >= 36) + np.sum(y < 28))  # two folds: each slab held out once, the gap never
    assert best["clean"]["tp"] + best["clean"]["fn"] == n_eval >= 12
    assert best["clean"]["recall"] > 0.8 and best["clean"]["f1"] > 0.8
    assert best["noisy"]["f1"] < best["clean"]["f1"] - 0.3
    out = plot_precision_recall(results, tmp_path / "pr.png")
    assert out.stat().st_size > 10_000
