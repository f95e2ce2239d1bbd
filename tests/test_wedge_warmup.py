"""Missing-wedge mode after a plain warm-up: train.init_from, the two phases, and the Fourier merge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.cli.main import main
from cryocare_torch.config import load_config
from cryocare_torch.errors import CheckpointError, DataError
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.predict.wedge_merge import measured_xz, merge_files, merge_measured
from cryocare_torch.tomo.wedge import wedge_mask
from cryocare_torch.train import load_checkpoint, train
from cryocare_torch.train.checkpoint import read_checkpoint
from cryocare_torch.train.warmup import phase_configs

SHAPE = (16, 8, 24)


def wave(kz: int, ky: int, kx: int, phase: float) -> np.ndarray:
    """cos(2 pi (kz z / d + ky y / h + kx x / w) + phase) on SHAPE: one Fourier pair (k, -k)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    d, h, w = SHAPE
    return np.cos(2 * np.pi * (kz * z / d + ky * y / h + kx * x / w) + phase)


def test_merge_takes_measured_waves_from_one_volume_and_wedge_waves_from_the_other() -> None:
    # directions in the (kx, kz) plane, in cycles per voxel: kz/kx = 0 (0 deg: measured for -60..60),
    # (2/16)/(3/24) = 1 (45 deg: measured), (4/16)/(1/24) = 6 (80.5 deg: missing), kx = 0 (90 deg: missing);
    # ky does not matter (the wedge is a wedge about y)
    measured = [(0, 2, 3), (2, 1, 3)]
    missing = [(4, 3, 1), (5, 0, 0)]
    rng = np.random.default_rng(3)
    parts = {k: [rng.uniform(0.5, 2) * wave(*k, rng.uniform(0, 6)) for _ in range(2)] for k in measured + missing}
    first = sum(parts[k][0] for k in measured + missing)
    second = sum(parts[k][1] for k in measured + missing)
    expected = sum(parts[k][0] for k in measured) + sum(parts[k][1] for k in missing)
    got = merge_measured(torch.tensor(first), torch.tensor(second), (-60.0, 60.0))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # an asymmetric range, -50..70: the direction (kz, kx) = (-4/16, 3/24) lies at -63.4 deg (missing), its mirror
    # (4/16, 3/24) at +63.4 deg (measured); -60..60 misses both
    zero = torch.zeros(SHAPE, dtype=torch.float64)
    below, above = wave(-4, 0, 3, 0.3), wave(4, 0, 3, 0.3)
    np.testing.assert_allclose(merge_measured(torch.tensor(below), zero, (-50.0, 70.0)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(merge_measured(torch.tensor(above), zero, (-50.0, 70.0)).numpy(), above, atol=1e-5)
    np.testing.assert_allclose(merge_measured(torch.tensor(above), zero, (-60.0, 60.0)).numpy(), 0.0, atol=1e-5)


def test_merge_mask_is_the_training_wedge() -> None:
    """The merge's mask on a cube is the wedge the training uses (whose sign the projector test checks)."""
    for lo, hi in ((-60.0, 60.0), (-50.0, 70.0), (-30.0, 45.0)):
        cube = measured_xz(12, 12, (lo, hi)).expand(12, 12, 12)
        assert torch.equal(cube.float(), wedge_mask(12, lo, hi))


def test_merge_files_in_bands_of_y_equals_the_whole_merge(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=SHAPE).astype(np.float32) for _ in range(2))
    pa = write_volume(tmp_path / "plain.mrc", a, voxel_size=7.5)
    pb = write_volume(tmp_path / "wedge.mrc", b, voxel_size=7.5)
    out = merge_files(pa, pb, tmp_path / "merged.mrc", (-60.0, 60.0), band_voxels=16 * 24 * 3)  # 3 rows a band
    got, meta = read_volume(out)
    whole = merge_measured(torch.from_numpy(a), torch.from_numpy(b), (-60.0, 60.0)).numpy()
    np.testing.assert_allclose(got, whole, atol=1e-5)
    assert meta.voxel_size[0] == pytest.approx(7.5)
    assert read_volume(pa)[0].tobytes() == a.tobytes()  # inputs untouched
    small = write_volume(tmp_path / "small.mrc", a[:8], voxel_size=7.5)
    with pytest.raises(DataError, match="small.mrc is 8x8x24"):
        merge_files(small, pb, tmp_path / "m2.mrc", (-60.0, 60.0))


def test_phase_configs_split_the_budget() -> None:
    cfg = load_config(overrides={"train": {"missing_wedge": [-60, 60], "max_minutes": 30,
                                           "wedge_warmup_fraction": 1 / 3}})
    plain, wedge = phase_configs(cfg, Path("m"))
    assert plain.train.max_minutes == pytest.approx(10) and wedge.train.max_minutes == pytest.approx(20)
    assert plain.train.missing_wedge is None and wedge.train.missing_wedge == (-60.0, 60.0)
    assert wedge.train.init_from == Path("m") / "plain" / "best.pt"
    by_epochs = load_config(overrides={"train": {"missing_wedge": [-60, 60], "epochs": 10,
                                                 "wedge_warmup_fraction": 0.25}})
    plain, wedge = phase_configs(by_epochs, Path("m"))
    assert (plain.train.epochs, wedge.train.epochs) == (3, 7)


def _tiny(**train: object) -> dict[str, object]:
    return {"model": {"n_first": 4, "skip_sigma": [1, 1, 1]},
            "patches": {"patch_size": 16, "n_patches": 16},
            "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "num_threads": 2, **train}}


def test_init_from_starts_from_the_given_weights(tmp_path: Path, small_pair: tuple[Path, Path]) -> None:
    first = train([small_pair], tmp_path / "a", load_config(overrides=_tiny()), progress=False)
    start = read_checkpoint(first.best)["model_state"]
    # a learning rate of 1e-12: Adam moves each weight by ~1e-12, so the result is the initial weights
    second = train([small_pair], tmp_path / "b", load_config(overrides=_tiny(init_from=str(first.best),
                                                                          learning_rate=1e-12, seed=7)),
                   progress=False)
    after = read_checkpoint(second.best)["model_state"]
    assert all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)
    fresh = train([small_pair], tmp_path / "c", load_config(overrides=_tiny(learning_rate=1e-12, seed=7)),
                  progress=False)
    key = next(iter(start))  # without init_from the run starts from its own random weights
    assert not torch.allclose(start[key], read_checkpoint(fresh.best)["model_state"][key], atol=1e-3)
    other = load_config(overrides=_tiny(init_from=str(first.best)) | {"model": {"n_first": 8,
                                                                                "skip_sigma": [1, 1, 1]}})
    with pytest.raises(CheckpointError, match="n_first"):
        train([small_pair], tmp_path / "d", other, progress=False)


def test_denoise_with_plain_warmup_merges_the_two_restorations(tmp_path: Path, small_pair: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    even, odd = small_pair
    out = tmp_path / "restored.mrc"
    args = ["denoise", "--even", str(even), "--odd", str(odd), "--output", str(out), "--missing-wedge", "-60", "60",
            "--epochs", "2", "--n-patches", "16", "--patch-size", "16", "--batch-size", "4", "--threads", "2",
            "--set", "train.wedge_warmup_fraction=0.5", "--set", "model.n_first=4",
            "--set", "model.skip_sigma=[1,1,1]", "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    assert "plain Noise2Noise warm-up for 50%" in capsys.readouterr().err
    mdir = tmp_path / "restored_model"
    plain = load_checkpoint(mdir / "plain" / "best.pt")
    wedge = load_checkpoint(mdir / "best.pt")
    assert plain.config.train.missing_wedge is None and plain.config.train.epochs == 1
    assert wedge.config.train.missing_wedge == (-60.0, 60.0) and wedge.config.train.epochs == 1
    assert wedge.config.train.init_from == mdir / "plain" / "best.pt"
    p, _ = read_volume(tmp_path / "restored_plain.mrc")
    w, _ = read_volume(tmp_path / "restored_wedge.mrc")
    merged, _ = read_volume(out)
    expected = merge_measured(torch.from_numpy(p), torch.from_numpy(w), (-60.0, 60.0)).numpy()
    np.testing.assert_allclose(merged, expected, atol=1e-5)

    # 'cryocare predict' with the wedge checkpoint finds the warm-up model beside it and merges the same way
    again = tmp_path / "again" / "restored.mrc"
    args = ["predict", "--model", str(mdir / "best.pt"), "--even", str(even), "--odd", str(odd),
            "--output", str(again), "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    np.testing.assert_allclose(read_volume(again)[0], merged, atol=1e-5)
    np.testing.assert_allclose(read_volume(again.with_name("restored_wedge.mrc"))[0], w, atol=1e-5)
    # with the merge off it writes the wedge model's restoration alone, and no parts
    alone = tmp_path / "alone.mrc"
    args[args.index("--output") + 1] = str(alone)
    assert main([*args, "--set", "predict.merge_plain=false"]) == 0, capsys.readouterr().err
    np.testing.assert_allclose(read_volume(alone)[0], w, atol=1e-5)
    assert not (tmp_path / "alone_plain.mrc").exists()
