"""The TensorFlow cryoCARE side of ``bench_vs_cryocare_tf.py``, and the child-process runner both sides use.

TF cryoCARE (cryoCARE_pip) runs from its own venv (``--tfvenv``) with ``TF_USE_LEGACY_KERAS=1``: extract ->
calibrate (2 training steps and 2 validation batches, to size epochs x steps to the wall-time budget, since
cryoCARE has no time budget of its own) -> train -> predict. Every step is a child process measured with
``os.wait4`` (wall, CPU, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOADS: list[tuple[str, float]] = []

# cryoCARE README (cryoCARE_pip) example settings; epochs/steps_per_epoch are fitted to the budget.
TF_README = {"patch_shape": 72, "num_slices": 1200, "split": 0.9, "tilt_axis": "Y", "n_normalization_samples": 500,
             "epochs": 100, "steps_per_epoch": 200, "batch_size": 16, "unet_kern_size": 3, "unet_n_depth": 3,
             "unet_n_first": 16, "learning_rate": 0.0004, "n_tiles": [1, 1, 1]}
TF_QUICK = {**TF_README, "patch_shape": 32, "num_slices": 40, "n_normalization_samples": 20, "batch_size": 4}

CALIBRATE = r'''
import json, math, sys, time
t0 = time.perf_counter()
from importlib.metadata import version
from csbdeep.models import Config
from cryocare.internals.CryoCARE import CryoCARE
from cryocare.internals.CryoCAREDataModule import CryoCARE_DataModule
c = json.load(open(sys.argv[1]))
dm = CryoCARE_DataModule()
dm.load(c["train_data"])
net = Config(axes="ZYXC", train_loss="mse", train_epochs=1, train_steps_per_epoch=1, train_batch_size=c["batch_size"],
             unet_kern_size=c["unet_kern_size"], unet_n_depth=c["unet_n_depth"], unet_n_first=c["unet_n_first"],
             train_tensorboard=False, train_learning_rate=c["learning_rate"])
model = CryoCARE(net, "calibration", basedir=None)
model.prepare_for_training()
ready = time.perf_counter() - t0
bs = c["batch_size"]
it = iter(dm.get_train_dataset().batch(bs))
steps = []
for _ in range(2):
    x, y = next(it)
    t = time.perf_counter(); model.keras_model.train_on_batch(x, y); steps.append(time.perf_counter() - t)
vals = []
vit = iter(dm.get_val_dataset().repeat().batch(bs))
for _ in range(2):
    x, y = next(vit)
    t = time.perf_counter(); model.keras_model.test_on_batch(x, y); vals.append(time.perf_counter() - t)
print("CALIBRATION " + json.dumps({
    "startup_s": ready, "steps_s": steps, "val_batches_s": vals, "n_val_batches": math.ceil(len(dm.val_dataset) / bs),
    "versions": {p: version(p) for p in ("cryoCARE", "tensorflow", "tf_keras", "csbdeep", "numpy")}}))
'''


def load_note(stage: str) -> None:
    LOADS.append((stage, os.getloadavg()[0]))


def run_child(cmd: list[str], log: Path, *, env: dict[str, str] | None = None, timeout_s: float) -> dict[str, Any]:
    """Run ``cmd`` (stdout+stderr to ``log``); wall, CPU (user+sys) and peak RSS of this child via wait4."""
    print("$ " + shlex.join(cmd), file=sys.stderr, flush=True)
    load_note(log.stem)
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        killed = False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not killed and time.perf_counter() - t0 > timeout_s:
                proc.kill()
                killed = True
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    load_note(log.stem + " end")
    res = {"rc": proc.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024,
           "killed": killed, "log": str(log)}
    print(f"  rc {res['rc']}, {wall:.0f} s wall, {res['cpu_s']:.0f} s CPU, peak RSS {res['rss_mb']:.0f} MB",
          file=sys.stderr, flush=True)
    return res


def tail(path: Path, n: int = 6) -> str:
    lines = [ln for ln in path.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def plan_tf(cal: dict[str, Any], budget_s: float, readme: dict[str, Any]) -> tuple[int, int, float]:
    """Epochs x steps_per_epoch whose fit (steps + per-epoch validation) takes about ``budget_s``."""
    step = cal["steps_s"][-1]
    first_extra = max(0.0, cal["steps_s"][0] - step)
    val = cal["n_val_batches"] * cal["val_batches_s"][-1]
    s_max, e_max = readme["steps_per_epoch"], readme["epochs"]
    usable = max(budget_s - first_extra, step)
    epochs = max(1, min(e_max, math.ceil(usable / (s_max * step + val))))
    steps = max(1, min(s_max, int((usable / epochs - val) / step)))
    return epochs, steps, first_extra + epochs * (steps * step + val)


def run_tf(args: argparse.Namespace, even: Path, odd: Path, out: Path) -> dict[str, Any]:
    py = str(args.tfvenv / "bin" / "python")
    scripts = args.tfvenv / "bin"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cfg = TF_QUICK if args.quick else TF_README
    budget = args.minutes * 60
    res: dict[str, Any] = {"ok": False, "settings": cfg}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    p = cfg["patch_shape"]
    # gpu_id: without it cryoCARE 0.2.2's set_gpu_id() raises UnboundLocalError on a machine without GPUs;
    # with 0 it prints "GPU 0 not found" and runs on the CPU.
    extract = {"even": [str(even)], "odd": [str(odd)], "patch_shape": [p, p, p], "num_slices": cfg["num_slices"],
               "split": cfg["split"], "tilt_axis": cfg["tilt_axis"],
               "n_normalization_samples": cfg["n_normalization_samples"], "path": str(out / "train_data"),
               "overwrite": True}
    train = {"train_data": str(out / "train_data"), "batch_size": cfg["batch_size"],
             "unet_kern_size": cfg["unet_kern_size"], "unet_n_depth": cfg["unet_n_depth"],
             "unet_n_first": cfg["unet_n_first"], "learning_rate": cfg["learning_rate"], "model_name": "cryocare_tf",
             "path": str(out / "model"), "gpu_id": 0}
    predict = {"path": str(out / "model" / "cryocare_tf.tar.gz"), "even": str(even), "odd": str(odd),
               "n_tiles": cfg["n_tiles"], "output": str(out / "denoised"), "overwrite": True, "gpu_id": 0}
    (out / "extract.json").write_text(json.dumps(extract, indent=1))
    (out / "calibrate.py").write_text(CALIBRATE)

    def stage(name: str, argv: list[str], timeout_s: float) -> dict[str, Any] | None:
        r = run_child([py, *argv], out / f"{name}.log", env=env, timeout_s=timeout_s)
        res[name] = r
        if r["rc"] != 0:
            res["failed"] = f"{name} exited with {r['rc']}{' (killed at time limit)' if r['killed'] else ''}: " + \
                tail(out / f"{name}.log")
            print("TF cryoCARE " + res["failed"], file=sys.stderr)
            return None
        return r

    if not stage("extract", [str(scripts / "cryoCARE_extract_train_data.py"), "--conf", str(out / "extract.json")],
                 1800):
        return res
    (out / "calibrate.json").write_text(json.dumps({**train, "epochs": 1, "steps_per_epoch": 1}, indent=1))
    if not stage("calibrate", [str(out / "calibrate.py"), str(out / "calibrate.json")], 1800):
        return res
    line = [ln for ln in (out / "calibrate.log").read_text().splitlines() if ln.startswith("CALIBRATION ")][-1]
    cal = json.loads(line.split(" ", 1)[1])
    epochs, steps, expected = plan_tf(cal, budget, cfg)
    res.update(calibration=cal, epochs=epochs, steps_per_epoch=steps, expected_fit_s=expected)
    print(f"TF cryoCARE: step {cal['steps_s'][-1]:.1f} s, validation {cal['n_val_batches']} x "
          f"{cal['val_batches_s'][-1]:.1f} s -> {epochs} epochs x {steps} steps (~{expected:.0f} s)", file=sys.stderr)
    (out / "train.json").write_text(json.dumps({**train, "epochs": epochs, "steps_per_epoch": steps}, indent=1))
    if not stage("train", [str(scripts / "cryoCARE_train.py"), "--conf", str(out / "train.json")],
                 3 * budget + 1200):
        return res
    (out / "predict.json").write_text(json.dumps(predict, indent=1))
    if not stage("predict", [str(scripts / "cryoCARE_predict.py"), "--conf", str(out / "predict.json")], 3600):
        return res
    res["output"] = str(out / "denoised" / even.name)
    res["ok"] = Path(res["output"]).is_file()
    return res
