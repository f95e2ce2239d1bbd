"""SLURM job arrays for a batch manifest: script, submission (sbatch or submitit), bounded waiting.

Task ``i`` of the array runs ``cryocare batch-run --manifest M --index i``. Waiting polls ``squeue``
(and ``sacct`` where accounting exists) with a deadline: it never relies on accounting, so a cancelled or
purged task cannot make it hang.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..config_runs import SlurmConfig
from ..errors import ClusterError, ConfigError
from ..logs import Log
from .shard_runs import run_from_manifest

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT", "ENDED"}


def cryocare_executable() -> str:
    """The ``cryocare`` of this environment (absolute), else ``python -m cryocare_torch.cli``."""
    beside = Path(sys.executable).with_name("cryocare")
    if beside.is_file():
        return shlex.quote(str(beside))
    found = shutil.which("cryocare")
    return shlex.quote(found) if found else f"{shlex.quote(sys.executable)} -m cryocare_torch.cli"


def array_spec(n_tasks: int, max_parallel: int | None = None) -> str:
    if n_tasks < 1:
        raise ConfigError("nothing to submit: every output is already complete (use --overwrite to redo them)")
    spec = "0" if n_tasks == 1 else f"0-{n_tasks - 1}"
    return f"{spec}%{max_parallel}" if max_parallel else spec


def render_script(manifest: Path, n_tasks: int, opts: SlurmConfig, log_dir: Path) -> str:
    """A plain sbatch script: one array task per manifest item, logs in ``log_dir``."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={opts.job_name}",
             f"#SBATCH --array={array_spec(n_tasks, opts.max_parallel)}",
             f"#SBATCH --output={log_dir.absolute()}/%x-%A_%a.out", "#SBATCH --ntasks=1"]
    for key, value in (("partition", opts.partition), ("account", opts.account), ("time", opts.time),
                       ("mem", opts.mem), ("cpus-per-task", opts.cpus), ("gpus", opts.gpus)):
        if value is not None:
            lines.append(f"#SBATCH --{key}={value}")
    lines += [f"#SBATCH {arg}" for arg in opts.sbatch_arg or []]
    exe = opts.executable or cryocare_executable()
    lines += ["", "# Written by 'cryocare batch --slurm'. Task i restores item i of the manifest; it is skipped",
              "# if its output is already complete, so the script can be resubmitted safely.", "set -eu",
              *(opts.setup or []),
              'echo "cryocare task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID} on $(hostname)"',
              f'exec {exe} batch-run --manifest {shlex.quote(str(manifest.absolute()))} '
              '--index "${SLURM_ARRAY_TASK_ID}"', ""]
    return "\n".join(lines)


def _run(cmd: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if shutil.which(cmd[0]) is None:
        raise ClusterError(f"'{cmd[0]}' not found on PATH; run on a SLURM login node, or write the script only "
                           "with --sbatch-only")
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"'{cmd[0]}' did not answer within {timeout:.0f} s; is slurmctld up?") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def submit_script(script: Path) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id."""
    res = _run(["sbatch", "--parsable", str(script)])
    if res.returncode != 0:
        why = _first_line(res.stderr)
        hint = ("; a job array may have at most MaxArraySize-1 tasks (see 'scontrol show config'): split the "
                "inputs into several batches" if "array" in why.lower() else "")
        raise ClusterError(f"sbatch refused the job: {why}{hint}; fix the options, or edit the script and submit "
                           "it with sbatch", script)
    return res.stdout.strip().split(";")[0]


def submit_submitit(manifest: Path, n_tasks: int, opts: SlurmConfig, log_dir: Path) -> str:
    """Submit the same array through submitit (optional extra ``cryocare-torch[cluster]``)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--submitit needs the optional extra: pip install 'cryocare-torch[cluster]'") from None
    ex = submitit.AutoExecutor(folder=str(log_dir), cluster="slurm")
    extra = {a[2:].split("=", 1)[0].replace("-", "_"): (a.split("=", 1) + [True])[1] for a in opts.sbatch_arg or []}
    params = {"slurm_partition": opts.partition, "slurm_time": opts.time, "slurm_mem": opts.mem,
              "cpus_per_task": opts.cpus, "slurm_account": opts.account, "slurm_gres": opts.gpus and f"gpu:{opts.gpus}",
              "slurm_array_parallelism": opts.max_parallel or n_tasks, "name": opts.job_name,
              "slurm_setup": opts.setup or None, "slurm_additional_parameters": extra or None}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    jobs = ex.map_array(run_task, [str(manifest)] * n_tasks, list(range(n_tasks)))
    return str(jobs[0].job_id).split("_")[0]


def run_task(manifest: str, index: int) -> int:
    """What a submitit task runs: the same as the sbatch script's ``cryocare batch-run --index``."""
    return run_from_manifest(Path(manifest), index=index)


def _expand(job: str, field_: str) -> list[int]:
    """Array indices in a squeue/sacct id: ``12_3``, ``12_[0-4%2]``, ``12_[1,3-5]``."""
    if not field_.startswith(f"{job}_"):
        return []
    part = field_[len(job) + 1:].strip("[]").split("%")[0]
    out: list[int] = []
    for chunk in filter(None, part.split(",")):
        a, _, b = chunk.partition("-")
        if a.isdigit() and (not b or b.isdigit()):
            out += list(range(int(a), int(b or a) + 1))
    return out


def task_states(job_id: str, n_tasks: int) -> dict[int, str]:
    """State of each array task: from squeue (live and recently ended), then sacct where accounting exists;
    a task the controller has forgotten and accounting does not know is ``ENDED``."""
    states: dict[int, str] = {}
    res = _run(["squeue", "-h", "-r", "-j", job_id, "--states=all", "-o", "%i|%T"], timeout=30)
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        jid, _, state = line.partition("|")
        for i in _expand(job_id, jid.strip()):
            states[i] = state.strip().split()[0] if state.strip() else "UNKNOWN"
    if len(states) < n_tasks and shutil.which("sacct"):
        acct = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"], timeout=30)
        for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
            jid, _, state = line.partition("|")
            for i in _expand(job_id, jid.strip()):
                states.setdefault(i, state.strip().split()[0] if state.strip() else "UNKNOWN")
    if res.returncode != 0 and not states:
        raise ClusterError(f"squeue failed for job {job_id}: {_first_line(res.stderr)}")
    return {i: states.get(i, "ENDED") for i in range(n_tasks)}


def wait(job_id: str, n_tasks: int, timeout_s: float, *, log: Log | None = None, poll_s: float = 0.5
         ) -> dict[int, str]:
    """Poll until every task has ended or ``timeout_s`` passed (then :class:`ClusterError`; the job keeps
    running). Polls every ``poll_s`` at first, then every tenth of the time waited (at most 30 s).
    Transient scheduler errors are retried until the deadline."""
    start = time.monotonic()
    deadline = start + timeout_s
    last, states, delay = "", {i: "UNKNOWN" for i in range(n_tasks)}, poll_s
    while True:
        try:
            states, error = task_states(job_id, n_tasks), ""
        except ClusterError as exc:
            error = f"; the last query failed: {exc}"
        summary = ", ".join(f"{s.lower()} {sum(v == s for v in states.values())}" for s in sorted(set(states.values())))
        if log and summary != last:
            log(f"job {job_id}: {summary}")
            last = summary
        if all(s in TERMINAL for s in states.values()):
            return states
        if time.monotonic() + delay > deadline:
            pending = sorted(i for i, s in states.items() if s not in TERMINAL)
            raise ClusterError(f"job {job_id} not finished after {timeout_s:.0f} s ({summary}; tasks {pending[:10]} "
                               f"still queued or running){error}; it keeps running: check with 'squeue -j {job_id}' "
                               "and rerun the same command later (complete outputs are skipped)")
        time.sleep(delay)
        delay = min(30.0, max(poll_s, 0.1 * (time.monotonic() - start)))  # gentle on slurmctld for long jobs
