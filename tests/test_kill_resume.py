"""SIGKILL in the middle of training and of prediction (no clean-up possible), then resume / rerun.

* Nothing partial ever stands at an output path: checkpoints are complete and loadable, the tomogram
  is absent; the killed writer's hidden ``.NAME.HOST-PID.*.partial`` temporary is removed by the next run.
* ``train --resume`` ends with the weights and validation history of an uninterrupted run with the same
  seed. Measured on CPU fp32 (1 thread): bit-identical (max |diff| 0.0) wherever the kill lands, because
  batches depend only on (seed, epoch, step) and the optimiser, schedule and RNG states are restored;
  so the tolerance is 0.
* A rerun of ``predict`` writes the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from badfiles import noisy_pair
from cryocare_torch.cli.main import main
from cryocare_torch.io.atomic import remove_dead_partials, temporary_sibling
from cryocare_torch.train.checkpoint import read_checkpoint

TINY = ["--patch-size", "16", "--n-patches", "64", "--batch-size", "4", "--depth", "1", "--set", "model.n_first=4",
        "--precision", "fp32", "--threads", "1", "--seed", "5"]
TRAIN = [*TINY, "--epochs", "3",
         "--set", "train.checkpoint_every_minutes=0.0005"]  # last.pt every ~30 ms: many kill points between saves


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "wb")  # noqa: SIM115 - closed by the child's exit; a pipe could fill and stall the child
    return subprocess.Popen([sys.executable, "-m", "cryocare_torch.cli", *args], stdout=fh, stderr=subprocess.STDOUT)


def step_of(last: Path) -> int:
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True)["step"])
    except (OSError, RuntimeError, EOFError, KeyError):  # replaced while we read it
        return -1


def kill_training_at(args: list[str], model_dir: Path, target_step: int, log: Path, timeout: float = 240) -> int:
    """Start training, SIGKILL it once last.pt has reached ``target_step``; returns the step of last.pt."""
    proc = spawn(["train", *args, "--model-dir", str(model_dir)], log)
    t0 = time.monotonic()
    last = model_dir / "last.pt"
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if last.exists() and step_of(last) >= target_step:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"training ended before the kill (step target {target_step}): " \
                                               f"{log.read_text()[-500:]}"
    return step_of(last)


def assert_outputs_complete(model_dir: Path) -> None:
    """Whatever stands at an output path is complete (a temporary may stand beside it)."""
    for name in ("last.pt", "best.pt"):
        if (model_dir / name).exists():
            raw = read_checkpoint(model_dir / name)  # raises on a partial file
            assert set(raw["model_state"]) and raw["format_version"] == 1
    if (model_dir / "history.json").exists():
        import json

        json.loads((model_dir / "history.json").read_text())


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return noisy_pair(tmp_path_factory.mktemp("kill"), shape=(24, 48, 48), seed=3)


def test_training_killed_then_resumed_equals_uninterrupted(pair: tuple[Path, Path], tmp_path: Path) -> None:
    args = ["--even", str(pair[0]), "--odd", str(pair[1]), *TRAIN]
    assert main(["train", *args, "--model-dir", str(tmp_path / "ref")]) == 0
    ref = read_checkpoint(tmp_path / "ref" / "last.pt")
    total = int(ref["step"])
    assert ref["epoch"] == 3 and total >= 30

    seed = random.randrange(10**6)
    target = random.Random(seed).randrange(1, total - 2)
    killed = tmp_path / "killed"
    at = kill_training_at(args, killed, target, tmp_path / "kill.log")
    assert target <= at < total, f"kill seed {seed}"
    assert_outputs_complete(killed)

    proc = subprocess.run([sys.executable, "-m", "cryocare_torch.cli", "train", *args, "--model-dir", str(killed),
                           "--resume"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = read_checkpoint(killed / "last.pt")
    assert res["step"] == total and res["epoch"] == 3
    assert max_diff(ref["model_state"], res["model_state"]) == 0.0, f"killed at step {at} (seed {seed})"
    assert [h["val_loss"] for h in res["history"]] == [h["val_loss"] for h in ref["history"]]
    best_ref, best_res = read_checkpoint(tmp_path / "ref" / "best.pt"), read_checkpoint(killed / "best.pt")
    assert max_diff(best_ref["model_state"], best_res["model_state"]) == 0.0
    assert not list(killed.glob("*.partial")), "the killed run's temporary should be gone after the resume"


def test_prediction_killed_leaves_nothing_and_rerun_is_identical(pair: tuple[Path, Path], tmp_path: Path) -> None:
    e, o = noisy_pair(tmp_path / "big", shape=(64, 256, 256), seed=8)
    model = tmp_path / "model"
    assert main(["train", "--even", str(pair[0]), "--odd", str(pair[1]), "--model-dir", str(model), *TINY,
                 "--epochs", "1"]) == 0
    args = ["predict", "--model", str(model / "best.pt"), "--even", str(e), "--odd", str(o), "--tile-size", "32",
            "--threads", "1"]
    ref = tmp_path / "ref.mrc"
    assert main([*args, "--output", str(ref)]) == 0

    out = tmp_path / "out" / "restored.mrc"
    out.parent.mkdir()
    proc = spawn([*args, "--output", str(out)], tmp_path / "predict.log")
    t0 = time.monotonic()
    while proc.poll() is None and not list(out.parent.glob("*.partial")) and time.monotonic() - t0 < 120:
        time.sleep(0.005)
    time.sleep(random.uniform(0.2, 1.0))  # somewhere in the tiles
    assert proc.poll() is None, "prediction ended before the kill; use a larger volume"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = list(out.parent.glob("*.partial"))
    assert not out.exists() and len(left) == 1  # the killed writer could not remove its temporary
    assert left[0].name.startswith(f".{out.name}.") and f"-{proc.pid}." in left[0].name

    rerun = subprocess.run([sys.executable, "-m", "cryocare_torch.cli", *args, "--output", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert out.read_bytes() == ref.read_bytes()
    assert not list(out.parent.glob("*.partial"))


def test_remove_dead_partials_only_touches_dead_local_writers(tmp_path: Path) -> None:
    out = tmp_path / "x.mrc"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temporary_sibling(out)  # this process: alive
    host, pid = mine.name[len(".x.mrc."):].split(".")[0].rsplit("-", 1)
    assert int(pid) == os.getpid() and host.startswith(socket.gethostname()[:8].replace(".", "_"))
    gone = out.with_name(f".x.mrc.{host}-{dead.pid}.0badcafe.partial")
    remote = out.with_name(f".x.mrc.otherhost-{dead.pid}.0badcafe.partial")
    parent_alive = out.with_name(f".x.mrc.{host}-{os.getppid()}.0badcafe.partial")
    other_output = out.with_name(f".y.mrc.{host}-{dead.pid}.0badcafe.partial")
    for p in (mine, gone, remote, parent_alive, other_output):
        p.write_bytes(b"partial")
    assert remove_dead_partials(out) == [gone]
    assert all(p.exists() for p in (mine, remote, parent_alive, other_output)) and not gone.exists()
