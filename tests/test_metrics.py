"""PSNR/SSIM with affine fit and central region, the quality table, and the slice/loss figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cryocare_torch.errors import ConfigError, DataError, OutputError
from cryocare_torch.evaluate.baselines import gaussian_filter
from cryocare_torch.evaluate.metrics import (
    affine_fit,
    format_table,
    psnr,
    quality_table,
    region_slices,
    ssim,
)
from cryocare_torch.evaluate.plots import loss_curve, slices_figure


@pytest.fixture
def truth() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.asarray(gaussian_filter(rng.normal(size=(24, 40, 40)).astype(np.float32), 2.0)) * 10


def test_affine_fit_recovers_scale_and_offset(truth: np.ndarray) -> None:
    x = (truth + 1.0) / 2.5
    scale, offset = affine_fit(x, truth)
    assert scale == pytest.approx(2.5, rel=1e-5) and offset == pytest.approx(-1.0, abs=1e-4)
    assert affine_fit(np.ones(10), np.arange(10.0)) == (0.0, 4.5)


def test_psnr_values_fit_and_region(truth: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    noisy = truth + rng.normal(scale=0.1, size=truth.shape).astype(np.float32)
    sl = region_slices(truth.shape)
    expected = 10 * math.log10(float(np.ptp(truth[sl])) ** 2 / float(np.mean((noisy[sl] - truth[sl]) ** 2)))
    assert psnr(noisy, truth, fit=False) == pytest.approx(expected, rel=1e-6)
    assert psnr(3 * noisy + 7, truth) == pytest.approx(psnr(noisy, truth), abs=1e-6)
    assert psnr(3 * noisy + 7, truth, fit=False) < psnr(noisy, truth) - 10
    spoiled = noisy.copy()
    spoiled[:2] = 1e6  # inside the default 10% border: ignored
    assert psnr(spoiled, truth) == pytest.approx(psnr(noisy, truth), abs=1e-6)
    assert psnr(spoiled, truth, region=0.0) < psnr(noisy, truth) - 10
    assert math.isinf(psnr(truth, truth))
    assert psnr(torch.from_numpy(noisy), torch.from_numpy(truth)) == pytest.approx(psnr(noisy, truth))


def test_ssim_matches_skimage_and_orders_quality(truth: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    noisy = truth + rng.normal(scale=0.3, size=truth.shape)
    ref = structural_similarity(noisy, truth.astype(np.float64), data_range=float(np.ptp(truth)),
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(noisy, truth, fit=False, region=0.0) == pytest.approx(ref, rel=1e-6)
    assert ssim(truth, truth) == pytest.approx(1.0)
    assert ssim(noisy, truth) < ssim(gaussian_filter(noisy, 1.0), truth) < 1.0
    assert 0 < ssim(noisy[12], truth[12]) < 1  # 2D


def test_quality_table_and_format(truth: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    noisy = truth + rng.normal(scale=0.5, size=truth.shape).astype(np.float32)
    rows = quality_table({"noisy": noisy, "smoothed": gaussian_filter(noisy, 1.5)}, truth, voxel_size=10.0)
    assert [r["name"] for r in rows] == ["noisy", "smoothed"]
    assert rows[1]["psnr"] > rows[0]["psnr"] and rows[1]["ssim"] > rows[0]["ssim"]
    assert all(np.isfinite(r["fsc_res_0_5_nm"]) and r["fsc_res_0_5_nm"] >= 2.0 for r in rows)
    text = format_table(rows)
    assert "PSNR (dB)" in text and "smoothed" in text
    assert "fsc_res_0_5_nm" not in quality_table({"n": noisy}, truth)[0]


def test_metric_user_errors(truth: np.ndarray) -> None:
    with pytest.raises(DataError, match="shape"):
        psnr(truth[:, :20], truth)
    with pytest.raises(DataError, match="constant"):
        psnr(truth, np.ones_like(truth))
    with pytest.raises(ConfigError, match="region"):
        psnr(truth, truth, region=0.7)
    with pytest.raises(DataError, match="11 voxels"):
        ssim(truth[:, :12, :12], truth[:, :12, :12])
    bad = truth.copy()
    bad[12, 20, 20] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ssim(bad, truth)


def test_slices_and_loss_figures(tmp_path: Path, truth: np.ndarray) -> None:
    out = slices_figure({"truth": truth, "tensor": torch.from_numpy(truth)}, tmp_path / "s.png", voxel_size=8.0,
                        axes=("xy", "xz", "yz"), title="slices")
    assert out.read_bytes()[:4] == b"\x89PNG"
    slices_figure({"image": truth[12]}, tmp_path / "s2.pdf", voxel_size=None)
    assert (tmp_path / "s2.pdf").stat().st_size > 0
    with pytest.raises(OutputError):
        slices_figure({"truth": truth}, out, voxel_size=8.0, overwrite=False)
    history = {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.5], "lr": [1e-3] * 3}
    assert loss_curve(history, tmp_path / "loss.png").stat().st_size > 0
    rows = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 5)]
    assert loss_curve(rows, tmp_path / "loss2.png").exists()
    with pytest.raises(DataError):
        loss_curve({"lr": [1.0]}, tmp_path / "none.png")
