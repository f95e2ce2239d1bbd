"""Patch sampling, normalisation, train/validation separation and wedge-safe augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.config import PatchConfig
from cryocare_torch.errors import DataError
from cryocare_torch.patches import (
    PairStats,
    Region,
    augment_batch,
    build_patch_data,
    pair_statistics,
    pooled_statistics,
    split_regions,
)
from cryocare_torch.train.batches import train_batches, val_batches


def _pair(shape: tuple[int, ...] = (24, 48, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(shape).astype(np.float32)
    return 3 + 2 * (base + rng.standard_normal(shape)).astype(np.float32), 3 + 2 * (
        base + rng.standard_normal(shape)
    ).astype(np.float32)


def test_defaults() -> None:
    pc = PatchConfig()
    assert (pc.resolved_patch_size(3), pc.resolved_n_patches(3)) == (64, 1200)
    assert (pc.resolved_patch_size(2), pc.resolved_n_patches(2)) == (128, 1000)
    cpu = [pc.resolved_patch_size(3, "cpu"), pc.resolved_patch_size(3, "cpu", missing_wedge=True)]
    assert cpu + [pc.resolved_patch_size(3, "cuda", missing_wedge=True)] == [32, 48, 64]
    assert pc.val_fraction == 0.1


def test_statistics_exact_and_subsampled() -> None:
    e, o = _pair()
    both = np.concatenate([e.ravel(), o.ravel()]).astype(np.float64)
    full = pair_statistics(e, o)
    assert full.mean == pytest.approx(both.mean(), rel=1e-9) and full.std == pytest.approx(both.std(), rel=1e-9)
    sub = pair_statistics(e, o, max_values=48 * 100)  # 100 random rows per half
    assert sub.n == 2 * 48 * 100
    assert sub.mean == pytest.approx(both.mean(), abs=0.2) and sub.std == pytest.approx(both.std(), rel=0.1)
    mean, std = pooled_statistics([PairStats(0.0, 1.0, 10), PairStats(2.0, 1.0, 10)])
    assert mean == pytest.approx(1.0) and std == pytest.approx(2**0.5)


def test_statistics_on_memmap(tmp_path: Path) -> None:
    e, o = _pair((8, 32, 32))
    maps = []
    for name, arr in (("e", e), ("o", o)):
        mm = np.memmap(tmp_path / name, dtype=np.float32, mode="w+", shape=arr.shape)
        mm[:] = arr
        mm.flush()
        maps.append(np.memmap(tmp_path / name, dtype=np.float32, mode="r", shape=arr.shape))
    assert pair_statistics(*maps) == pair_statistics(e, o)


@pytest.mark.parametrize(
    ("e", "o", "match"),
    [
        (np.full((8, 32, 32), 2.0, np.float32), np.full((8, 32, 32), 2.0, np.float32), "constant"),
        (np.arange(8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32),) * 2 + ("identical",),
    ],
)
def test_statistics_errors(e: np.ndarray, o: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        pair_statistics(e, o)


def test_nan_raises() -> None:
    e, o = _pair((8, 32, 32))
    o[3, 4, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        pair_statistics(e, o)
    e, o = _pair((8, 32, 32))
    e[7, 31, 31] = np.inf  # missed by a bounded subsample, caught when patches are extracted
    stats = [pair_statistics(e, o, max_values=32)]
    with pytest.raises(DataError, match="NaN or Inf"):
        build_patch_data([(e, o)], ndim=3, patch_size=8, n_patches=400, val_fraction=0.0, seed=0, stats=stats)


def test_too_small_volume_raises_with_shape() -> None:
    e, o = _pair((12, 48, 48))
    with pytest.raises(DataError, match=r"12x48x48.*smaller than a patch of 16"):
        build_patch_data([(e, o)], ndim=3, patch_size=16, n_patches=8, val_fraction=0.1, seed=0)
    with pytest.raises(DataError, match="validation"):
        split_regions((16, 24, 24), (16, 16, 16), 0.1)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        # K3-shaped (x longer than y): still along y, the last ceil(0.1 * 64) = 7 -> max(16, 7) = 16 voxels
        ((16, 64, 92), (Region(1, 0, 48), Region(1, 48, 64))),
        ((16, 200, 100), (Region(1, 0, 180), Region(1, 180, 200))),  # ceil(0.1 * 200) = 20 > 16
        ((16, 24, 64), (Region(2, 0, 48), Region(2, 48, 64))),  # y (24) cannot hold 16 + 16: x
    ],
)
def test_validation_slab_is_cut_along_y(shape: tuple[int, int, int], expected: tuple[Region, Region]) -> None:
    assert split_regions(shape, (16, 16, 16), 0.1) == expected


def test_resuming_an_older_checkpoint_keeps_its_validation_slab() -> None:
    e, o = _pair((16, 32, 48))
    kw = {"ndim": 3, "patch_size": 16, "n_patches": 20, "val_fraction": 0.1, "seed": 0}
    assert build_patch_data([(e, o)], **kw).val_regions == [Region(1, 16, 32)]
    assert build_patch_data([(e, o)], **kw, legacy_split=True).val_regions == [Region(2, 32, 48)]  # longer x


def _boxes_overlap(a: np.ndarray, b: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    """Pairwise overlap of boxes with corners ``a`` (n, 3) and ``b`` (m, 3)."""
    p = np.array(patch)
    lo = np.maximum(a[:, None, :], b[None, :, :])
    hi = np.minimum(a[:, None, :] + p, b[None, :, :] + p)
    return (hi > lo).all(axis=-1)


@pytest.mark.parametrize(("shape", "seed"), [((24, 48, 48), 0), ((20, 40, 64), 1), ((32, 96, 36), 2)])
def test_train_and_val_patches_never_overlap(shape: tuple[int, int, int], seed: int) -> None:
    e, o = _pair(shape, seed)
    data = build_patch_data([(e, o)], ndim=3, patch_size=16, n_patches=200, val_fraction=0.1, seed=seed)
    assert data.val is not None and len(data.val) == 20 and len(data.train) == 180
    tr, va = data.train.index[:, 1:], data.val.index[:, 1:]
    assert not _boxes_overlap(tr, va, (16, 16, 16)).any()
    assert (tr >= 0).all() and (tr + 16 <= np.array(shape)).all()
    assert (va >= 0).all() and (va + 16 <= np.array(shape)).all()


def test_2d_images_and_mask() -> None:
    e, o = _pair((64, 96))
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 20:50] = 1
    data = build_patch_data([(e, o)], ndim=2, patch_size=16, n_patches=50, val_fraction=0.0, seed=0, masks=[mask])
    centres = data.train.index[:, 1:] + np.array([0, 8, 8])
    assert (mask[centres[:, 1], centres[:, 2]] > 0).all()
    assert data.train.get_batch([0, 1]).shape == (2, 2, 16, 16)
    with pytest.raises(DataError, match="mask"):
        build_patch_data([(e, o)], ndim=2, patch_size=16, n_patches=8, val_fraction=0.0, seed=0,
                         masks=[np.zeros_like(mask)])


def test_cache_and_lazy_give_the_same_patches() -> None:
    e, o = _pair()
    kw = {"ndim": 3, "patch_size": 16, "n_patches": 30, "val_fraction": 0.1, "seed": 3}
    cached = build_patch_data([(e, o)], **kw)
    lazy = build_patch_data([(e, o)], **kw, cache_gb=0.0)
    assert cached.train.cached and not lazy.train.cached
    idx = np.arange(len(cached.train))
    assert torch.equal(cached.train.get_batch(idx), lazy.train.get_batch(idx))
    st = cached.stats[0]
    k, z, y, x = cached.train.index[0]
    ref = (e[z : z + 16, y : y + 16, x : x + 16] - st.mean) / st.std
    assert np.allclose(cached.train[0][0].numpy(), ref, atol=2e-3 * np.abs(ref).max())


def test_batches_are_seeded_and_resumable() -> None:
    e, o = _pair()
    data = build_patch_data([(e, o)], ndim=3, patch_size=16, n_patches=20, val_fraction=0.1, seed=0).train
    kw = {"epoch": 2, "batch_size": 4, "steps": 7, "seed": 5}
    full = list(train_batches(data, **kw))
    again = list(train_batches(data, **kw))
    tail = list(train_batches(data, **kw, start=4))
    assert len(full) == 7 and full[0][0].shape == (4, 1, 16, 16, 16)
    for (a, b), (c, d) in zip(full, again, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    for (a, b), (c, d) in zip(full[4:], tail, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    other = next(train_batches(data, **{**kw, "seed": 6}))
    assert not torch.equal(full[0][0], other[0])
    val = list(val_batches(data, 8))
    assert sum(len(v[0]) for v in val) == len(data)


def test_augmentation_never_mixes_axes() -> None:
    d, h, w = 4, 6, 10
    z = np.arange(d, dtype=np.float32)[:, None, None] * 100
    y = np.arange(h, dtype=np.float32)[None, :, None] * 10
    x = np.arange(w, dtype=np.float32)[None, None, :]
    vol = torch.from_numpy(np.broadcast_to(z + y + x, (d, h, w)).copy())
    batch = torch.stack([torch.stack([vol, -vol])] * 64)  # (B, 2, d, h, w); halves distinguishable by sign
    out = augment_batch(batch, np.random.default_rng(0))
    assert out.shape == batch.shape
    seen_flips, swaps = set(), 0
    for s in out:
        sign = 1.0 if s[0].sum() > 0 else -1.0
        swaps += sign < 0
        assert torch.equal(s[1], -s[0])
        v = s[0] * sign
        zp, yp, xp = v[:, 0, 0] - v[0, 0, 0], v[0, :, 0] - v[0, 0, 0], v[0, 0, :] - v[0, 0, 0]
        # each axis keeps its own profile (step 100 along z, 10 along y, 1 along x), maybe reversed
        assert torch.equal(zp.abs(), torch.arange(d) * 100.0)
        assert torch.equal(yp.abs(), torch.arange(h) * 10.0)
        assert torch.equal(xp.abs(), torch.arange(w) * 1.0)
        flips = (bool(zp[1] < 0), bool(yp[1] < 0), bool(xp[1] < 0))
        expected = vol.flip([i for i, f in enumerate(flips) if f]) if any(flips) else vol
        assert torch.equal(v, expected)
        seen_flips.add(flips)
    # the wedge-keeping group: y alone, z with x (180 degrees about y), both; never z alone or x alone
    assert seen_flips == {(False, False, False), (False, True, False), (True, False, True), (True, True, True)}
    assert 10 < swaps < 54


def _wedge_mask(shape: tuple[int, int, int], lo_deg: float, hi_deg: float) -> np.ndarray:
    """Fourier voxels measured by a tilt series about y from ``lo_deg`` to ``hi_deg`` (full fftn grid).

    Derived without our code: view ``theta`` (tilt about y) samples the central plane spanned by ky and
    ``(kx, kz) = t (cos theta, -sin theta)``, so ``(kz, ky, kx)`` is measured when
    ``arctan(-kz / kx)`` lies in ``[lo, hi]`` (kx = 0: only by a 90-degree view; DC always).
    """
    kz, _, kx = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.degrees(np.arctan(-kz / kx))
    theta = np.where(kx == 0, np.where(kz == 0, 0.0, 90.0), theta)
    return (theta >= lo_deg) & (theta <= hi_deg)


def test_augmentation_keeps_an_asymmetric_wedge() -> None:
    shape = (15, 11, 17)  # odd: every Fourier voxel has its Hermitian partner (no Nyquist plane)
    wedge = _wedge_mask(shape, -60.0, 30.0)  # a lamella's asymmetric range
    assert not np.array_equal(wedge, wedge[::-1]) and not np.array_equal(wedge, _wedge_mask(shape, -30.0, 60.0))
    rng = np.random.default_rng(1)
    spectrum = np.fft.fftn(rng.standard_normal(shape)) * wedge
    vol = np.fft.ifftn(spectrum).real.astype(np.float32)  # the wedge is point symmetric: real data keep it
    batch = torch.from_numpy(np.stack([np.stack([vol, vol])] * 32))
    outside = []
    for s in augment_batch(batch, np.random.default_rng(0)):
        power = np.abs(np.fft.fftn(s[0].numpy().astype(np.float64))) ** 2
        outside.append(power[~wedge].sum() / power.sum())
    assert max(outside) < 1e-8  # every augmented sample has its spectrum inside the original wedge
    # control: the flips the old augmentation used (z alone, x alone) mirror the wedge
    for dims in ((0,), (2,)):
        power = np.abs(np.fft.fftn(np.flip(vol, dims).astype(np.float64))) ** 2
        assert power[~wedge].sum() / power.sum() > 0.1
