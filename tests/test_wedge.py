"""Missing-wedge mode: wedge geometry, exact cube rotations of volumes and masks, the DeepDeWedge-style loss and
refresh, and `cryocare denoise --missing-wedge` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cryocare_torch.cli.main import main
from cryocare_torch.cli.options import TrainOptions, build_config
from cryocare_torch.config import CryocareConfig, SimulateConfig, load_config
from cryocare_torch.errors import ConfigError
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.patches import PairStats, PatchPairs
from cryocare_torch.simulate import write_dataset
from cryocare_torch.simulate.dataset import format_tlt
from cryocare_torch.tomo.backproject import weighted_backprojection
from cryocare_torch.tomo.projector import project
from cryocare_torch.tomo.wedge import CUBE_ROTATIONS, rotate_spectrum, rotate_volume, wedge_mask
from cryocare_torch.train import load_checkpoint
from cryocare_torch.train.checkpoint import config_from
from cryocare_torch.train.objective import Objective
from cryocare_torch.train.resume import merge_resume_config
from cryocare_torch.train.wedge import WedgeObjective, apply_fourier_mask


def _at(mask: torch.Tensor, kz: int, kx: int, ky: int = 0) -> float:
    return float(mask[kz % mask.shape[0], ky % mask.shape[1], kx % mask.shape[2]])


def test_wedge_mask_directions_inside_and_outside():
    m = wedge_mask(16, -60, 60)
    assert _at(m, 3, 0) == 0 and _at(m, -5, 0) == 0  # along the beam (z): in the wedge
    assert _at(m, 0, 4) == 1 and _at(m, 0, 0, ky=5) == 1 and _at(m, 0, 0) == 1  # x, y (tilt axis), DC
    assert _at(m, 2, 2) == 1 and _at(m, -2, 2) == 1  # 45 degrees: measured
    assert _at(m, 3, 1) == 0 and _at(m, -3, 1) == 0  # atan(3) = 71.6 degrees > 60: missing
    assert _at(m, 1, 2, ky=7) == _at(m, 1, 2)  # independent of ky
    # measured fraction of the kz-kx plane, away from the origin: 120 of 180 degrees
    f = torch.fft.fftfreq(16)
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    ring = (r > 0.2) & (r < 0.45)
    assert float(m[:, 0, :][ring].mean()) == pytest.approx(120 / 180, abs=0.05)
    # an asymmetric range (a lamella with pre-tilt), -60..30: +45 degrees missing, -45 measured
    a = wedge_mask(16, -60, 30)
    assert _at(a, 2, 2) == 0 and _at(a, -2, 2) == 1 and _at(a, 2, -2) == 1 and _at(a, -2, -2) == 0
    assert torch.equal(wedge_mask(8, -90, 90), torch.ones(8, 8, 8))
    with pytest.raises(ConfigError):
        wedge_mask(8, 30, -30)


def test_wedge_mask_sign_matches_the_projector():
    """Project noise over 20..60 degrees only and back-project: the power sits where the mask says measured."""
    torch.manual_seed(0)
    n = 32
    vol = torch.randn(n, 3, n)
    angles = torch.arange(20.0, 61.0, 2.0)
    rec = weighted_backprojection(project(vol, angles, detector_width=n), angles, n, width=n)
    power = torch.fft.fftn(rec[:, 1]).abs() ** 2  # (kz, kx)
    f = torch.fft.fftfreq(n)
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    band = (r > 0.1) & (r < 0.35)
    m = wedge_mask(n, 20, 60)[:, 0, :].bool()
    assert float(power[band & m].mean()) > 20 * float(power[band & ~m].mean())
    mirrored = wedge_mask(n, -60, -20)[:, 0, :].bool()
    assert float(power[band & mirrored].mean()) < 0.1 * float(power[band & m].mean())


def test_cube_rotations_are_the_24_distinct_proper_rotations():
    vol = torch.arange(27.0).reshape(3, 3, 3)
    outs = {tuple(rotate_volume(vol, r).flatten().tolist()) for r in CUBE_ROTATIONS}
    assert len(outs) == 24
    mirror = tuple(vol.flip(0).flatten().tolist())
    assert mirror not in outs  # no reflection among them
    assert rotate_volume(vol, CUBE_ROTATIONS[0]).equal(vol)


@pytest.mark.parametrize("n", [7, 8])
def test_mask_rotation_follows_the_volume_rotation(n):
    rng = np.random.default_rng(n)
    v = torch.from_numpy(rng.normal(size=(n, n, n)))
    power = torch.fft.fftn(v).abs()
    mask = wedge_mask(n, -50, 35).double()
    for r in CUBE_ROTATIONS:
        rotated_power = torch.fft.fftn(rotate_volume(v, r)).abs()
        assert torch.allclose(rotated_power, rotate_spectrum(power, r), atol=1e-9)
        # masking then rotating = rotating then masking with the rotated mask
        a = rotate_volume(apply_fourier_mask(v, mask), r)
        b = apply_fourier_mask(rotate_volume(v, r), rotate_spectrum(mask, r))
        assert torch.allclose(a, b, atol=1e-5)


def test_wedge_loss_counts_only_where_the_target_was_measured():
    obj = WedgeObjective((-60, 60), 8, missing_weight=2.0)
    rng = np.random.default_rng(0)
    out = torch.from_numpy(rng.normal(size=(2, 1, 8, 8, 8))).float()
    # with every weight 1 the loss is the mean squared error (Parseval)
    assert float(obj.loss(out, torch.zeros_like(out), torch.ones(2, 1, 8, 8, 8))) == pytest.approx(
        float(out.square().mean()), rel=1e-5)
    # an error that lives only in the missing wedge costs nothing when the target lacks that region too
    in_wedge = apply_fourier_mask(out, 1.0 - obj.mask)
    w = obj.mask * (obj.mask + 2.0 * (1 - obj.mask))
    assert float(obj.loss(in_wedge, torch.zeros_like(out), w.expand(2, 1, 8, 8, 8))) < 1e-10
    # batch: the input has no power in the wedge; weights are zero wherever the rotated target was not measured
    inp, tgt, weights = obj.batch(out, out + 1, rng)
    assert float(torch.fft.fftn(inp, dim=(-3, -2, -1)).abs()[..., obj.mask == 0].max()) < 1e-4
    assert weights.shape == (2, 1, 8, 8, 8) and set(torch.unique(weights).tolist()) <= {0.0, 1.0, 2.0}
    assert float(weights.eq(2.0).float().mean()) > 0  # some rotations put measured target data in the input's wedge


def test_upright_rotations_are_the_turns_that_keep_the_wedge_and_make_pure_denoising():
    # symmetric range about y: the identity and the 180-degree turns about z, y and x (flip two of z, y, x)
    sym = WedgeObjective((-60, 60), 8, upright_fraction=1.0)
    found = {(CUBE_ROTATIONS[i].perm, CUBE_ROTATIONS[i].flips) for i in sym.upright}
    assert found == {((0, 1, 2), ()), ((0, 1, 2), (0, 1)), ((0, 1, 2), (0, 2)), ((0, 1, 2), (1, 2))}
    # asymmetric range: only the identity and the turn about y (z and x flipped: angle -> angle)
    asym = WedgeObjective((-50, 65), 8, upright_fraction=1.0)
    assert {(CUBE_ROTATIONS[i].perm, CUBE_ROTATIONS[i].flips) for i in asym.upright} == {
        ((0, 1, 2), ()), ((0, 1, 2), (0, 2))}
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(size=(6, 1, 8, 8, 8))).float()
    _, _, weights = sym.batch(x, x, rng)  # every pair upright: weights are the wedge itself, nothing to fill
    assert torch.equal(weights, sym.mask.expand(6, 1, 8, 8, 8))
    half = WedgeObjective((-60, 60), 8, upright_fraction=0.5).draw_rotations(20000, np.random.default_rng(4))
    assert np.isin(half, sym.upright).mean() == pytest.approx(0.5, abs=0.015)
    assert not np.isin(WedgeObjective((-60, 60), 8, upright_fraction=0.0).draw_rotations(
        500, np.random.default_rng(5)), sym.upright).any()
    # the configuration's default: no upright pair, every pair teaches filling
    cfg = load_config(overrides={"train": {"missing_wedge": [-60, 60]}, "patches": {"patch_size": 16}})
    wedge = Objective(cfg, 3, torch.device("cpu")).wedge
    assert wedge is not None and wedge.upright.tolist() == sym.upright.tolist()
    assert not np.isin(wedge.draw_rotations(500, np.random.default_rng(7)), sym.upright).any()
    # None: all 24 alike, the draws of earlier versions (4 in 24 upright)
    old = WedgeObjective((-60, 60), 8).draw_rotations(50, np.random.default_rng(6))
    assert np.array_equal(old, np.random.default_rng(6).integers(0, 24, size=50))


class _Constant(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand_as(x)


def test_refresh_keeps_measured_data_and_fills_the_wedge():
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(8, 8, 8)).astype(np.float32)
    pairs = PatchPairs([(vol, vol + 1)], [PairStats(0.0, 1.0, 10)], np.array([[0, 0, 0, 0]]), (8, 8, 8), 3)
    obj = WedgeObjective((-60, 60), 8)
    fill = torch.from_numpy(rng.normal(size=(8, 8, 8)).astype(np.float32))
    before = pairs.get_batch([0])
    assert obj.refresh(_Constant(fill), pairs, batch_size=4, device=torch.device("cpu"), dtype=torch.float32) == 1
    after = pairs.get_batch([0])
    expected = apply_fourier_mask(before, obj.mask) + apply_fourier_mask(fill, 1 - obj.mask)
    assert torch.allclose(after, expected, atol=2e-2)  # float16 cache


def test_config_bounds_and_images_refused():
    with pytest.raises(ConfigError, match="missing_wedge"):
        load_config(overrides={"train": {"missing_wedge": [60, -60]}})
    cfg = load_config(overrides={"train": {"missing_wedge": [-60, 40]}, "patches": {"patch_size": 16}})
    assert cfg.train.missing_wedge == (-60.0, 40.0)
    with pytest.raises(ConfigError, match="3D"):
        Objective(cfg, 2, torch.device("cpu"))
    assert Objective(CryocareConfig(), 2, torch.device("cpu")).wedge is None  # plain Noise2Noise by default


def test_denoise_missing_wedge_end_to_end(tmp_path: Path, small_pair: tuple[Path, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    even, odd = small_pair
    out = tmp_path / "restored.mrc"
    args = ["denoise", "--even", str(even), "--odd", str(odd), "--output", str(out), "--missing-wedge", "-60", "60",
            "--epochs", "1", "--n-patches", "16", "--patch-size", "16", "--batch-size", "4", "--threads", "2",
            "--set", "train.wedge_refresh_epochs=1", "--set", "model.n_first=4", "--set", "model.skip_sigma=[1,1,1]",
            "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    assert out.is_file()
    assert "missing wedge of 16 patch pairs filled" in capsys.readouterr().err
    ck = load_checkpoint(tmp_path / "restored_model" / "best.pt")
    assert ck.config.train.missing_wedge == (-60.0, 60.0) and ck.config.train.wedge_missing_weight == 2.0
    restored, _ = read_volume(out)
    assert restored.shape == (16, 32, 32) and np.isfinite(restored).all()


def test_missing_wedge_from_tilt_files(tmp_path: Path) -> None:

    tlt = tmp_path / "ts.tlt"
    tlt.write_text(format_tlt(torch.tensor([-3.0, 0.0, -51.0, 3.0, 42.0])))
    assert build_config(train=TrainOptions(missing_wedge_from=tlt)).train.missing_wedge == (-51.0, 42.0)
    sim = write_dataset(SimulateConfig(shape=(8, 16, 16), tilt_min=-54, tilt_max=48, tilt_step=6, n_frames=2,
                                       n_complexes=1, n_membranes=0, n_filaments=0), tmp_path / "sim")
    assert build_config(train=TrainOptions(missing_wedge_from=sim["mdoc"])).train.missing_wedge == (-54.0, 48.0)
    with pytest.raises(ConfigError, match="not both"):
        build_config(train=TrainOptions(missing_wedge=(-60, 60), missing_wedge_from=tlt))


# A RELION 5 tilt-series STAR as its AlignTiltSeries job writes it (columns as in RELION's
# src/align_tiltseries_runner.cpp: the stage's nominal angle, and rlnTomoYTilt from the aligner's refined .tlt/.aln).
TS_STAR = """
# version 50001

data_TS_01

loop_
_rlnMicrographName #1
_rlnTomoNominalStageTiltAngle #2
_rlnMicrographPreExposure #3
_rlnTomoXTilt #4
_rlnTomoYTilt #5
_rlnTomoZRot #6
MotionCorr/job002/frames/TS_01_001.mrc -48.000 9.0 0.0 -47.310 85.3
MotionCorr/job002/frames/TS_01_002.mrc 0.000 0.0 0.0 0.690 85.3
MotionCorr/job002/frames/TS_01_003.mrc 3.000 3.0 0.0 3.690 85.3
MotionCorr/job002/frames/TS_01_004.mrc 57.000 6.0 0.0 57.690 85.3
"""


def test_missing_wedge_from_relion5_star(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the refined angles (rlnTomoYTilt: the tomogram was reconstructed with them) before the stage's nominal ones
    ts = tmp_path / "AlignTiltSeries" / "job005" / "tilt_series" / "TS_01.star"
    ts.parent.mkdir(parents=True)
    ts.write_text(TS_STAR)
    assert build_config(train=TrainOptions(missing_wedge_from=ts)).train.missing_wedge == (-47.31, 57.69)
    nominal = tmp_path / "nominal.star"
    nominal.write_text(TS_STAR.replace("_rlnTomoYTilt #5", "_rlnTomoYTiltX #5"))
    assert build_config(train=TrainOptions(missing_wedge_from=nominal)).train.missing_wedge == (-48.0, 57.0)
    # a tomograms.star of one tomogram is followed to its tilt series (path relative to the project folder)
    tomos = tmp_path / "Tomograms" / "job006" / "tomograms.star"
    tomos.parent.mkdir(parents=True)
    head = "data_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoTiltSeriesStarFile #2\n"
    tomos.write_text(head + "TS_01 AlignTiltSeries/job005/tilt_series/TS_01.star\n")
    assert build_config(train=TrainOptions(missing_wedge_from=tomos)).train.missing_wedge == (-47.31, 57.69)
    tomos.write_text(head + "TS_01 AlignTiltSeries/job005/tilt_series/TS_01.star\n"
                     "TS_02 AlignTiltSeries/job005/tilt_series/TS_02.star\n")
    args = ["train", "--even", str(ts), "--odd", str(ts), "--model-dir", str(tmp_path / "m"),
            "--missing-wedge-from", str(tomos)]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "2 tilt series (TS_01, TS_02)" in err and "tomograms.star" in err and "Traceback" not in err
    empty = tmp_path / "other.star"
    empty.write_text("data_x\n\nloop_\n_rlnMicrographName #1\na.mrc\n")
    with pytest.raises(Exception, match="has no tilt angles"):
        build_config(train=TrainOptions(missing_wedge_from=empty))


def test_resume_keeps_the_tilt_range() -> None:
    stored = load_config(overrides={"train": {"missing_wedge": [-60, 60]}})
    same = merge_resume_config(stored, load_config(overrides={"train": {"max_minutes": 5}}), Path("last.pt"))
    assert same.train.missing_wedge == (-60.0, 60.0) and same.train.max_minutes == 5
    with pytest.raises(ConfigError, match="missing_wedge"):
        merge_resume_config(stored, load_config(overrides={"train": {"missing_wedge": [-50, 50]}}), Path("last.pt"))


def test_checkpoint_from_before_the_upright_setting_keeps_its_rotation_draw() -> None:
    """A wedge-mode checkpoint written before ``wedge_upright_fraction`` existed drew all 24 rotations alike;
    read back (e.g. to resume it), it must keep that draw (None), not take today's default 0."""
    old = load_config(overrides={"train": {"missing_wedge": [-60, 60]}}).model_dump(mode="json")
    del old["train"]["wedge_upright_fraction"]
    assert config_from({"config": old}, "old.pt").train.wedge_upright_fraction is None
    plain = load_config().model_dump(mode="json")
    del plain["train"]["wedge_upright_fraction"]
    assert config_from({"config": plain}, "old.pt").train.wedge_upright_fraction == 0.0
    new = load_config(overrides={"train": {"missing_wedge": [-60, 60]}}).model_dump(mode="json")
    assert config_from({"config": new}, "new.pt").train.wedge_upright_fraction == 0.0
