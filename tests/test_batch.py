"""Batch manifests: resolving inputs, skip-complete logic, idempotent items, the local 'cryocare batch'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.config import CryocareConfig
from cryocare_torch.errors import CheckpointError, ConfigError, InputFileError
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.workflows import api
from cryocare_torch.workflows.batch import (
    build_manifest,
    load_manifest,
    resolve_batch,
    run_all,
    run_item,
    write_manifest,
)
from cryocare_torch.workflows.batch_state import output_state

SHAPE = (8, 16, 16)


def _pair(folder: Path, even: str, odd: str, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sig = rng.normal(size=shape).astype(np.float32)
    e = write_volume(folder / even, sig + rng.normal(size=shape).astype(np.float32), voxel_size=10.0)
    o = write_volume(folder / odd, sig + rng.normal(size=shape).astype(np.float32), voxel_size=10.0)
    return e, o


@pytest.fixture
def tomos(tmp_path: Path) -> Path:
    for k in range(3):
        _pair(tmp_path / "tomos", f"TS_{k:02d}_even.mrc", f"TS_{k:02d}_odd.mrc", seed=k)
    (tmp_path / "best.pt").write_bytes(b"stand-in checkpoint")
    return tmp_path


@pytest.fixture
def fake_predict(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, bool]]:
    """Replace the network by the average of the halves; records (output, overwrite) per call."""
    calls: list[tuple[Path, bool]] = []

    def predict(checkpoint, even, odd, output, config=None, *, overwrite=False, progress=True, log=None):  # noqa: ANN001, ANN202
        (e, meta), (o, _) = read_volume(even), read_volume(odd)
        calls.append((Path(output), overwrite))
        return write_volume(output, (e + o) / 2, meta, overwrite=overwrite)

    monkeypatch.setattr(api, "predict", predict)
    return calls


def test_resolve_folder(tomos: Path) -> None:
    items = resolve_batch([tomos / "tomos"], tomos / "out")
    assert [i.name for i in items] == ["TS_00", "TS_01", "TS_02"]
    assert items[1].even == (tomos / "tomos" / "TS_01_even.mrc").absolute()
    assert items[1].odd.name == "TS_01_odd.mrc"
    assert items[2].output == (tomos / "out" / "TS_02_denoised.mrc").absolute()


def test_resolve_glob_nested_and_explicit_files(tmp_path: Path) -> None:
    _pair(tmp_path / "a" / "TS_1", "tomo_EVN_Vol.mrc", "tomo_ODD_Vol.mrc")
    _pair(tmp_path / "a" / "TS_2", "tomo_EVN_Vol.mrc", "tomo_ODD_Vol.mrc")
    (tmp_path / "a" / "TS_2" / "tomo_Vol.mrc").write_bytes(b"")  # full tomogram: no marker, ignored
    items = resolve_batch([str(tmp_path / "a" / "**" / "*.mrc")], tmp_path / "out", suffix="_n2n")
    assert [i.name for i in items] == ["TS_1_tomo_Vol", "TS_2_tomo_Vol"]  # same name -> folder prefixed
    assert items[0].output.name == "TS_1_tomo_Vol_n2n.mrc"
    one = resolve_batch([tmp_path / "a" / "TS_1" / "tomo_EVN_Vol.mrc", tmp_path / "a" / "TS_1" / "tomo_ODD_Vol.mrc"],
                        tmp_path / "out")
    assert [(i.name, i.odd.name) for i in one] == [("tomo_Vol", "tomo_ODD_Vol.mrc")]


def test_resolve_list_file(tomos: Path) -> None:
    lst = tomos / "pairs.txt"
    lst.write_text("# name even odd\nfirst tomos/TS_00_even.mrc tomos/TS_00_odd.mrc\n"
                   "second tomos/TS_02_even.mrc tomos/TS_02_odd.mrc\n")
    items = resolve_batch([lst], tomos / "out")
    assert [(i.name, i.even.name, i.output.name) for i in items] == [
        ("first", "TS_00_even.mrc", "first_denoised.mrc"), ("second", "TS_02_even.mrc", "second_denoised.mrc")]


def test_resolve_relion5_tomograms_star(tomos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = tomos / "Tomograms" / "job007"
    job.mkdir(parents=True)
    rows = "\n".join(f"TS_{k:02d} 10.0 tomos/TS_{k:02d}_even.mrc tomos/TS_{k:02d}_odd.mrc" for k in (0, 1))
    (job / "tomograms.star").write_text(
        "\n# version 50001\n\ndata_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoTiltSeriesPixelSize #2\n"
        f"_rlnTomoReconstructedTomogramHalf1 #3\n_rlnTomoReconstructedTomogramHalf2 #4\n{rows}\n\n")
    monkeypatch.chdir(tomos)  # RELION paths are relative to the project folder
    items = resolve_batch([Path("Tomograms/job007/tomograms.star")], "out")
    assert [i.name for i in items] == ["TS_00", "TS_01"]
    assert items[1].odd == (tomos / "tomos" / "TS_01_odd.mrc").absolute()


def test_resolve_errors(tomos: Path) -> None:
    with pytest.raises(InputFileError, match="matches no MRC"):
        resolve_batch([str(tomos / "nothing" / "*.mrc")], tomos / "out")
    (tomos / "tomos" / "TS_00_odd.mrc").unlink()
    with pytest.raises(InputFileError, match="partner"):
        resolve_batch([str(tomos / "tomos" / "*.mrc")], tomos / "out")
    with pytest.raises(ConfigError):
        resolve_batch([], tomos / "out")


def test_output_state(tmp_path: Path) -> None:
    out = tmp_path / "o.mrc"
    assert output_state(out, SHAPE).kind == "missing"
    write_volume(out, np.zeros(SHAPE, np.float32))
    assert output_state(out, SHAPE).kind == "complete"
    assert str(output_state(out, (8, 16, 17))).startswith("incomplete: shape")
    data = out.read_bytes()
    out.write_bytes(data[:-100])  # an interrupted copy
    assert output_state(out, SHAPE).kind == "incomplete"
    out.write_bytes(data[:500])  # not even a header
    assert output_state(out, SHAPE).kind == "incomplete"
    write_volume(out, np.zeros(SHAPE, np.int16), overwrite=True)
    assert str(output_state(out, SHAPE)).startswith("incomplete: mode 1")


def test_manifest_skips_complete_redoes_partial(tomos: Path) -> None:
    items = resolve_batch([tomos / "tomos"], tomos / "out")
    (tomos / "out").mkdir()
    write_volume(items[0].output, np.zeros(SHAPE, np.float32))  # complete -> skipped
    write_volume(items[1].output, np.zeros(SHAPE, np.float32))
    items[1].output.write_bytes(items[1].output.read_bytes()[:-4])  # truncated -> redone
    logged: list[str] = []
    m = build_manifest(items, tomos / "best.pt", CryocareConfig(), log=logged.append)
    assert [i.name for i in m.items] == ["TS_01", "TS_02"] and [i.name for i in m.skipped] == ["TS_00"]
    assert any("TS_01" in line and "redone" in line for line in logged)
    assert len(build_manifest(items, tomos / "best.pt", CryocareConfig(), overwrite=True).items) == 3
    with pytest.raises(CheckpointError):
        build_manifest(items, tomos / "missing.pt", CryocareConfig())


def test_manifest_roundtrip_and_errors(tomos: Path) -> None:
    cfg = CryocareConfig()
    cfg.predict.num_threads = 1
    m = build_manifest(resolve_batch([tomos / "tomos"], tomos / "out"), tomos / "best.pt", cfg)
    path = write_manifest(m, tomos / "w" / "m.json")
    back = load_manifest(path)
    assert back.items == m.items and back.model == m.model and back.config.predict.num_threads == 1
    assert json.loads(path.read_text())["items"][0]["name"] == "TS_00"
    (tomos / "bad.json").write_text('{"format": "something else"}')
    for bad in (tomos / "bad.json", tomos / "best.pt", tomos / "none.json"):
        with pytest.raises(InputFileError):
            load_manifest(bad)


def test_run_item_idempotent(tomos: Path, fake_predict: list) -> None:
    m = build_manifest(resolve_batch([tomos / "tomos"], tomos / "out"), tomos / "best.pt", CryocareConfig())
    m.items[0].output.parent.mkdir()
    assert run_item(m, 0) == "done"
    assert run_item(m, 0) == "skipped" and len(fake_predict) == 1
    m.items[0].output.write_bytes(m.items[0].output.read_bytes()[:2000])  # partial output is redone
    assert run_item(m, 0) == "done" and fake_predict[-1] == (m.items[0].output, True)
    assert output_state(m.items[0].output, SHAPE).complete
    with pytest.raises(ConfigError, match="out of range"):
        run_item(m, 3)
    assert {k: str(v) for k, v in run_all(m).items()} == {"TS_00": "skipped", "TS_01": "done", "TS_02": "done"}


def test_cli_batch_local_and_rerun(tomos: Path, fake_predict: list, capsys: pytest.CaptureFixture) -> None:
    args = ["batch", str(tomos / "tomos"), "--model", str(tomos / "best.pt"), "--output-dir", str(tomos / "out")]
    assert main(args) == 0
    assert len(fake_predict) == 3 and "done 3" in capsys.readouterr().out
    manifests = list((tomos / "out" / "cryocare_batch").glob("manifest-*.json"))
    assert len(manifests) == 1 and len(load_manifest(manifests[0]).items) == 3
    assert main(args) == 0 and len(fake_predict) == 3 and len(list(manifests[0].parent.glob("*.json"))) == 1
    assert "nothing to do" in capsys.readouterr().out
    (tomos / "out" / "TS_01_denoised.mrc").write_bytes(b"\0" * 1500)  # corrupt one -> only it is redone
    assert main([*args, "--threads", "1"]) == 0 and [c[0].name for c in fake_predict[3:]] == ["TS_01_denoised.mrc"]


def test_cli_batch_run_errors(tomos: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["batch", str(tomos / "tomos"), "--model", str(tomos / "nope.pt"), "--output-dir", "o"]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt" in err
    assert main(["batch-run", "--manifest", str(tomos / "m.json"), "--index", "0"]) == 3


def test_real_model_batch(tmp_path: Path) -> None:
    """End to end with a real (tiny) model: 'cryocare batch' restores every pair, then skips them all."""
    if not hasattr(pytest.importorskip("cryocare_torch.train"), "train"):
        pytest.skip("cryocare_torch.train.train is not available yet")
    for k in range(2):
        _pair(tmp_path / "tomos", f"t{k}_even.mrc", f"t{k}_odd.mrc", seed=k, shape=(16, 32, 32))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cryocare_torch.cli", *a], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    tr = cli("train", "--even", "tomos/t0_even.mrc", "--odd", "tomos/t0_odd.mrc", "--model-dir", "model",
             "--epochs", "1", "--patch-size", "16", "--n-patches", "8", "--set", "model.n_first=4", "--threads", "1")
    assert tr.returncode == 0, tr.stderr[-2000:]
    args = ("batch", "tomos", "--model", "model/best.pt", "--output-dir", "out", "--threads", "1")
    res = cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    for k in range(2):
        out, _ = read_volume(tmp_path / "out" / f"t{k}_denoised.mrc")
        assert out.shape == (16, 32, 32) and np.isfinite(out).all()
    again = cli(*args)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_stale_partials_removed(tomos: Path, fake_predict: list) -> None:
    m = build_manifest(resolve_batch([tomos / "tomos"], tomos / "out"), tomos / "best.pt", CryocareConfig())
    out = m.items[0].output
    out.parent.mkdir()
    old = out.parent / f".{out.name}.123.abcd1234.partial"
    fresh = out.parent / f".{out.name}.456.abcd5678.partial"
    other = out.parent / f".{m.items[1].output.name}.7.deadbeef.partial"
    for p in (old, fresh, other):
        p.write_bytes(b"x")
    os.utime(old, (1e9, 1e9))
    os.utime(other, (1e9, 1e9))
    assert run_item(m, 0) == "done"
    assert not old.exists() and fresh.exists() and other.exists()
