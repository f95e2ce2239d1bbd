"""Built-in simulator: phantom, CTF/dose physics, counting statistics, tomograms and files."""

from __future__ import annotations

import math

import mdocfile
import numpy as np
import pytest
import torch

from cryocare_torch.config import SimulateConfig
from cryocare_torch.errors import ConfigError, OutputError
from cryocare_torch.io.mrc import read_meta, read_volume
from cryocare_torch.simulate import (
    LABEL_NAMES,
    acquisition_order,
    critical_exposure,
    ctf_1d,
    exposure_filter,
    make_phantom,
    simulate,
    simulate_tilt_series,
    tilt_angles,
    write_dataset,
)
from cryocare_torch.simulate.ctf import ctf, electron_wavelength
from cryocare_torch.simulate.phantom import COMPLEX, DECORATION, FILAMENT, ICE, ICE_POTENTIAL, MEMBRANE, Phantom

TINY = dict(shape=(32, 64, 64), pixel_size=12.0, tilt_step=6.0, n_frames=4, n_complexes=10, n_membranes=1,
            n_filaments=1)


def tiny(**kw) -> SimulateConfig:
    return SimulateConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def data():
    return simulate(tiny())


def test_deterministic_and_seed_dependent(data):
    again = simulate(tiny())
    for name in ("truth_density", "labels", "even", "odd", "full", "clean"):
        assert torch.equal(getattr(data, name), getattr(again, name)), name
    assert torch.equal(data.tilt_series.even, again.tilt_series.even)
    other = simulate(tiny(seed=1))
    assert not torch.equal(data.truth_density, other.truth_density)
    assert not torch.equal(data.tilt_series.even, other.tilt_series.even)


def test_shapes_and_dtypes(data):
    d, h, w = TINY["shape"]
    n = len(tilt_angles(tiny()))
    for name in ("even", "odd", "full", "clean", "truth_density"):
        t = getattr(data, name)
        assert t.shape == (d, h, w) and t.dtype == torch.float32, name
    assert data.labels.shape == (d, h, w)
    for name in ("even", "odd", "full", "clean"):
        assert getattr(data.tilt_series, name).shape == (n, h, w)
    assert torch.all(torch.isfinite(data.full))


def test_labels_consistent_with_density():
    cfg = tiny(shape=(32, 96, 96))
    ph = make_phantom(cfg, lateral_pad=8)
    dens, lab = ph.density, ph.labels
    assert set(torch.unique(lab).tolist()) <= set(LABEL_NAMES)
    objects = (lab >= MEMBRANE) & (lab <= COMPLEX)
    assert objects.any() and (lab == ICE).any()
    assert torch.all(dens[lab > 0] > 0.0)
    assert dens[objects].min() > 0.5 * ICE_POTENTIAL
    assert dens[lab == 0].mean() < dens[lab == ICE].mean() < dens[objects].mean()
    for cls in (MEMBRANE, FILAMENT, DECORATION, COMPLEX):
        assert (lab == cls).any(), LABEL_NAMES[cls]


def test_decorations_on_filaments_at_period():
    cfg = SimulateConfig(shape=(48, 128, 128), n_complexes=0, n_membranes=0, n_filaments=3, seed=3)
    ph = make_phantom(cfg, lateral_pad=0)
    c, fil = ph.decoration_centres, ph.decoration_filament
    assert len(c) >= 4
    period = cfg.decoration_period_nm * 10 / cfg.pixel_size
    n_pairs = 0
    for f in torch.unique(fil):
        pts = c[fil == f]
        steps = (pts[1:] - pts[:-1]).norm(dim=1)
        assert torch.all((steps - period).abs() < 0.08 * period), steps
        n_pairs += len(steps)
    assert n_pairs >= 2
    idx = c.round().long()
    assert torch.all(ph.labels[idx[:, 0], idx[:, 1], idx[:, 2]] == DECORATION)
    wall = (ph.labels == FILAMENT).nonzero().float()
    near = torch.cdist(c, wall).min(dim=1).values
    assert torch.all(near < 8.0 * 10 / cfg.pixel_size)  # touching the tube wall (within 8 nm)


def test_dose_symmetric_order():
    angles = torch.arange(-9.0, 10.0, 3.0)
    rank = acquisition_order(angles, "dose_symmetric", 2)
    sequence = angles[torch.argsort(rank)].tolist()
    assert sequence == [0, 3, -3, -6, 6, 9, -9]
    assert angles[torch.argsort(acquisition_order(angles, "dose_symmetric", 1))].tolist() == [0, 3, -3, 6, -6, 9, -9]
    assert acquisition_order(angles, "sequential").tolist() == list(range(7))
    assert angles[torch.argsort(acquisition_order(angles, "bidirectional"))].tolist() == [0, 3, 6, 9, -3, -6, -9]
    with pytest.raises(ConfigError):
        acquisition_order(angles, "random")


def test_ctf_matches_torch_ctf():
    torch_ctf = pytest.importorskip("torch_ctf", reason="torch-ctf is only in the [bench] extra")
    k, c = ctf_1d(64, 4.0, defocus_um=2.5, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07)
    ref = torch_ctf.calculate_ctf_1d(defocus=2.5, voltage=300.0, spherical_aberration=2.7, amplitude_contrast=0.07,
                                     phase_shift=0.0, pixel_size=4.0, n_samples=64, oversampling_factor=1)
    assert torch.allclose(c.float(), ref.float(), atol=1e-4)


def test_ctf_analytic_zeros_and_exposure_filter():
    # 300 kV electrons: lambda = 1.9687 pm (textbook value).
    assert math.isclose(electron_wavelength(300.0), 0.019687, rel_tol=1e-4)
    k, c = ctf_1d(64, 4.0, defocus_um=2.5, voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.07)
    assert math.isclose(float(c[0]), 0.07, rel_tol=1e-6)
    # Without Cs and amplitude contrast CTF = sin(pi lambda dz k^2): first maximum at chi = pi/2, first zero at pi.
    lam, dz = electron_wavelength(300.0), 2.5e4
    k0 = math.sqrt(1.0 / (lam * dz))
    kk = torch.tensor([k0 / math.sqrt(2.0), k0], dtype=torch.float64)
    pure = ctf(kk, defocus_um=2.5, voltage_kv=300.0, cs_mm=0.0, amplitude_contrast=0.0)
    assert math.isclose(float(pure[0]), 1.0, abs_tol=1e-9) and abs(float(pure[1])) < 1e-9
    kk = torch.tensor([0.0, 0.05, 0.1])
    ne = critical_exposure(kk)
    assert math.isinf(float(ne[0])) and math.isclose(float(ne[2]), 0.245 * 0.1**-1.665 + 2.81, rel_tol=1e-6)
    q = exposure_filter(kk, torch.tensor([0.0, float(2 * ne[1])]))
    assert q.shape == (2, 3) and torch.all(q[0] == 1) and q[1, 0] == 1
    assert math.isclose(float(q[1, 1]), math.exp(-1), rel_tol=1e-6) and q[1, 2] < q[1, 1]


def test_frames_are_poisson_and_halves_independent(data):
    cfg = tiny()
    d, h, w = cfg.shape
    flat = Phantom(density=torch.zeros(d, h, w + 40), labels=torch.zeros(d, h, w + 40, dtype=torch.uint8),
                   decoration_centres=torch.zeros(0, 3), decoration_filament=torch.zeros(0, dtype=torch.int64),
                   complex_centres=torch.zeros(0, 3), complex_kinds=[], lateral_pad=20, pixel_size=12.0,
                   ice_thickness=0.0)
    ts = simulate_tilt_series(flat, cfg, keep_frames=True)
    frames = ts.frames
    expected = cfg.dose_per_tilt / cfg.n_frames * cfg.pixel_size**2
    assert frames.shape == (len(ts.angles), cfg.n_frames, h, w)
    assert torch.equal(frames, frames.round()) and frames.min() >= 0
    mean, var = frames.mean(), frames.var()
    assert abs(float(mean) / expected - 1) < 0.01 and abs(float(var / mean) - 1) < 0.03
    assert torch.equal(ts.even, frames[:, 0::2].sum(1)) and torch.equal(ts.odd, frames[:, 1::2].sum(1))

    t = data.tilt_series
    assert torch.equal(t.even + t.odd, t.full)
    diff, total = (t.normalised("even") - t.normalised("odd")).flatten(), (t.even + t.odd).flatten()
    assert abs(float(torch.corrcoef(torch.stack([diff, total]))[0, 1])) < 0.03


def test_half_average_beats_single_half_and_has_low_snr(data):
    def corr(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    avg = (data.even + data.odd) / 2
    assert corr(avg, data.clean) > corr(data.even, data.clean) > 0.05
    assert corr(data.full, data.clean) > corr(data.even, data.clean)
    snr = float(data.clean.var() / (data.even - data.clean).var())
    assert snr < 0.5
    assert torch.allclose(data.full, avg, atol=1e-3 * float(data.full.abs().max()))


def test_missing_wedge(data):
    power = torch.fft.fftn(data.clean - data.clean.mean()).abs().square().mean(dim=1)  # (kz, kx)
    d, _, w = data.clean.shape
    kz = torch.fft.fftfreq(d)[:, None].abs()
    kx = torch.fft.fftfreq(w)[None, :].abs()
    radius = torch.sqrt(kz**2 + kx**2)
    angle = torch.rad2deg(torch.atan2(kz, kx))  # 90: along the beam
    band = (radius > 0.08) & (radius < 0.4)
    wedge = power[band & (angle > 70)].mean()
    sampled = power[band & (angle < 50)].mean()
    assert wedge < 0.1 * sampled


def test_write_dataset(tmp_path):
    cfg = tiny(shape=(16, 48, 48), tilt_step=10.0, n_complexes=4)
    out = tmp_path / "sim"
    paths = write_dataset(cfg, out)
    angles = tilt_angles(cfg)
    for name in ("tomo_even", "tomo_odd", "tomo_full", "tomo_clean", "truth_density", "labels"):
        meta = read_meta(paths[name])
        assert meta.shape == (16, 48, 48) and not meta.is_stack, name
        assert np.allclose(meta.voxel_size, cfg.pixel_size), name
    for name in ("tilt_even", "tilt_odd", "tilt_full", "tilt_clean"):
        meta = read_meta(paths[name])
        assert meta.shape == (len(angles), 48, 48) and meta.is_stack and np.isclose(meta.pixel_size, 12.0)
    ev, _ = read_volume(paths["tilt_even"])
    od, _ = read_volume(paths["tilt_odd"])
    full, _ = read_volume(paths["tilt_full"])
    assert np.array_equal(ev + od, full)
    tlt = np.loadtxt(paths["tlt"])
    assert np.allclose(tlt, angles.numpy()) and np.all(np.diff(tlt) > 0)
    df = mdocfile.read(paths["mdoc"])
    assert len(df) == len(angles)
    assert np.allclose(df["TiltAngle"].to_numpy(dtype=float), angles.numpy())
    assert np.allclose(df["ExposureDose"].to_numpy(dtype=float), cfg.dose_per_tilt)
    first = df.sort_values("DateTime")["TiltAngle"].to_numpy(dtype=float)[:3]
    assert np.allclose(first, [0.0, 10.0, -10.0])
    from cryocare_torch.io.mdoc import read_mdoc

    ours = read_mdoc(paths["mdoc"])
    rank = acquisition_order(angles, cfg.tilt_order, cfg.dose_symmetric_group).numpy()
    assert np.array_equal(ours.acquisition_order, rank)
    assert np.allclose(ours.pre_exposure, rank * cfg.dose_per_tilt)
    labels, _ = read_volume(paths["labels"])
    assert set(np.unique(labels).astype(int)) <= set(LABEL_NAMES)
    assert paths["decorations"].read_text().startswith("z,y,x,filament")
    with pytest.raises(OutputError):
        write_dataset(cfg, out)
    again = write_dataset(cfg, out, overwrite=True, frames=True)
    frames, meta = read_volume(again["frames_000"])
    assert meta.is_stack and frames.shape == (cfg.n_frames, 48, 48)
    assert (out / df["SubFramePath"].iloc[0]).is_file()


def test_frame_drift_hook_shifts_frames():
    cfg = tiny(dose_per_tilt=2000.0, tilt_min=-6.0, tilt_max=6.0, defocus_um=0.0)
    d, h, w = cfg.shape
    n = len(tilt_angles(cfg))

    def blob_projector(volume, angles, *, detector_width):
        y = torch.arange(volume.shape[1], dtype=torch.float32)[:, None] - h / 2
        x = torch.arange(detector_width, dtype=torch.float32)[None, :] - detector_width / 2
        return 50.0 * torch.exp(-(y**2 + x**2) / 18.0).expand(len(angles), -1, -1)

    flat = make_phantom(tiny(n_complexes=0, n_membranes=0, n_filaments=0), lateral_pad=4)
    drift = torch.zeros(n, cfg.n_frames, 2)
    drift[:, 1] = torch.tensor([0.0, 3.0])
    ts = simulate_tilt_series(flat, cfg, keep_frames=True, frame_drift=drift, projector=blob_projector)
    xs = torch.arange(w, dtype=torch.float32)

    def centroid_x(img: torch.Tensor) -> float:
        wgt = (img.mean() - img).clamp_min(0)
        return float((wgt.sum(0) * xs).sum() / wgt.sum())

    f = ts.frames[n // 2]
    assert abs(centroid_x(f[1]) - centroid_x(f[0]) - 3.0) < 0.3
    with pytest.raises(ConfigError):
        simulate_tilt_series(flat, cfg, frame_drift=torch.zeros(n, 2, 2), projector=blob_projector)
