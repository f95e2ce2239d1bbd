"""The simulator's true object on the reconstruction grid, and scores against it after an affine fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryocare_torch.config import SimulateConfig
from cryocare_torch.evaluate.object_scores import correlation, score_against_object, z_profile, z_profile_bound
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.simulate import interaction_constant, simulate, write_dataset

TINY = dict(shape=(32, 64, 64), pixel_size=12.0, tilt_step=6.0, n_frames=4, n_complexes=10, n_membranes=1,
            n_filaments=1)


@pytest.fixture(scope="module")
def data():
    return simulate(SimulateConfig(**TINY, defocus_um=0.0))  # no CTF: the clean tomogram is the object + wedge


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_object_is_minus_the_potential_in_phase_units(data):
    cfg = data.config
    sigma = interaction_constant(cfg.voltage_kv) * cfg.pixel_size  # rad per volt-voxel (contrast_scale 1)
    dens = data.truth_density.double()
    expected = -2 * sigma * (dens - dens.mean())
    assert torch.allclose(data.object_map.double(), expected, atol=1e-6)
    assert abs(float(data.object_map.mean())) < 1e-6


def test_object_has_the_tomograms_sign_grid_and_handedness(data):
    sl = (slice(4, -4), slice(8, -8), slice(8, -8))
    clean, obj = data.clean[sl], data.object_map
    same = _corr(clean, obj[sl])
    assert same > 0.5  # dense matter dark in both
    assert _corr(clean, -obj[sl]) < 0
    # a mirror of x or y, or a transposed y/x, fits far worse: same grid, same handedness
    assert same > 3 * abs(_corr(clean, obj.flip(2)[sl]))
    assert same > 3 * abs(_corr(clean, obj.flip(1)[sl]))
    assert same > 3 * abs(_corr(clean, obj.transpose(1, 2)[sl]))
    # the noise-free WBP is closer to the object than a noisy half
    assert same > _corr(data.even[sl], obj[sl])


def test_write_dataset_writes_object(tmp_path):
    cfg = SimulateConfig(**{**TINY, "shape": (16, 48, 48), "tilt_step": 10.0, "n_complexes": 4})
    paths = write_dataset(cfg, tmp_path / "sim")
    obj, meta = read_volume(paths["object"])
    clean, _ = read_volume(paths["tomo_clean"])
    assert obj.shape == clean.shape == (16, 48, 48) and np.allclose(meta.voxel_size, 12.0)
    assert paths["object"].name == "object.mrc"


def test_scores_after_affine_fit_are_invariant_to_gain_and_offset():
    rng = np.random.default_rng(0)
    obj = rng.normal(size=(24, 32, 32)).astype(np.float32)
    noisy = obj + 0.5 * rng.normal(size=obj.shape).astype(np.float32)
    a = score_against_object(noisy, obj)
    b = score_against_object(-3.0 * noisy + 7.0, obj)  # a restoration with another gain, sign and offset
    assert b["scale"] == pytest.approx(a["scale"] / -3.0, rel=1e-6)
    for key in ("psnr", "ssim"):
        assert b[key] == pytest.approx(a[key], rel=1e-6)
    assert b["correlation"] == pytest.approx(-a["correlation"], rel=1e-9)
    # Pearson's r of signal + independent noise of variance 0.25: 1 / sqrt(1.25)
    assert a["correlation"] == pytest.approx(1 / np.sqrt(1.25), abs=0.01)
    # after the fit, MSE = var(obj) * (1 - r^2) = 0.2: PSNR = 10 log10(range^2 / 0.2)
    sl = tuple(slice(int(n * 0.1), n - int(n * 0.1)) for n in obj.shape)
    rng_obj = float(obj[sl].max() - obj[sl].min())
    assert a["psnr"] == pytest.approx(10 * np.log10(rng_obj**2 / 0.2), abs=0.15)
    assert correlation(obj, obj) == pytest.approx(1.0)


def test_simulate_raw_writes_the_object_beside_the_truth(tmp_path):
    from cryocare_torch.simulate.raw import raw_config, write_raw_dataset

    paths = write_raw_dataset(raw_config(shape=(16, 64, 64), tilt_step=20.0, n_frames=2), tmp_path / "raw")
    obj, _ = read_volume(paths["object"])
    dens, _ = read_volume(paths["truth_density"])
    sigma = interaction_constant(300.0) * 12.0
    assert np.allclose(obj, -2 * sigma * (dens - dens.mean(dtype=np.float64)), atol=1e-6)


def test_z_profile_is_what_a_missing_wedge_removes_and_bounds_the_correlation():
    """A slab f(z) plus texture g with zero mean in every z section: the correlation of f + g with g is
    sqrt(var g / (var f + var g)) (f and g are uncorrelated by construction), and a wedge-filtered copy (tilts
    -60..60 about y: every frequency with |kz| > tan(60) |kx| zeroed) has no z profile left."""
    rng = np.random.default_rng(0)
    d, h, w = 24, 32, 32
    z = np.arange(d)[:, None, None]
    f = np.where((z >= 5) & (z < 19), -1.0, 2.0) * np.ones((1, h, w))
    g = rng.standard_normal((d, h, w))
    g -= g.mean(axis=(1, 2), keepdims=True)
    obj = f + g
    expected = np.sqrt(g.var() / (f.var() + g.var()))
    assert z_profile_bound(obj, region=0.0) == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(z_profile(obj)[:, 0, 0], f[:, 0, 0], atol=1e-12)
    kz = np.fft.fftfreq(d)[:, None, None]
    kx = np.fft.fftfreq(w)[None, None, :]
    measured = np.abs(kz) <= np.tan(np.deg2rad(60.0)) * np.abs(kx)
    measured[0, 0, 0] = True
    tomo = np.fft.ifftn(np.fft.fftn(obj) * measured).real
    np.testing.assert_allclose(z_profile(tomo)[:, 0, 0], obj.mean(), atol=1e-9)
    assert correlation(tomo, obj, region=0.0) < expected  # the wedge also loses more than the profile
