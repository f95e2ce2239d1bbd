"""Live mode (cryocare watch): pairs appearing in a folder, files still being written, restart, train-after,
bad pairs, CLI errors. Tiny volumes, a model trained for two steps, 0.1 s polling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.config import CryocareConfig
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.workflows import api
from cryocare_torch.workflows.watch import watch
from cryocare_torch.workflows.watch_files import scan_pairs

SHAPE = (16, 32, 32)
FAST = ["--device", "cpu", "--threads", "1", "--precision", "fp32"]
CFG = CryocareConfig.model_validate({
    "model": {"n_first": 4, "depth": 1},
    "patches": {"patch_size": 16, "n_patches": 8},
    "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 2, "precision": "fp32", "num_threads": 1,
              "device": "cpu"},
    "predict": {"precision": "fp32", "num_threads": 1, "device": "cpu"},
})


def _halves(seed: int, shape: tuple[int, ...] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sig = rng.normal(size=shape).astype(np.float32)
    return sig + rng.normal(size=shape).astype(np.float32), sig + rng.normal(size=shape).astype(np.float32)


def _pair(folder: Path, name: str, seed: int) -> tuple[Path, Path]:
    e, o = _halves(seed)
    return (write_volume(folder / f"{name}_even.mrc", e, voxel_size=10.0),
            write_volume(folder / f"{name}_odd.mrc", o, voxel_size=10.0))


def _mrc_bytes(tmp: Path, data: np.ndarray) -> bytes:
    return write_volume(tmp / f"scratch_{time.monotonic_ns()}.bin.mrc", data, voxel_size=10.0).read_bytes()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model")
    e, o = _pair(root, "train", 99)
    return api.train([(e, o)], root / "m", CFG, progress=False)


@pytest.fixture
def predicted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Outputs of every real api.predict call (the path the watch restores through)."""
    calls: list[Path] = []
    real = api.predict

    def spy(checkpoint, even, odd, output, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(Path(output))
        return real(checkpoint, even, odd, output, *args, **kw)

    monkeypatch.setattr(api, "predict", spy)
    return calls


def _run(inbox: Path, out: Path, logs: list[str] | None = None, **kw: object):  # noqa: ANN202
    opts = {"interval": 0.1, "max_idle_minutes": 0.5, **kw}
    return watch(inbox, out, CFG, log=(logs if logs is not None else []).append, **opts)  # type: ignore[arg-type]


def test_scan_waits_for_partners_and_ignores_own_outputs(tmp_path: Path) -> None:
    for n in ("a_even", "a_odd", "b_EVN_Vol", "c_half1", "c_half2", "a_denoised_even", "a_denoised_odd"):
        (tmp_path / f"{n}.mrc").write_bytes(b"x")
    (tmp_path / ".d_even.mrc.host-1.abc.partial").write_bytes(b"x")
    pairs, problems = scan_pairs(tmp_path, lambda p: "_denoised" in p.name)
    assert [(n, e.name, o.name) for n, e, o in pairs] == [("a", "a_even.mrc", "a_odd.mrc"),
                                                           ("c", "c_half1.mrc", "c_half2.mrc")]
    assert problems == []  # b has no partner yet: waited for, not an error
    (tmp_path / "a_evn.mrc").write_bytes(b"x")
    assert "two candidates" in scan_pairs(tmp_path)[1][0]
    for sub, name in (("even", "TS_1.mrc"), ("odd", "TS_1.mrc"), ("even", "TS_2.mrc")):
        (tmp_path / "w" / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / "w" / sub / name).write_bytes(b"x")
    assert [n for n, _, _ in scan_pairs(tmp_path / "w")[0]] == ["TS_1"]


def test_pairs_appearing_are_restored_once_and_equal_cryocare_predict(
    tmp_path: Path, ckpt: Path, predicted: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    late_e, late_o = _halves(2)
    late = _mrc_bytes(tmp_path, late_o)
    state: dict[str, bool] = {}

    def microscope() -> None:
        time.sleep(0.3)
        _pair(inbox, "TS_01", 1)
        time.sleep(0.2)
        write_volume(inbox / "TS_02_even.mrc", late_e, voxel_size=10.0)
        with open(inbox / "TS_02_odd.mrc", "wb") as fh:  # still being written: half the data, then a pause
            fh.write(late[: len(late) // 2])
            fh.flush()
            time.sleep(0.6)
            state["partial_done"] = (out / "TS_02_denoised.mrc").exists()
            fh.write(late[len(late) // 2:])
        time.sleep(0.2)
        _pair(inbox, "TS_03", 3)

    writer = threading.Thread(target=microscope)
    writer.start()
    logs: list[str] = []
    summary = _run(inbox, out, logs, model=ckpt, max_pairs=3)
    writer.join()
    assert summary.reason == "max-pairs" and summary.failed == {}, logs
    assert sorted(summary.done) == ["TS_01", "TS_02", "TS_03"]
    assert sorted(p.name for p in predicted) == [f"TS_0{i}_denoised.mrc" for i in (1, 2, 3)]  # each exactly once
    assert state["partial_done"] is False
    assert logs[0].startswith("watching") and "restoring on CPU" in logs[0]
    assert summary.line().startswith("watch ended (max-pairs): 3 restored, 0 already complete, 0 failed")
    for i in (1, 2, 3):
        ref = tmp_path / f"ref_{i}.mrc"
        args = ["predict", "--model", str(ckpt), "--even", str(inbox / f"TS_0{i}_even.mrc"), "--odd",
                str(inbox / f"TS_0{i}_odd.mrc"), "--output", str(ref), *FAST]
        assert main(args) == 0, capsys.readouterr().err
        (a, meta_a), (b, meta_b) = read_volume(out / f"TS_0{i}_denoised.mrc"), read_volume(ref)
        assert np.array_equal(a, b) and meta_a.voxel_size == meta_b.voxel_size


def test_restart_skips_complete_outputs_and_stop_ends_after_the_current_pair(tmp_path: Path, ckpt: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for i in (1, 2):
        _pair(inbox, f"TS_0{i}", i)
    stop = threading.Event()
    logs: list[str] = []

    def log(msg: str) -> None:
        logs.append(msg)
        if msg.startswith("TS_01: done"):
            stop.set()  # what the first Ctrl-C does

    first = watch(inbox, out, CFG, model=ckpt, interval=0.1, stop=stop, log=log)
    assert (first.reason, first.done) == ("stopped", ["TS_01"])
    second = _run(inbox, out, model=ckpt.parent, max_idle_minutes=0.01)  # the model's folder works too
    assert (second.reason, second.done, second.skipped) == ("idle", ["TS_02"], ["TS_01"])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mrc")}
    third = _run(inbox, out, model=ckpt, max_idle_minutes=0.01)
    assert (third.done, sorted(third.skipped)) == ([], ["TS_01", "TS_02"])
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mrc")} == stamps


def test_train_after_trains_once_then_restores_all_and_restart_reuses_the_model(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    _pair(inbox, "TS_01", 1)
    writer = threading.Timer(0.3, lambda: [_pair(inbox, f"TS_0{i}", i) for i in (2, 3)])
    writer.start()
    logs: list[str] = []
    summary = _run(inbox, out, logs, train_after=2, max_pairs=3)
    writer.join()
    best = out / "cryocare_watch_model" / "best.pt"
    assert summary.trained and summary.model == best.absolute() and summary.failed == {}, logs
    assert sorted(summary.done) == ["TS_01", "TS_02", "TS_03"]
    assert sum(line.startswith("training a model on 2 pair(s)") for line in logs) == 1
    stamp = best.stat().st_mtime_ns
    again = _run(inbox, out, train_after=2, max_idle_minutes=0.01)
    assert not again.trained and again.model == best.absolute() and sorted(again.skipped) == summary.done
    assert best.stat().st_mtime_ns == stamp
    record = best.parent / "watch_training.json"  # as if the first watch had been stopped mid-training
    record.write_text(record.read_text().replace('"complete": true', '"complete": false'))
    logs.clear()
    resumed = _run(inbox, out, logs, train_after=2, max_idle_minutes=0.01)
    assert resumed.trained and any(line.startswith("resuming a model on 2 pair(s)") for line in logs), logs
    assert sorted(resumed.skipped) == summary.done and '"complete": true' in record.read_text()


def test_bad_pairs_are_reported_once_and_skipped_while_later_pairs_are_restored(tmp_path: Path, ckpt: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    e, _ = _halves(5)
    write_volume(inbox / "a_even.mrc", e, voxel_size=10.0)
    write_volume(inbox / "a_odd.mrc", e[:8], voxel_size=10.0)  # shape mismatch
    write_volume(inbox / "b_even.mrc", e, voxel_size=10.0)
    (inbox / "b_odd.mrc").write_bytes(_mrc_bytes(tmp_path, e)[:5000])  # writer died: stays truncated
    write_volume(inbox / "c_even.mrc", e, voxel_size=10.0)
    (inbox / "c_odd.mrc").write_bytes(b"not an MRC file" * 100)
    writer = threading.Timer(0.3, _pair, (inbox, "d", 6))
    writer.start()
    logs: list[str] = []
    summary = _run(inbox, out, logs, model=ckpt, max_pairs=4)
    writer.join()
    assert summary.done == ["d"] and sorted(summary.failed) == ["a", "b", "c"]
    assert "differ in shape" in summary.failed["a"] and "truncated" in summary.failed["b"]
    assert "not an MRC file" in summary.failed["c"] or "not a valid MRC" in summary.failed["c"]
    for name in "abc":
        assert sum(line.startswith(f"{name}: failed:") for line in logs) == 1
    assert all("\n" not in line for line in logs) and not (out / "a_denoised.mrc").exists()


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cryocare: error: "), err
    return err[0]


def test_cli_errors_are_one_line_and_the_commands_run(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox, out = tmp_path / "inbox", str(tmp_path / "out")
    inbox.mkdir()
    cases = [
        (["watch", str(tmp_path / "missing"), "--output", out, "--model", str(ckpt)], 3, "watch folder not found"),
        (["watch", str(inbox), "--output", out, "--model", str(tmp_path / "nope.pt")], 6, "checkpoint not found"),
        (["watch", str(inbox), "--output", out], 2, "--train-after"),
        (["watch", str(inbox), "--output", out, "--model", str(ckpt), "--train-after", "2"], 2, "either"),
        (["watch", str(inbox), "--output", out, "--model", str(ckpt), "--interval", "0"], 2, "--interval"),
        (["watch", str(inbox), "--output", out, "--train-after", "0"], 2, "--train-after"),
        (["batch", "x", "--watch", str(inbox), "--model", str(ckpt), "--output-dir", out], 2, "replaces INPUTS"),
    ]
    for args, code, text in cases:
        assert main(args) == code, args
        assert text in _one_error(capsys)
    _pair(inbox, "TS_01", 1)
    common = ["--model", str(ckpt), "--interval", "0.1", "--max-idle-minutes", "0.01", *FAST]
    assert main(["watch", str(inbox), "--output", out, *common]) == 0
    assert "1 restored" in capsys.readouterr().out and (tmp_path / "out" / "TS_01_denoised.mrc").is_file()
    assert main(["batch", "--watch", str(inbox), "--output-dir", out, *common]) == 0
    assert "0 restored, 1 already complete" in capsys.readouterr().out
