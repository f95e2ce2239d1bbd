"""Batch prediction sharded over processes: ``cryocare batch --devices cpu,cpu`` (one worker subprocess per
device) and ``torchrun --nproc-per-node 2 ... batch`` (each process takes every 2nd pair) against one process.

Three tiny 16x32x32 pairs and a model trained for two steps; all runs use 1 thread and fp32, so the outputs
must be byte-identical, each pair must be restored exactly once, and a rerun must skip what is complete.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.config import CryocareConfig
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.workflows import api
from cryocare_torch.workflows.batch import BatchItem, Manifest
from cryocare_torch.workflows.shard import Shard, WorkerError, check_workers, own_items, parse_shard

SHAPE = (16, 32, 32)
NAMES = ["TS_00", "TS_01", "TS_02"]
FAST = ["--threads", "1", "--precision", "fp32"]
CFG = CryocareConfig.model_validate({
    "model": {"n_first": 4, "depth": 1},
    "patches": {"patch_size": 16, "n_patches": 8},
    "train": {"epochs": 1, "batch_size": 2, "steps_per_epoch": 2, "precision": "fp32", "num_threads": 1,
              "device": "cpu"},
})
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _pair(folder: Path, name: str, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sig = rng.normal(size=SHAPE).astype(np.float32)
    return (write_volume(folder / f"{name}_even.mrc", sig + rng.normal(size=SHAPE).astype(np.float32), voxel_size=10.0),
            write_volume(folder / f"{name}_odd.mrc", sig + rng.normal(size=SHAPE).astype(np.float32), voxel_size=10.0))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(tomos folder, checkpoint, single-process batch output folder)."""
    root = tmp_path_factory.mktemp("shard")
    for k, name in enumerate(NAMES):
        _pair(root / "tomos", name, k)
    e, o = _pair(root / "train", "train", 99)
    ckpt = api.train([(e, o)], root / "model", CFG, progress=False)
    single = root / "single"
    assert main(["batch", str(root / "tomos"), "--model", str(ckpt), "--output-dir", str(single), "--device", "cpu",
                 *FAST]) == 0
    return root / "tomos", ckpt, single


def _cli(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "--"] if torchrun \
        else ["-m"]
    return subprocess.run([sys.executable, *launcher, "cryocare_torch", *args], capture_output=True, text=True,
                          env=ENV, timeout=180)


def _assert_same(out: Path, single: Path, names: list[str] = NAMES) -> None:
    assert sorted(p.name for p in out.glob("*.mrc")) == [f"{n}_denoised.mrc" for n in names]
    for n in names:
        assert (out / f"{n}_denoised.mrc").read_bytes() == (single / f"{n}_denoised.mrc").read_bytes(), n


def _done_once(err: str, names: list[str]) -> None:
    for n in NAMES:
        assert len(re.findall(rf"\] {n}: done", err)) == (n in names), (n, err[-3000:])


def test_devices_cpu_cpu_matches_one_process_and_rerun_skips(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tomos, ckpt, single = data
    args = ["batch", str(tomos), "--model", str(ckpt), "--output-dir", str(tmp_path / "out"), "--devices", "cpu,cpu",
            *FAST]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same(tmp_path / "out", single)
    _done_once(r.stderr, NAMES)
    assert "[rank 0/2] [1/2] TS_00: done" in r.stderr and "[rank 1/2] [1/1] TS_01: done" in r.stderr
    assert "[rank 0/2] done 2, skipped 0 on cpu" in r.stdout and "[rank 1/2] done 1, skipped 0 on cpu" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"done 3 on 2 workers, skipped 0; outputs in {tmp_path / 'out'}"
    assert (tmp_path / "out" / "cryocare_batch" / "manifest-local.json").is_file()
    again = _cli(*args)
    assert again.returncode == 0 and "nothing to do" in again.stdout and "done" not in again.stderr


def test_torchrun_matches_one_process_and_rerun_does_only_the_missing_pair(
    data: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    tomos, ckpt, single = data
    out = tmp_path / "out"
    args = ["batch", str(tomos), "--model", str(ckpt), "--output-dir", str(out), "--device", "cpu", *FAST]
    r = _cli(*args, torchrun=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    _assert_same(out, single)
    _done_once(r.stderr, NAMES)
    assert "[rank 0/2] done 2, skipped 0" in r.stdout and "[rank 1/2] done 1, skipped 0" in r.stdout
    assert (out / "cryocare_batch" / "manifest-local.json").is_file()
    (out / "TS_01_denoised.mrc").unlink()  # rank 1's pair: only it is redone, by rank 1 alone
    again = _cli(*args, torchrun=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    _assert_same(out, single)
    _done_once(again.stderr, ["TS_01"])
    assert "[rank 0/2] done 0, skipped 2" in again.stdout and "[rank 1/2] done 1, skipped 0" in again.stdout


def test_predict_under_torchrun_env_restores_its_share(
    data: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tomos, ckpt, single = data
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    halves = [a for n in NAMES for a in ("--even", str(tomos / f"{n}_even.mrc"), "--odd", str(tomos / f"{n}_odd.mrc"))]
    outs = [a for n in NAMES for a in ("--output", str(tmp_path / f"{n}_denoised.mrc"))]
    assert main(["predict", "--model", str(ckpt), *halves, *outs, "--device", "cpu", *FAST]) == 0
    assert capsys.readouterr().out.strip() == f"[rank 1/2] wrote {tmp_path / 'TS_01_denoised.mrc'}"
    _assert_same(tmp_path, single, ["TS_01"])
    monkeypatch.setenv("RANK", "2")
    assert main(["predict", "--model", str(ckpt), *halves, *outs]) == 2  # RANK outside WORLD_SIZE


def test_torchrun_shares_follow_the_input_order_not_what_is_complete() -> None:
    """Another process may finish a pair before this one looks: the shares must not move."""
    items = [BatchItem(n, Path(f"{n}_e"), Path(f"{n}_o"), Path(f"{n}.mrc")) for n in NAMES + ["TS_03"]]
    seen_late = Manifest(Path("m.pt"), CryocareConfig(), items[1:], items[:1])  # TS_00 already written by rank 0
    assert own_items(seen_late, items, Shard(1, 2)) == ([0, 2], 0)  # TS_01, TS_03
    assert own_items(seen_late, items, Shard(0, 2)) == ([1], 1)  # TS_02; TS_00 counted as skipped
    assert parse_shard("1/3").take(7) == [1, 4]


def test_errors_are_one_line(data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tomos, ckpt, _ = data
    base = ["batch", str(tomos), "--model", str(ckpt), "--output-dir", str(tmp_path / "o")]
    for extra, code, text in [
        (["--devices", "cpu,cuda:99"], 7, "--devices cpu,cuda:99:"),
        (["--devices", "cpu,,cpu"], 2, "comma-separated"),
        (["--devices", "cpu,cpu", "--slurm"], 2, "cannot be combined"),
    ]:
        assert main([*base, *extra]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cryocare: error:") and text in err, err
    assert not (tmp_path / "o").exists()
    assert main(["batch-run", "--manifest", str(tmp_path / "m.json")]) == 2
    assert main(["batch-run", "--manifest", str(tmp_path / "m.json"), "--shard", "2/2"]) == 2
    assert "--shard '2/2'" in capsys.readouterr().err


def test_failed_or_interrupted_workers_are_reported(data: tuple[Path, Path, Path], tmp_path: Path) -> None:
    tomos, ckpt, single = data
    items = [BatchItem(n, tomos / f"{n}_even.mrc", tomos / f"{n}_odd.mrc", out / f"{n}_denoised.mrc")
             for n in NAMES for out in (tmp_path, single)]  # odd positions complete, even ones missing
    m = Manifest(ckpt, CryocareConfig(), items)
    with pytest.raises(WorkerError, match=r"3 of 6 outputs complete \(worker 1 \(cpu\) exit code 4") as exc:
        check_workers([0, 4], ["cpu", "cpu"], m)
    assert exc.value.exit_code == 4
    with pytest.raises(WorkerError, match="no worker failed") as exc:
        check_workers([0, 0], ["cpu", "cpu"], m)
    assert exc.value.exit_code == 1
    with pytest.raises(KeyboardInterrupt):
        check_workers([130, 0], ["cpu", "cpu"], m)
    assert check_workers([0], ["cpu"], Manifest(ckpt, CryocareConfig(), items[1::2])) == 3
