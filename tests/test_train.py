"""Training loop, checkpoints, resume, time budget, determinism and input errors (tiny, CPU fp32)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryocare_torch.config import CryocareConfig
from cryocare_torch.errors import CheckpointError, ConfigError, DataError, OutputError
from cryocare_torch.io.atomic import atomic_torch_save
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.train import load_checkpoint, train
from cryocare_torch.train.checkpoint import read_checkpoint
from cryocare_torch.train.loop import _Run

SHAPE = (24, 48, 48)


def _data(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = gaussian_filter(rng.standard_normal(shape), 2.0)
    clean = (5 + 2 * clean / clean.std()).astype(np.float32)
    even = (clean + 2 * rng.standard_normal(shape)).astype(np.float32)
    odd = (clean + 2 * rng.standard_normal(shape)).astype(np.float32)
    return clean, even, odd


def _cfg(**train: object) -> CryocareConfig:
    t = {"epochs": 2, "batch_size": 4, "steps_per_epoch": 5, "precision": "fp32", "num_threads": 1,
         "learning_rate": 3e-3, **train}
    return CryocareConfig.model_validate(
        {"model": {"n_first": 4, "gaussian_skip": False}, "patches": {"patch_size": 16, "n_patches": 40}, "train": t}
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model_state"]


def test_learns_to_denoise_and_writes_loadable_checkpoints(tmp_path: Path) -> None:
    clean, even, odd = _data()
    res = train([(even, odd)], tmp_path / "m", _cfg(epochs=6, steps_per_epoch=None), progress=False)
    assert res.stop_reason == "epochs" and res.epochs == 6 and res.steps == 6 * 9
    hist = json.loads(res.history_path.read_text())
    assert len(hist) == 6 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    ck = load_checkpoint(res.best)
    assert ck.ndim == 3 and not ck.model.training and ck.config == _cfg(epochs=6, steps_per_epoch=None)
    norm = ck.normalization
    assert norm["mode"] == "per_pair" and len(norm["pairs"]) == 1 and norm["std"] > 0
    # 24x48x48, patches of 16, val_fraction 0.1: the last max(16, ceil(4.8)) = 16 voxels of y are held out
    assert norm["pairs"][0]["validation_region"] == [[0, 24], [32, 48], [0, 48]]
    raw = ck.raw
    assert raw["format"] == "cryocare-torch-checkpoint" and raw["format_version"] == 1
    assert raw["best_val_loss"] == min(h["val_loss"] for h in hist)
    assert load_checkpoint(res.last).raw["epoch"] == 6
    x = torch.from_numpy((even[:, :48, :48] - norm["mean"]) / norm["std"])[None, None]
    with torch.no_grad():
        restored = ck.model(x)[0, 0].numpy() * norm["std"] + norm["mean"]
    mse_in = float(((even - clean) ** 2).mean())
    mse_out = float(((restored - clean) ** 2).mean())
    assert mse_out < 0.6 * mse_in


def test_resume_after_interrupt_equals_uninterrupted_and_is_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, even, odd = _data()
    cfg = _cfg()
    a = train([(even, odd)], tmp_path / "a", cfg, progress=False)
    b = train([(even, odd)], tmp_path / "b", cfg, progress=False)
    wa, wb = _weights(a.last), _weights(b.last)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed -> same weights
    other = train([(even, odd)], tmp_path / "o", _cfg(seed=1), progress=False)
    assert not all(torch.equal(wa[k], _weights(other.last)[k]) for k in wa)

    original = _Run.train_step

    def interrupting_step(self: _Run, inp: torch.Tensor, tgt: torch.Tensor) -> float:
        loss = original(self, inp, tgt)
        if self.step == 6:  # 7th step, in the middle of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(_Run, "train_step", interrupting_step)
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train([(even, odd)], tmp_path / "c", cfg, progress=False)
    assert signal.getsignal(signal.SIGINT) is handler_before
    monkeypatch.setattr(_Run, "train_step", original)
    saved = read_checkpoint(tmp_path / "c" / "last.pt")
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (1, 2, 7)
    c = train([(even, odd)], tmp_path / "c", None, resume=True, progress=False)
    assert c.steps == 10 and c.epochs == 2
    wc = _weights(c.last)
    assert all(torch.allclose(wa[k], wc[k], atol=1e-6, rtol=0) for k in wa)
    assert [h["epoch"] for h in c.history] == [1, 2]


def test_max_minutes_stops_cleanly(tmp_path: Path) -> None:
    _, even, odd = _data()
    res = train([(even, odd)], tmp_path / "m", _cfg(epochs=10_000, max_minutes=0.02), progress=False)
    assert res.stop_reason == "time_limit" and res.epochs < 10_000
    assert res.best.exists() and res.last.exists() and res.history_path.exists()
    assert res.elapsed_s < 30
    # resuming with a larger budget continues from where it stopped
    more = train([(even, odd)], tmp_path / "m", _cfg(epochs=10_000, max_minutes=0.04), resume=True, progress=False)
    assert more.steps > res.steps


def test_two_pairs_from_mrc_files_and_2d(tmp_path: Path) -> None:
    files = []
    for i in range(2):
        _, e, o = _data((20, 32, 40), seed=i)
        fe, fo = tmp_path / f"t{i}_even.mrc", tmp_path / f"t{i}_odd.mrc"
        write_volume(fe, e, voxel_size=10.0)
        write_volume(fo, o, voxel_size=10.0)
        files.append((fe, fo))
    res = train(files, tmp_path / "m", _cfg(epochs=1, steps_per_epoch=2), progress=False)
    pairs = load_checkpoint(res.best).normalization["pairs"]
    assert [p["name"] for p in pairs] == [str(f[0]) for f in files]
    _, e2, o2 = _data((64, 64))
    res2 = train([(e2, o2)], tmp_path / "m2", _cfg(epochs=1, steps_per_epoch=2), progress=False)
    assert load_checkpoint(res2.best).ndim == 2


def test_input_errors(tmp_path: Path) -> None:
    _, e, o = _data()
    out = tmp_path / "m"
    with pytest.raises(DataError, match="differ in shape"):
        train([(e, o[:, :40])], out, _cfg(), progress=False)
    bad = o.copy()
    bad[0, 0, :] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train([(e, bad)], tmp_path / "n", _cfg(), progress=False)
    with pytest.raises(DataError, match="smaller than a patch"):
        train([(e[:8], o[:8])], tmp_path / "s", _cfg(), progress=False)
    fe, fo = tmp_path / "a_even.mrc", tmp_path / "a_odd.mrc"
    write_volume(fe, e, voxel_size=10.0)
    write_volume(fo, o, voxel_size=12.0)
    with pytest.raises(DataError, match=r"voxel size.*a_even.*a_odd"):
        train([(fe, fo)], tmp_path / "v", _cfg(), progress=False)
    with pytest.raises(ConfigError, match="multiple of"):
        train([(e, o)], tmp_path / "p", CryocareConfig.model_validate(
            {"model": {"depth": 3}, "patches": {"patch_size": 20}}), progress=False)


def test_output_and_resume_errors(tmp_path: Path) -> None:
    _, e, o = _data()
    out = tmp_path / "m"
    with pytest.raises(CheckpointError, match="resume"):
        train([(e, o)], out, _cfg(), resume=True, progress=False)
    train([(e, o)], out, _cfg(epochs=1, steps_per_epoch=1), progress=False)
    with pytest.raises(OutputError, match="--resume"):
        train([(e, o)], out, _cfg(), progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        train([(e, o)], out, _cfg(batch_size=2), resume=True, progress=False)
    train([(e, o)], out, _cfg(epochs=1, steps_per_epoch=1), overwrite=True, progress=False)


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.pt.*not a readable"):
        load_checkpoint(junk)
    other = atomic_torch_save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a cryocare-torch checkpoint"):
        load_checkpoint(other)
    _, e, o = _data()
    res = train([(e, o)], tmp_path / "m", _cfg(epochs=1, steps_per_epoch=1), progress=False)
    raw = read_checkpoint(res.best)
    atomic_torch_save({**raw, "format_version": 99}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "newer.pt")
    assert load_checkpoint(tmp_path / "m").path.name == "best.pt"  # a folder means its best.pt


def test_gaussian_skip_widths_are_chosen_by_the_n2n_loss_and_travel_in_the_checkpoint(tmp_path: Path) -> None:
    from cryocare_torch.filters import gaussian_smooth
    from cryocare_torch.train.smoothing import SIGMAS_XY, SIGMAS_Z

    clean, even, odd = _data(seed=3)
    cfg = _cfg(epochs=1, steps_per_epoch=2)
    cfg.model.gaussian_skip = True
    res = train([(even, odd)], tmp_path / "m", cfg, progress=False)
    ck = load_checkpoint(res.best)
    sigma = ck.config.model.skip_sigma
    assert sigma is not None and len(sigma) == 3 and sigma[0] in SIGMAS_Z and sigma[1] == sigma[2] in SIGMAS_XY
    assert ck.model.skip_sigma == sigma
    # the self-tuned widths are (near) the best ones against the clean truth, which the search never saw
    c, a, b = (torch.from_numpy(v.astype(np.float64)) for v in (clean, even, odd))

    def mse_to_truth(s: tuple[float, ...]) -> float:
        return float(((gaussian_smooth(a, s) - c)[4:-4, 4:-4, 4:-4] ** 2).mean())

    oracle = min(mse_to_truth((z, xy, xy)) for z in SIGMAS_Z for xy in SIGMAS_XY)
    assert mse_to_truth(sigma) < 1.15 * oracle < 0.25 * float(((a - c) ** 2).mean())
    # a wrong number of explicit widths is a one-line configuration error
    cfg.model.skip_sigma = (1.0, 1.0)
    with pytest.raises(ConfigError, match="3 widths"):
        train([(even, odd)], tmp_path / "m2", cfg, progress=False)
