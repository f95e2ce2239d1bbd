"""Fault injection: SIGKILL ``cryocare train`` and ``cryocare predict`` at random points, recover, compare.

Training: each trial starts a fresh run (tiny U-Net, fp32, 1 thread, ``last.pt`` every ~30 ms), kills it
with SIGKILL after a random delay drawn over the training time of an uninterrupted reference run, then
runs ``--resume`` to the end and compares the final weights (``last.pt`` and ``best.pt``) and the
validation history with the reference. Prediction: each trial kills ``cryocare predict`` after a random
delay drawn over the reference's prediction time, reruns the same command and compares the bytes.

After every kill the output paths are inspected: a checkpoint or history standing there must load
completely, a tomogram must not stand there at all; anything else counts as a partial file. Hidden
temporaries (``.NAME.HOST-PID.*.partial``, which a SIGKILLed process cannot remove) are counted after
the kill and after recovery (the next run removes those of dead writers).

    python bench/fault_injection.py --n-train 10 --n-predict 10 --out bench/out/faults
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.errors import CryocareError
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.train.checkpoint import read_checkpoint
from cryocare_torch.workflows.batch import output_state

TINY = ["--patch-size", "16", "--n-patches", "64", "--batch-size", "4", "--depth", "1", "--set", "model.n_first=4",
        "--precision", "fp32", "--threads", "1", "--seed", "5"]
TRAIN = [*TINY, "--epochs", "3", "--set", "train.checkpoint_every_minutes=0.0005"]  # last.pt every ~30 ms
CHECKPOINTS = ("last.pt", "best.pt")


def cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    fh = open(log, "ab")  # noqa: SIM115 - the child holds it; a pipe could fill and stall the child
    return subprocess.Popen([sys.executable, "-m", "cryocare_torch.cli", *args], stdout=fh, stderr=subprocess.STDOUT)


def run(args: list[str], log: Path) -> float:
    t0 = time.monotonic()
    proc = cli(args, log)
    if proc.wait() != 0:
        raise SystemExit(f"cryocare {' '.join(args)} failed; see {log}")
    return time.monotonic() - t0


def noisy_pair(folder: Path, shape: tuple[int, int, int], seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sig = rng.normal(size=shape).astype(np.float32)
    return tuple(write_volume(folder / f"t_{h}.mrc", sig + rng.normal(size=shape).astype(np.float32),  # type: ignore
                              voxel_size=10.0, overwrite=True) for h in ("even", "odd"))


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial")) if folder.exists() else []


def partial_checkpoint_files(model_dir: Path) -> list[str]:
    bad = []
    for name in CHECKPOINTS:
        if (model_dir / name).exists():
            try:
                read_checkpoint(model_dir / name)
            except CryocareError as exc:
                bad.append(f"{name}: {exc}")
    if (model_dir / "history.json").exists():
        try:
            json.loads((model_dir / "history.json").read_text())
        except ValueError as exc:
            bad.append(f"history.json: {exc}")
    return bad


def kill_after(args: list[str], delay: float, ready: Callable[[], bool], log: Path) -> tuple[bool, float]:
    """Start, wait until ``ready()`` (a first checkpoint / the output's temporary exists), wait ``delay`` s, SIGKILL.
    Returns (killed before it exited, seconds after it was ready)."""
    proc = cli(args, log)
    while proc.poll() is None and not ready():
        time.sleep(0.002)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(0.002)
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive and proc.returncode == -signal.SIGKILL, time.monotonic() - t0


def work_window(args: list[str], ready: Callable[[], bool], done: Callable[[], bool], log: Path) -> float:
    """Seconds from ``ready()`` to ``done()`` (the work proper, without start-up and interpreter exit)."""
    proc = cli(args, log)
    while proc.poll() is None and not ready():
        time.sleep(0.002)
    t0 = time.monotonic()
    while proc.poll() is None and not done():
        time.sleep(0.01)
    t = time.monotonic() - t0
    proc.wait()
    return t


def weights_diff(a: Path, b: Path) -> float:
    sa, sb = read_checkpoint(a)["model_state"], read_checkpoint(b)["model_state"]
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def train_faults(work: Path, n: int, rng: random.Random) -> dict:
    work.mkdir(parents=True)
    even, odd = noisy_pair(work / "data", (24, 48, 48), 3)
    args = ["train", "--even", str(even), "--odd", str(odd), *TRAIN]
    ref = work / "ref"
    t_ref = run([*args, "--model-dir", str(ref)], work / "ref.log")
    raw_ref = read_checkpoint(ref / "last.pt")
    # the training proper: from the first last.pt to the end (the process start-up is not worth killing)
    probe = work / "probe"

    def steps_done() -> bool:  # the last epoch's history entry (cheap to poll: no competition for the CPU)
        try:
            return len(json.loads((probe / "history.json").read_text())) >= len(raw_ref["history"])
        except (OSError, ValueError):
            return False

    t_train = work_window([*args, "--model-dir", str(probe)], (probe / "last.pt").exists, steps_done,
                          work / "probe.log")
    shutil.rmtree(probe)
    trials = []
    for i in range(n):
        d = work / f"trial_{i:02d}"
        delay = rng.uniform(0.0, t_train)
        killed, at = kill_after([*args, "--model-dir", str(d)], delay, (d / "last.pt").exists,
                                work / f"trial_{i:02d}.log")
        step = int(read_checkpoint(d / "last.pt")["step"]) if (d / "last.pt").exists() else None
        partial = partial_checkpoint_files(d)
        temps_after_kill = len(temporaries(d))
        if killed:
            run([*args, "--model-dir", str(d), "--resume"], work / f"trial_{i:02d}.log")
        raw = read_checkpoint(d / "last.pt")
        trials.append({
            "delay_s": round(at, 3), "killed": killed, "step_at_kill": step, "partial_at_outputs": partial,
            "temporaries_after_kill": temps_after_kill, "temporaries_after_resume": len(temporaries(d)),
            "completed": raw["epoch"] == raw_ref["epoch"] and raw["step"] == raw_ref["step"],
            "max_abs_diff_last": weights_diff(ref / "last.pt", d / "last.pt"),
            "max_abs_diff_best": weights_diff(ref / "best.pt", d / "best.pt"),
            "val_history_equal": [h["val_loss"] for h in raw["history"]] == [h["val_loss"] for h in raw_ref["history"]],
        })
        print(f"train {i}: {trials[-1]}", flush=True)
    return {"reference_s": round(t_ref, 1), "training_s": round(t_train, 2), "total_steps": raw_ref["step"],
            "trials": trials}


def predict_faults(work: Path, n: int, rng: random.Random) -> dict:
    work.mkdir(parents=True)
    even, odd = noisy_pair(work / "pdata", (24, 48, 48), 4)
    model = work / "model"
    run(["train", "--even", str(even), "--odd", str(odd), "--model-dir", str(model), *TINY, "--epochs", "1"],
        work / "model.log")
    big_e, big_o = noisy_pair(work / "big", (48, 160, 160), 8)
    args = ["predict", "--model", str(model / "best.pt"), "--even", str(big_e), "--odd", str(big_o), "--tile-size",
            "32", "--threads", "1"]
    ref = work / "ref.mrc"
    t_ref = run([*args, "--output", str(ref)], work / "pref.log")
    ref_bytes, ref_arr = ref.read_bytes(), read_volume(ref)[0]
    probe = work / "probe"
    probe.mkdir()
    t_pred = work_window([*args, "--output", str(probe / "p.mrc")], lambda: bool(temporaries(probe)),
                         (probe / "p.mrc").exists, work / "pprobe.log")
    shutil.rmtree(probe)
    trials = []
    for i in range(n):
        d = work / f"ptrial_{i:02d}"
        d.mkdir()
        out = d / "restored.mrc"
        delay = rng.uniform(0.0, t_pred)
        killed, at = kill_after([*args, "--output", str(out)], delay, lambda d=d: bool(temporaries(d)),
                                work / f"ptrial_{i:02d}.log")
        # a file at the output path must be the complete result (the kill came after the rename)
        written = out.exists()
        partial = written and output_state(out, ref_arr.shape) != "complete"
        temps_after_kill = len(temporaries(d))
        if killed and not written:
            run([*args, "--output", str(out)], work / f"ptrial_{i:02d}.log")
        trials.append({
            "delay_s": round(at, 3), "killed": killed, "killed_after_rename": killed and written,
            "partial_at_output": partial,
            "temporaries_after_kill": temps_after_kill, "temporaries_after_rerun": len(temporaries(d)),
            "completed": out.exists(), "bytes_equal": out.read_bytes() == ref_bytes,
            "max_abs_diff": float(np.abs(read_volume(out)[0] - ref_arr).max()),
        })
        print(f"predict {i}: {trials[-1]}", flush=True)
    return {"reference_s": round(t_ref, 1), "predict_s": round(t_pred, 2), "trials": trials}


def summary(res: dict) -> str:
    tr, pr = res["train"]["trials"], res["predict"]["trials"]
    ktr, kpr = [t for t in tr if t["killed"]], [t for t in pr if t["killed"]]
    lines = [
        f"training: {len(ktr)} SIGKILLs injected ({len(tr) - len(ktr)} trials finished before their kill time), "
        f"{sum(t['completed'] for t in ktr)} resumed runs completed; killed at steps "
        f"{sorted(t['step_at_kill'] for t in ktr if t['step_at_kill'] is not None)} of {res['train']['total_steps']}",
        f"  max |weights - uninterrupted|: last.pt {max((t['max_abs_diff_last'] for t in ktr), default=0):.3g}, "
        f"best.pt {max((t['max_abs_diff_best'] for t in ktr), default=0):.3g}; validation history identical in "
        f"{sum(t['val_history_equal'] for t in ktr)}/{len(ktr)}",
        f"  partial files at output paths: {sum(len(t['partial_at_outputs']) for t in ktr)}; kills that left a hidden "
        f"temporary (killed while saving): {sum(t['temporaries_after_kill'] > 0 for t in ktr)}, temporaries left after "
        f"--resume: {sum(t['temporaries_after_resume'] for t in ktr)}",
        f"prediction: {len(kpr)} SIGKILLs injected ({len(pr) - len(kpr)} finished first, "
        f"{sum(t['killed_after_rename'] for t in kpr)} after the output was complete), "
        f"{sum(t['completed'] for t in kpr)} reruns completed, byte-identical to the uninterrupted output in "
        f"{sum(t['bytes_equal'] for t in kpr)}/{len(kpr)}, "
        f"max |diff| {max((t['max_abs_diff'] for t in kpr), default=0):.3g}",
        f"  partial files at the output path: {sum(t['partial_at_output'] for t in kpr)}; hidden temporaries after the "
        f"kill: {sum(t['temporaries_after_kill'] for t in kpr)}, after the rerun: "
        f"{sum(t['temporaries_after_rerun'] for t in kpr)}",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=10)
    ap.add_argument("--n-predict", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/out/faults"))
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    a.out.mkdir(parents=True)
    rng = random.Random(a.seed)
    torch.set_num_threads(1)
    t0 = time.monotonic()
    res = {"train": train_faults(a.out / "train", a.n_train, rng),
           "predict": predict_faults(a.out / "predict", a.n_predict, rng)}
    res["wall_s"] = round(time.monotonic() - t0, 1)
    (a.out / "faults.json").write_text(json.dumps(res, indent=2) + "\n")
    print(summary(res))
    print(f"wall time {res['wall_s']} s; details in {a.out / 'faults.json'}")


if __name__ == "__main__":
    main()
