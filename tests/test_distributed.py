"""DistributedDataParallel training under ``torchrun`` (gloo, 2 CPU processes) against a single process.

The 2-process run draws the same global batches (each process trains on half of each) and DDP averages
the two half-batch gradients, so it computes the single-process step up to the order of floating-point
sums (the weight gradients and the validation sums are added up in two parts, then all-reduced).
Measured on CPU fp32 after 60 steps: max |weight difference| 6e-8, validation loss difference 5e-8
(relative); the tolerance 1e-5 leaves a wide margin for other CPUs while a real difference (a wrong
batch split, a missing gradient average, a rank training on other samples) changes the weights by
1e-3 or more after a few steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.cli.main import main
from cryocare_torch.errors import ConfigError
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.patches import PairStats, PatchPairs
from cryocare_torch.train.batches import train_batches, val_batches
from cryocare_torch.train.distributed import preflight

STEPS, EPOCHS = 30, 2
TOL = 1e-5  # reduction order only; see the module docstring
ARGS = ["--patch-size", "16", "--n-patches", "48", "--batch-size", "4", "--depth", "1", "--set", "model.n_first=4",
        "--precision", "fp32", "--threads", "1", "--seed", "5", "--device", "cpu", "--epochs", str(EPOCHS),
        "--set", f"train.steps_per_epoch={STEPS}"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(16, 48, 48)).astype(np.float32)
    even = write_volume(d / "e.mrc", sig + rng.normal(size=sig.shape).astype(np.float32), voxel_size=10.0)
    odd = write_volume(d / "o.mrc", sig + rng.normal(size=sig.shape).astype(np.float32), voxel_size=10.0)
    return even, odd


def train_args(pair: tuple[Path, Path], model_dir: Path, *extra: str) -> list[str]:
    return ["train", "--even", str(pair[0]), "--odd", str(pair[1]), "--model-dir", str(model_dir), *ARGS, *extra]


@pytest.fixture(scope="module")
def single(pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The single-process reference run (in this process)."""
    model_dir = tmp_path_factory.mktemp("single") / "model"
    assert main(train_args(pair, model_dir)) == 0
    return torch.load(model_dir / "last.pt", map_location="cpu", weights_only=True)


def torchrun(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``torchrun --standalone --nproc-per-node 2 -m -- cryocare_torch ARGS`` (the '--' keeps torchrun's
    own option parser from reading ``--even`` as an abbreviation of its ``--event-log-handler``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "--", "cryocare_torch", *args]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def assert_matches(ddp: dict, ref: dict) -> None:
    assert ddp["step"] == ref["step"] == EPOCHS * STEPS
    assert max_diff(ddp["model_state"], ref["model_state"]) < TOL
    for h_ddp, h_ref in zip(ddp["history"], ref["history"], strict=True):
        assert h_ddp["val_loss"] == pytest.approx(h_ref["val_loss"], rel=TOL)
        assert h_ddp["train_loss"] == pytest.approx(h_ref["train_loss"], rel=TOL)


def test_rank_shares_concatenate_to_the_global_batch() -> None:
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(8, 24, 24)).astype(np.float32)
    index = np.array([[0, 0, y, x] for y in range(0, 16, 4) for x in range(0, 16, 4)])
    data = PatchPairs([(vol, vol[::-1].copy())], [PairStats(0.0, 1.0, 1)], index, (8, 8, 8), 3)
    kw = {"epoch": 1, "batch_size": 4, "steps": 5, "seed": 3, "start": 1}
    whole = list(train_batches(data, **kw))
    parts = [list(train_batches(data, **kw, part=(r, 2))) for r in range(2)]
    for k, (inp, tgt) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][k][0], parts[1][k][0]]), inp)  # same samples, same flips/swaps
        assert torch.equal(torch.cat([parts[0][k][1], parts[1][k][1]]), tgt)
    val = [t for r in range(2) for _, t in val_batches(data, 3, (r, 2))]
    assert sum(len(t) for t in val) == len(data)


def test_batch_must_split_over_the_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="not divisible by the 2 torchrun processes"):
        preflight("cpu", 5)
    assert preflight("cpu", 4).type == "cpu"


def test_two_processes_match_one(pair: tuple[Path, Path], single: dict, tmp_path: Path) -> None:
    log = tmp_path / "ddp.log"
    proc = torchrun(train_args(pair, tmp_path / "model"), log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-2000:]
    out = log.read_text()
    ddp = torch.load(tmp_path / "model" / "last.pt", map_location="cpu", weights_only=True)
    assert_matches(ddp, single)
    assert out.count("best model:") == 1 and out.count(f"epoch {EPOCHS}/{EPOCHS}: train") == 1  # rank 0 only
    assert "distributed training: 2 processes (gloo)" in out
    assert len(json.loads((tmp_path / "model" / "history.json").read_text())) == EPOCHS


def test_sigterm_and_resume_under_ddp(pair: tuple[Path, Path], single: dict, tmp_path: Path) -> None:
    model_dir, last = tmp_path / "model", tmp_path / "model" / "last.pt"
    every = ["--set", "train.checkpoint_every_minutes=0.0005"]  # last.pt every ~30 ms: shows the run is going
    proc = torchrun(train_args(pair, model_dir, *every), tmp_path / "killed.log")
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 240:
        try:
            if int(torch.load(last, map_location="cpu", weights_only=True)["step"]) >= 4:
                proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
                break
        except (OSError, RuntimeError, EOFError, KeyError):  # not there yet, or replaced while we read it
            pass
        time.sleep(0.01)
    proc.wait(timeout=120)
    out = (tmp_path / "killed.log").read_text()
    assert proc.returncode != 0 and out.count("stopped by signal 15") == 1, out[-2000:]  # agreed; rank 0 wrote
    stopped = int(torch.load(last, map_location="cpu", weights_only=True)["step"])
    assert 4 <= stopped < EPOCHS * STEPS
    proc = torchrun(train_args(pair, model_dir, *every, "--resume"), tmp_path / "resumed.log")
    assert proc.wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    assert_matches(torch.load(last, map_location="cpu", weights_only=True), single)  # continued, same result
