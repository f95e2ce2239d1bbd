"""SLURM job arrays: script content, submission and bounded waiting (with fake and with real SLURM).

The real-SLURM tests start a single-node SLURM on localhost with bench/slurm_local.sh (needs root and
the Debian package slurm-wlm) and are skipped with the reason when it cannot start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cryocare_torch.cli.main import main
from cryocare_torch.config_runs import SlurmConfig
from cryocare_torch.errors import ClusterError, ConfigError
from cryocare_torch.io.mrc import open_memmap, write_volume
from cryocare_torch.workflows.slurm import array_spec, render_script, submit_script, task_states, wait

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (16, 32, 32)


def _tomos(folder: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        sig = rng.normal(size=SHAPE).astype(np.float32)
        for half in ("even", "odd"):
            write_volume(folder / f"TS_{k:02d}_{half}.mrc", sig + rng.normal(size=SHAPE).astype(np.float32),
                         voxel_size=10.0)
    return folder


def _fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scripts: str) -> None:
    """Put shell scripts named like SLURM clients first (and alone) on PATH."""
    fake = tmp_path / "fakebin"
    fake.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))


# ---------------------------------------------------------------- script

def test_array_spec() -> None:
    assert array_spec(1) == "0" and array_spec(3) == "0-2" and array_spec(300, 8) == "0-299%8"
    with pytest.raises(ConfigError):
        array_spec(0)


def test_render_script(tmp_path: Path) -> None:
    opts = SlurmConfig(partition="gpu", time="2:00:00", mem="32G", gpus="a100:1", cpus=8, max_parallel=4,
                       account="lab", sbatch_arg=["--qos=high"], setup=["module load cuda"], executable="/opt/cryocare")
    text = render_script(tmp_path / "m.json", 3, opts, tmp_path / "logs")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in ("#SBATCH --array=0-2%4", f"#SBATCH --output={tmp_path}/logs/%x-%A_%a.out", "#SBATCH --partition=gpu",
                 "#SBATCH --time=2:00:00", "#SBATCH --mem=32G", "#SBATCH --gpus=a100:1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --account=lab", "#SBATCH --qos=high", "#SBATCH --ntasks=1", "module load cuda"):
        assert want in lines, want
    assert lines[-1] == f'exec /opt/cryocare batch-run --manifest {tmp_path}/m.json --index "${{SLURM_ARRAY_TASK_ID}}"'
    assert sum(line.startswith("#SBATCH --array") for line in lines) == 1
    script = tmp_path / "s.sh"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    default = render_script(tmp_path / "m.json", 1, SlurmConfig(), tmp_path)
    assert "#SBATCH --array=0\n" in default and "--partition" not in default and "/cryocare" in default


@pytest.mark.parametrize("bad", [{"time": "2h"}, {"mem": "lots"}, {"cpus": 0}, {"sbatch_arg": ["qos=high"]},
                                 {"partition": "a b"}])
def test_invalid_options(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SlurmConfig(**bad)


def test_cli_sbatch_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tomos = _tomos(tmp_path / "tomos")
    (tmp_path / "best.pt").write_bytes(b"x")
    out = tmp_path / "out"
    args = ["batch", str(tomos), "--model", str(tmp_path / "best.pt"), "--output-dir", str(out), "--sbatch-only",
            "--partition", "gpu", "--gpus", "1", "--max-parallel", "2", "--time", "2:00:00", "--mem", "16G",
            "--sbatch-arg=--qos=high", "--setup", "module load cuda"]
    assert main(args) == 0
    scripts = sorted((out / "cryocare_batch").glob("batch-*.sbatch"))
    assert len(scripts) == 1 and "sbatch " in capsys.readouterr().out
    text = scripts[0].read_text()
    assert "#SBATCH --array=0-2%2" in text and "#SBATCH --qos=high" in text and "module load cuda" in text
    assert (out / "cryocare_batch" / "logs").is_dir()
    write_volume(out / "TS_01_denoised.mrc", np.zeros(SHAPE, np.float32))  # complete: one task less
    time.sleep(1.1)  # new time stamp -> new script name
    assert main(args) == 0
    newest = sorted((out / "cryocare_batch").glob("batch-*.sbatch"), key=lambda p: p.stat().st_mtime)[-1]
    assert "#SBATCH --array=0-1%2" in newest.read_text()
    assert main([*args[:-2], "--time", "2h"]) == 2
    assert "--time" in capsys.readouterr().err


# ---------------------------------------------------------------- submission and waiting (fake clients)

def test_submit_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\n")
    _fake_bin(tmp_path, monkeypatch)
    with pytest.raises(ClusterError, match="'sbatch' not found"):
        submit_script(script)
    _fake_bin(tmp_path, monkeypatch, sbatch='echo "sbatch: error: invalid partition specified: foo" >&2; exit 1')
    with pytest.raises(ClusterError, match="invalid partition"):
        submit_script(script)
    _fake_bin(tmp_path, monkeypatch, sbatch='echo "123;cluster"')
    assert submit_script(script) == "123"


def test_wait_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_bin(tmp_path, monkeypatch, squeue='echo "5_0|RUNNING"; echo "5_[1-2%1]|PENDING"')
    assert task_states("5", 3) == {0: "RUNNING", 1: "PENDING", 2: "PENDING"}
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="not finished after"):
        wait("5", 3, timeout_s=1.0, poll_s=0.1)
    assert time.monotonic() - t0 < 5
    # the controller cannot be reached: retried until the deadline, then reported
    _fake_bin(tmp_path, monkeypatch, squeue='echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; '
                                           "exit 1")
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="Unable to contact"):
        wait("5", 3, timeout_s=1.0, poll_s=0.1)
    assert time.monotonic() - t0 < 5


def test_wait_without_accounting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks the controller has purged and no sacct knows about count as ended (no endless wait)."""
    _fake_bin(tmp_path, monkeypatch, squeue='echo "7_1|CANCELLED"')
    assert wait("7", 3, timeout_s=5, poll_s=0.1) == {0: "ENDED", 1: "CANCELLED", 2: "ENDED"}
    _fake_bin(tmp_path, monkeypatch, squeue="true", sacct='echo "7_0|COMPLETED"; echo "7_2|FAILED"')
    assert task_states("7", 3) == {0: "COMPLETED", 1: "ENDED", 2: "FAILED"}


# ---------------------------------------------------------------- real SLURM

@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A real SLURM on localhost (bench/slurm_local.sh); yields the environment for its clients."""
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing): "
                    "apt-get install -y --no-install-recommends slurm-wlm")
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (SlurmUser=root)")
    state = tmp_path_factory.mktemp("slurm")
    script = ROOT / "bench" / "slurm_local.sh"
    env = {**os.environ, "SLURM_LOCAL_TIMEOUT": "60"}
    try:
        res = subprocess.run(["bash", str(script), "start", str(state)], capture_output=True, text=True, env=env,
                             timeout=120)
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=60)
        pytest.skip("local SLURM did not start within 120 s")
    if res.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=60)
        pytest.skip(f"local SLURM did not start: {res.stderr.strip().splitlines()[-1:]}")
    try:
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "OMP_NUM_THREADS": "1"}
    finally:
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small pairs and a tiny model trained on one of them with 'cryocare train'."""
    train = pytest.importorskip("cryocare_torch.train")
    if not hasattr(train, "train"):
        pytest.skip("cryocare_torch.train.train is not available yet")
    root = tmp_path_factory.mktemp("batch")
    _tomos(root / "tomos")
    res = _cli(root, os.environ, "train", "--even", "tomos/TS_00_even.mrc", "--odd", "tomos/TS_00_odd.mrc",
               "--model-dir", "model", "--epochs", "2", "--patch-size", "16", "--n-patches", "16", "--set",
               "model.n_first=4", "--threads", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    return root


def _cli(cwd: Path, env: dict, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cryocare_torch.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def _data(path: Path) -> bytes:
    arr, _ = open_memmap(path)
    return bytes(np.ascontiguousarray(arr).tobytes())


def _batch(root: Path, env: dict, out: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(root, env, "batch", "tomos", "--model", "model/best.pt", "--output-dir", out, "--threads", "1",
                *extra)


@pytest.mark.parametrize("backend", ["sbatch", "submitit"])
def test_real_slurm_array_matches_local(slurm_env: dict, trained: Path, backend: str) -> None:
    if backend == "submitit":
        pytest.importorskip("submitit")
    local = _batch(trained, slurm_env, "out_local") if not (trained / "out_local").exists() else None
    assert local is None or local.returncode == 0, local.stderr[-2000:]
    out = f"out_{backend}"
    t0 = time.monotonic()
    res = _batch(trained, slurm_env, out, "--cpus", "1", "--wait-minutes", "5",
                 "--slurm" if backend == "sbatch" else "--submitit")
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert res.stdout.count("COMPLETED") == 3 and "3 of 3 outputs complete" in res.stdout
    for k in range(3):
        name = f"TS_{k:02d}_denoised.mrc"
        assert _data(trained / out / name) == _data(trained / "out_local" / name), name
    print(f"{backend}: 3-task array submitted, run and checked in {elapsed:.1f} s")
    again = _batch(trained, slurm_env, out, "--slurm")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_real_slurm_wait_bounded_then_cancelled(slurm_env: dict, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A held job times the wait out (the job stays queued); once cancelled, every task reports CANCELLED."""
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    script = tmp_path / "held.sh"
    script.write_text(render_script(tmp_path / "m.json", 2, SlurmConfig(sbatch_arg=["--hold"]), tmp_path))
    job = submit_script(script)
    try:
        t0 = time.monotonic()
        with pytest.raises(ClusterError, match="not finished"):
            wait(job, 2, timeout_s=2, poll_s=0.2)
        assert time.monotonic() - t0 < 10
    finally:
        subprocess.run(["scancel", job], env=slurm_env, timeout=30, check=False)
    assert wait(job, 2, timeout_s=30, poll_s=0.2) == {0: "CANCELLED", 1: "CANCELLED"}


def test_cli_batch_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    tomos = _tomos(tmp_path / "tomos")
    (tmp_path / "best.pt").write_bytes(b"x")
    out = tmp_path / "out"
    assert main(["batch", str(tomos), "--model", str(tmp_path / "best.pt"), "--output-dir", str(out),
                 "--sbatch-only"]) == 0
    manifest = str(next((out / "cryocare_batch").glob("manifest-*.json")))
    write_volume(out / "TS_02_denoised.mrc", np.zeros(SHAPE, np.float32))
    capsys.readouterr()
    assert main(["batch-status", "--manifest", manifest]) == 0
    assert "1 of 3 outputs complete" in capsys.readouterr().out
    _fake_bin(tmp_path, monkeypatch, squeue='echo "9_0|COMPLETED"; echo "9_1|FAILED"; echo "9_2|COMPLETED"')
    assert main(["batch-status", "--manifest", manifest, "--job", "9"]) == 8  # finished, but outputs missing
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "2 of 3 outputs are not complete" in captured.err
