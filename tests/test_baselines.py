"""Classical baselines: Gaussian/median filters, NAD and Perona-Malik, oracle grid searches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cryocare_torch.errors import ConfigError, DataError
from cryocare_torch.evaluate.baselines import (
    best_gaussian,
    best_median,
    best_nad,
    best_perona_malik,
    gaussian_filter,
    median_filter,
)
from cryocare_torch.evaluate.metrics import psnr
from cryocare_torch.evaluate.nad import nad, perona_malik, structure_tensor


@pytest.fixture(scope="module")
def step() -> tuple[torch.Tensor, torch.Tensor]:
    """A 32^3 step edge (0 | 1 at x = 16) and a noisy copy (sigma 0.3)."""
    clean = torch.zeros(32, 32, 32)
    clean[..., 16:] = 1.0
    g = torch.Generator().manual_seed(0)
    return clean, clean + 0.3 * torch.randn(clean.shape, generator=g)


def _edge_contrast(u: torch.Tensor) -> float:
    return float(u[..., 16].mean() - u[..., 15].mean())


def _flat_noise(u: torch.Tensor) -> float:
    """Mean standard deviation inside the two flat halves (away from the edge and the box faces)."""
    return 0.5 * float(u[4:-4, 4:-4, 3:11].std() + u[4:-4, 4:-4, 21:29].std())


@pytest.mark.parametrize("sigma", [0.8, (1.0, 2.0, 0.5)])
def test_gaussian_matches_scipy(sigma: float | tuple[float, ...]) -> None:
    x = np.random.default_rng(0).normal(size=(12, 21, 30)).astype(np.float32)
    y = gaussian_filter(x, sigma)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert np.abs(y - ndimage.gaussian_filter(x, sigma, mode="reflect")).max() < 1e-5
    t = gaussian_filter(torch.from_numpy(x[0]), 2.5)  # 2D, tensor in -> tensor out
    assert isinstance(t, torch.Tensor)
    assert np.abs(t.numpy() - ndimage.gaussian_filter(x[0], 2.5, mode="reflect")).max() < 1e-5


def test_median_matches_scipy_and_removes_outliers() -> None:
    x = np.zeros((16, 16, 16), np.float32)
    x[8, 8, 8] = 100.0
    assert np.abs(median_filter(x, 3)).max() == 0
    rnd = np.random.default_rng(1).normal(size=(10, 12, 14)).astype(np.float32)
    assert np.array_equal(median_filter(rnd, (3, 1, 5)), ndimage.median_filter(rnd, size=(3, 1, 5), mode="reflect"))
    assert isinstance(median_filter(torch.from_numpy(rnd[0]), 3), torch.Tensor)
    with pytest.raises(ConfigError):
        median_filter(rnd, 4)
    with pytest.raises(DataError):
        median_filter(np.zeros(5), 3)


def test_best_gaussian_and_median_are_oracles(step: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, noisy = step
    sigma, y = best_gaussian(noisy, clean, sigmas=(0.5, 1.0, 2.0))
    scores = {s: psnr(gaussian_filter(noisy, s), clean) for s in (0.5, 1.0, 2.0)}
    assert sigma == max(scores, key=scores.__getitem__) and psnr(y, clean) == pytest.approx(scores[sigma])
    size, ym = best_median(noisy.numpy(), clean.numpy(), sizes=(3, 5))
    assert size in (3, 5) and isinstance(ym, np.ndarray) and psnr(ym, clean) > psnr(noisy, clean)


def test_structure_tensor_of_a_ramp() -> None:
    u = torch.arange(20.0).repeat(20, 20, 1)  # gradient 1 along x
    J = structure_tensor(u, 0.0, 0.0)[5:-5, 5:-5, 5:-5]
    assert torch.allclose(J[..., 2, 2], torch.ones(())) and J[..., :2, :].abs().max() < 1e-6


@pytest.mark.parametrize("mode", ["hybrid", "eed", "ced"])
def test_nad_constant_unchanged_and_mean_conserved(mode: str, step: tuple[torch.Tensor, torch.Tensor]) -> None:
    const = torch.full((12, 14, 16), 3.5)
    assert torch.equal(nad(const, iterations=3, mode=mode), const)  # type: ignore[arg-type]
    _, noisy = step
    out = nad(noisy, iterations=5, mode=mode)  # type: ignore[arg-type]
    assert abs(float(out.double().mean() - noisy.double().mean())) < 1e-5
    img = noisy[16].numpy()
    out2 = nad(img, iterations=5, mode=mode, dt=0.2)  # type: ignore[arg-type]
    assert isinstance(out2, np.ndarray) and abs(float(out2.mean() - img.mean())) < 1e-5


def test_nad_keeps_edges_sharper_than_gaussian(step: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, noisy = step
    out = nad(noisy, iterations=10)  # (its speed is a benchmark's business, not a test's)
    noise_left = _flat_noise(out)
    assert noise_left < 0.5 * _flat_noise(noisy)  # noise variance drops (here >4x)
    # the Gaussian that removes as much noise blurs the edge more
    sigma = next(s for s in np.arange(0.5, 4.01, 0.1) if _flat_noise(gaussian_filter(noisy, float(s))) <= noise_left)
    assert _edge_contrast(out) > _edge_contrast(gaussian_filter(noisy, float(sigma))) + 0.1
    assert _edge_contrast(out) > 0.8 and psnr(out, clean) > psnr(gaussian_filter(noisy, float(sigma)), clean)


def test_perona_malik(step: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, noisy = step
    out = perona_malik(noisy, iterations=20)
    assert abs(float(out.double().mean() - noisy.double().mean())) < 1e-5
    assert _flat_noise(out) < 0.5 * _flat_noise(noisy) and psnr(out, clean) > psnr(noisy, clean) + 3
    const = torch.full((8, 8, 8), -2.0)
    assert torch.equal(perona_malik(const, 3, kappa=1.0, conductance="rational"), const)


def test_diffusion_user_errors(step: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, noisy = step
    with pytest.raises(ConfigError, match="dt"):
        nad(noisy, dt=0.2)  # 3D limit is 1/6
    with pytest.raises(ConfigError, match="mode"):
        nad(noisy, mode="fancy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kappa"):
        perona_malik(noisy, 2, kappa=-1.0)
    with pytest.raises(DataError):
        nad(torch.zeros(2, 8, 8))


def test_best_nad_and_perona_malik_grids(step: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, noisy = step
    sub_c, sub_n = clean[8:24].contiguous(), noisy[8:24].contiguous()
    params, y = best_nad(sub_n, sub_c, lambda_scales=(0.5, 1.0), iterations=(2, 4))
    assert params["iterations"] in (2, 4) and params["lambda_scale"] in (0.5, 1.0) and params["lambda_"] > 0
    assert psnr(y, sub_c) > psnr(sub_n, sub_c)
    again = nad(sub_n, iterations=params["iterations"], lambda_=params["lambda_"])
    assert torch.allclose(again, y)
    pm_params, pm = best_perona_malik(sub_n.numpy(), sub_c.numpy(), kappa_scales=(1.0, 2.0), iterations=(3, 6))
    assert isinstance(pm, np.ndarray) and pm_params["kappa"] > 0 and psnr(pm, sub_c) > psnr(sub_n, sub_c)
