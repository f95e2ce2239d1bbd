"""FSC/FRC: agreement with teamtomo, analytic cases, resolution read-out, masks, file wrapper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_fourier_shell_correlation import fourier_ring_correlation, fourier_shell_correlation

from cryocare_torch.errors import ConfigError, DataError, OutputError
from cryocare_torch.evaluate.fsc import FSCResult, central_box, fsc, make_mask
from cryocare_torch.evaluate.fsc_io import fsc_files
from cryocare_torch.io.mrc import write_volume


def _pair(shape: tuple[int, ...], seed: int = 0, noise: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=g, dtype=torch.float64)
    return a, a + noise * torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(24, 24, 24), (25, 25, 25), (20, 28, 33), (32, 16, 24), (40, 40), (36, 51)])
def test_agrees_with_teamtomo(shape: tuple[int, ...]) -> None:
    a, b = _pair(shape)
    ref = (fourier_shell_correlation if len(shape) == 3 else fourier_ring_correlation)(a, b).numpy()
    ours = fsc(a, b, voxel_size=5.0).fsc
    assert ours.shape == ref.shape == (min(shape) // 2 + 1,)
    assert np.abs(ours - ref).max() < 1e-6


def test_frequency_axis_in_per_nm() -> None:
    a, b = _pair((32, 40, 48))
    r = fsc(a, b, voxel_size=8.0)  # 0.8 nm voxels; shells 1/(32 * 0.8 nm) apart
    assert np.allclose(np.diff(r.frequency_per_nm), 1 / (32 * 0.8))
    assert r.nyquist_nm == pytest.approx(1.6)
    assert math.isinf(r.resolution_nm[0])


@pytest.mark.parametrize("binning", ["linear", "nearest"])
def test_map_with_itself_is_one(binning: str) -> None:
    a, _ = _pair((20, 24, 28))
    r = fsc(a, a.clone(), voxel_size=1.0, binning=binning)  # type: ignore[arg-type]
    assert np.allclose(r.fsc, 1.0)
    assert not r.crosses(0.143) and r.res_0_143 == pytest.approx(r.nyquist_nm)


@pytest.mark.parametrize("binning", ["linear", "nearest"])
def test_independent_noise_within_3_sigma(binning: str) -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(40, 40, 40, generator=g), torch.randn(40, 40, 40, generator=g)
    r = fsc(a, b, voxel_size=1.0, binning=binning)  # type: ignore[arg-type]
    inside = np.abs(r.fsc[1:]) < r.noise_threshold()[1:]
    assert inside.mean() >= 0.9
    if binning == "nearest":  # full-space voxel count of a hard shell ~ 4 pi k^2
        k = np.arange(5, 15)
        assert np.allclose(r.n_voxels_per_shell[k], 4 * np.pi * k**2, rtol=0.25)


def _ideal_lowpass(x: torch.Tensor, f0: float) -> torch.Tensor:
    grids = torch.meshgrid(*[torch.fft.fftfreq(n) for n in x.shape[:-1]], torch.fft.rfftfreq(x.shape[-1]),
                           indexing="ij")
    radius = torch.sqrt(sum(g**2 for g in grids))
    return torch.fft.irfftn(torch.fft.rfftn(x) * (radius <= f0), s=x.shape)


@pytest.mark.parametrize("shape", [(48, 48, 48), (96, 96)])
def test_ideal_lowpass_crosses_at_cutoff(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(shape, generator=g, dtype=torch.float64)
    f0 = 0.26  # cycles/voxel, between shells
    b = _ideal_lowpass(s, f0) + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    r = fsc(s, b, voxel_size=10.0)  # 1 nm voxels: expect 1/f0 = 3.85 nm
    k0 = f0 * min(shape)
    assert (r.fsc[3 : int(k0) - 1] > 0.8).all() and (np.abs(r.fsc[int(k0) + 2 :]) < 0.3).all()
    step = 1 / min(shape)
    assert 1 / (f0 + step) <= r.res_0_5 <= 1 / (f0 - step)
    assert 1 / (f0 + step) <= r.res_0_143 <= 1 / (f0 - step)


def test_resolution_at_interpolates_and_flags() -> None:
    freq = np.arange(6) / 10.0
    r = FSCResult(freq, np.array([1.0, 0.9, 0.7, 0.3, 0.1, 0.0]), np.ones(6), 10.0)
    # 0.5 lies halfway between shells 2 (0.7) and 3 (0.3): f = 0.25 / nm
    assert r.resolution_at(0.5) == pytest.approx(4.0)
    assert r.crosses(0.5)
    flat = FSCResult(freq, np.array([1.0, 0.9, 0.9, 0.9, 0.8, 0.7]), np.ones(6), 10.0)
    assert not flat.crosses(0.5) and flat.res_0_5 == pytest.approx(2.0)
    d = flat.to_dict()
    assert d["res_0_5_reaches_nyquist"] is True
    json.dumps(d, allow_nan=False)
    nan = FSCResult(freq, np.array([1.0, 0.9, np.nan, 0.9, 0.8, 0.7]), np.ones(6), 10.0)
    assert np.isfinite(nan.res_0_5)
    with pytest.raises(ConfigError):
        r.resolution_at(1.5)
    assert len(r.to_csv().splitlines()) == 7


def test_masks_and_crop() -> None:
    sphere = make_mask((32, 32, 32), "sphere", soft_edge=4)
    assert sphere[16, 16, 16] == 1 and sphere[0, 0, 0] == 0 and 0 < sphere[16, 16, 29] < 1
    box = make_mask((16, 20), "box", soft_edge=3)
    assert box[8, 10] == 1 and 0 < box[0, 10] < 0.2
    binary = torch.zeros(24, 24, 24)
    binary[8:16, 8:16, 8:16] = 1
    soft = make_mask(binary.shape, binary, soft_edge=3)
    assert soft[12, 12, 12] == 1 and 0 < soft[12, 12, 17] < 1 and soft[12, 12, 20] == 0
    a, b = _pair((24, 24, 24))
    assert np.allclose(fsc(a, a, voxel_size=1.0, mask="sphere", soft_edge=3).fsc, 1.0)
    cropped = fsc(a, b, voxel_size=1.0, crop=(16, 12, 20))
    c = central_box(a.shape, (16, 12, 20))
    assert cropped.shape == (16, 12, 20)
    assert np.allclose(cropped.fsc, fsc(a[c], b[c], voxel_size=1.0).fsc)


def test_user_errors() -> None:
    a, b = _pair((16, 16, 16))
    with pytest.raises(DataError, match="same shape"):
        fsc(a, b[:8], voxel_size=1.0)
    with pytest.raises(ConfigError, match="voxel_size"):
        fsc(a, b, voxel_size=0.0)
    bad = b.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        fsc(a, bad, voxel_size=1.0)
    with pytest.raises(DataError, match="mask shape"):
        fsc(a, b, voxel_size=1.0, mask=np.ones((4, 4, 4)))


def test_fsc_files(tmp_path: Path) -> None:
    a, b = (x.numpy().astype(np.float32) for x in _pair((24, 32, 32)))
    pa = write_volume(tmp_path / "even.mrc", a, voxel_size=12.0)
    pb = write_volume(tmp_path / "odd.mrc", b, voxel_size=12.0)
    out = tmp_path / "fsc.json"
    r = fsc_files(pa, pb, json_path=out, csv_path=tmp_path / "fsc.csv", crop=16)
    assert r.voxel_size == pytest.approx(12.0) and r.shape == (16, 16, 16)
    assert json.loads(out.read_text())["a"].endswith("even.mrc")
    assert (tmp_path / "fsc.csv").read_text().startswith("shell,")
    with pytest.raises(OutputError):  # refuses to replace outputs before computing anything
        fsc_files(pa, pb, json_path=out)
    plot = fsc_files(pa, pb, json_path=out, plot_path=tmp_path / "fsc.png", overwrite=True)
    assert (tmp_path / "fsc.png").read_bytes()[:4] == b"\x89PNG" and plot.shape == (24, 32, 32)
    full = fsc_files(pa, pb)
    assert np.allclose(full.fsc, fsc(a, b, voxel_size=12.0).fsc, atol=1e-6)

    other = write_volume(tmp_path / "other.mrc", a[:, :16], voxel_size=12.0)
    with pytest.raises(DataError, match="other.mrc"):
        fsc_files(pa, other)
    coarse = write_volume(tmp_path / "coarse.mrc", b, voxel_size=20.0)
    with pytest.raises(DataError, match="coarse.mrc"):
        fsc_files(pa, coarse)
    nosize = write_volume(tmp_path / "nosize.mrc", b, voxel_size=0.0)
    with pytest.raises(ConfigError, match="voxel_size"):
        fsc_files(pa, nosize)
    assert fsc_files(pa, nosize, voxel_size=12.0).voxel_size == 12.0
