"""Conical FSC: resolution around z versus around x, against volumes of known directional resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryocare_torch.errors import ConfigError, DataError
from cryocare_torch.evaluate.directional import cone_mask, conical_fsc, directional_resolution

VS = 10.0  # Angstrom: 1 cycle/voxel = 1 / nm


def _lowpass_by_direction(vol: np.ndarray, cut_z: float, cut_x: float) -> np.ndarray:
    """Keep |k| < cut_z where k is within 45 degrees of z (|kz| >= |(ky, kx)|), |k| < cut_x elsewhere."""
    d, h, w = vol.shape
    kz, ky, kx = np.meshgrid(np.fft.fftfreq(d), np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    r = np.sqrt(kz**2 + ky**2 + kx**2)
    near_z = np.abs(kz) >= np.sqrt(ky**2 + kx**2)
    keep = np.where(near_z, r < cut_z, r < cut_x)
    return np.fft.ifftn(np.fft.fftn(vol) * keep).real.astype(np.float32)


def test_cone_mask_geometry():
    m = cone_mask((8, 8, 8), axis=0, half_angle=30.0)  # rfft grid (8, 8, 5)
    assert m.shape == (8, 8, 5)
    assert m[1, 0, 0] == 1 and m[7, 0, 0] == 1  # +kz and -kz
    assert m[0, 0, 1] == 0 and m[0, 1, 0] == 0  # kx, ky: 90 degrees off
    assert m[2, 0, 1] == 1  # atan(1/2) = 26.6 degrees from z
    assert m[1, 0, 1] == 0  # 45 degrees
    mx = cone_mask((8, 8, 8), axis=2, half_angle=30.0)
    assert mx[0, 0, 1] == 1 and mx[1, 0, 2] == 1 and mx[1, 0, 1] == 0
    with pytest.raises(ConfigError):
        cone_mask((8, 8, 8), 0, 0.0)


def test_conical_fsc_finds_each_directions_cutoff():
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(48, 48, 48)).astype(np.float32)
    cut_z, cut_x = 0.125, 0.3125  # cycles/voxel: 8 nm along z, 3.2 nm along x
    low = _lowpass_by_direction(vol, cut_z, cut_x)
    shell = 1 / 48  # cycles/voxel between shells
    z = conical_fsc(low, vol, voxel_size=VS, axis="z", soft_edge=0)
    x = conical_fsc(low, vol, voxel_size=VS, axis="x", soft_edge=0)
    for curve, cut in ((z, cut_z), (x, cut_x)):
        f = 1.0 / curve.res_0_5  # per nm = cycles/voxel here
        assert abs(f - cut) <= 1.5 * shell, (curve.meta, f, cut)
        assert abs(1.0 / curve.res_0_143 - cut) <= 1.5 * shell
        assert curve.crosses(0.5)
    summary = directional_resolution(low, vol, voxel_size=VS, soft_edge=0)
    assert summary["ratio_z_over_x_0_5"] == pytest.approx(cut_x / cut_z, rel=0.2)
    assert summary["z"]["res_0_5_nm"] == pytest.approx(z.res_0_5)
    # isotropic data: ratio ~ 1; the whole-sphere cone (90 degrees) equals the ordinary FSC's crossing
    iso = directional_resolution(_lowpass_by_direction(vol, 0.25, 0.25), vol, voxel_size=VS, soft_edge=0)
    assert iso["ratio_z_over_x_0_5"] == pytest.approx(1.0, abs=0.1)


def test_conical_fsc_counts_and_errors():
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.normal(size=(16, 20, 24)))
    full = conical_fsc(a, a, voxel_size=VS, axis="x", half_angle=90.0, soft_edge=2)
    narrow = conical_fsc(a, a, voxel_size=VS, axis="x", half_angle=20.0, soft_edge=2)
    assert np.allclose(full.fsc, 1.0) and np.all(narrow.n_voxels_per_shell[2:] < full.n_voxels_per_shell[2:])
    with pytest.raises(DataError):
        conical_fsc(a, a[:, :, :20], voxel_size=VS)
    with pytest.raises(ConfigError):
        conical_fsc(a, a, voxel_size=VS, axis="q")
