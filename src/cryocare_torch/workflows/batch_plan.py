"""``cryocare batch`` as a plan and a runner: :func:`plan_batch` checks the options and decides where the batch
runs (:class:`BatchMode`); :func:`run_batch` runs the plan (here in turn, on several devices, as this torchrun
process's share, or as a SLURM job array); :func:`report_outputs` is ``cryocare batch-status``.
Each run prints its summary line on stdout; progress goes to ``log``."""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import CryocareConfig
from ..config_runs import SlurmConfig
from ..errors import ClusterError, ConfigError
from ..interrupts import raise_interrupt, signal_handlers
from ..io.atomic import atomic_write_text
from ..io.mrc import read_meta
from ..logs import Log, quiet
from .batch import Manifest, build_manifest, load_manifest, resolve_batch, run_all, write_manifest
from .batch_state import ItemStatus, count, output_state
from .shard import Shard, from_torchrun, parse_devices
from .shard_runs import run_on_devices, run_torchrun_share
from .slurm import render_script, submit_script, submit_submitit, task_states, wait


class BatchMode(enum.Enum):
    LOCAL = "local"  # every pair in turn, here
    DEVICES = "devices"  # one worker process per device
    TORCHRUN = "torchrun"  # this torchrun process's share
    WATCH = "watch"  # follow a folder (cryocare watch)
    SLURM = "slurm"  # an sbatch job array
    SUBMITIT = "submitit"  # the same array through submitit
    SBATCH_ONLY = "sbatch-only"  # write the sbatch script and stop


@dataclass
class BatchPlan:
    """What ``cryocare batch`` will do, decided before any work."""

    mode: BatchMode
    inputs: list[str]
    model: Path
    output_dir: Path
    config: CryocareConfig
    suffix: str = "_denoised"
    project_dir: Path | None = None
    overwrite: bool = False
    work_dir: Path | None = None
    wait_minutes: float | None = None
    devices: list[str] | None = None
    shard: Shard | None = None
    slurm: SlurmConfig | None = None
    watch: Path | None = None

    @property
    def work(self) -> Path:
        return self.work_dir or self.output_dir / "cryocare_batch"


def _mode(*, watch: bool, devices: bool, slurm: bool, sbatch_only: bool, submitit: bool, torchrun: bool) -> BatchMode:
    on_slurm = slurm or sbatch_only or submitit
    if devices and (watch or on_slurm or torchrun):
        raise ConfigError("--devices runs the batch here in one process per device; it cannot be combined with "
                          "--watch, the SLURM options or torchrun")
    if torchrun and (watch or on_slurm):
        raise ConfigError("under torchrun 'cryocare batch' restores its share here; start --watch or --slurm "
                          "without torchrun")
    if watch:
        return BatchMode.WATCH
    if on_slurm:
        return BatchMode.SUBMITIT if submitit else BatchMode.SBATCH_ONLY if sbatch_only else BatchMode.SLURM
    return BatchMode.DEVICES if devices else BatchMode.TORCHRUN if torchrun else BatchMode.LOCAL


def plan_batch(inputs: list[str] | None, model: Path, output_dir: Path, config: CryocareConfig, *,
               suffix: str = "_denoised", project_dir: Path | None = None, overwrite: bool = False,
               work_dir: Path | None = None, slurm: bool = False,
               sbatch_only: bool = False, submitit: bool = False, watch: Path | None = None,
               devices: str | None = None, wait_minutes: float | None = None) -> BatchPlan:
    """Check the combination of options (one-line :class:`ConfigError` otherwise) and decide the mode."""
    if sbatch_only and submitit:
        raise ConfigError("--sbatch-only writes a plain sbatch script; it cannot be combined with --submitit")
    if wait_minutes is not None and wait_minutes <= 0:
        raise ConfigError(f"--wait-minutes must be positive, not {wait_minutes}; leave it out to return at once")
    shard = from_torchrun()
    mode = _mode(watch=watch is not None, devices=devices is not None, slurm=slurm, sbatch_only=sbatch_only,
                 submitit=submitit, torchrun=shard is not None)
    device_list = parse_devices(devices) if devices is not None else None
    if mode is BatchMode.WATCH and (inputs or slurm or sbatch_only or submitit or wait_minutes is not None):
        raise ConfigError("--watch FOLDER replaces INPUTS and runs here; drop the inputs and SLURM options")
    on_slurm = mode in (BatchMode.SLURM, BatchMode.SUBMITIT, BatchMode.SBATCH_ONLY)
    return BatchPlan(mode, list(inputs or []), model, output_dir, config, suffix, project_dir, overwrite, work_dir,
                     wait_minutes, device_list, shard,
                     config.slurm if on_slurm else None, watch)


def _manifest(plan: BatchPlan, log: Log) -> tuple[Manifest, list, bool]:
    items = resolve_batch(plan.inputs, plan.output_dir, plan.suffix, plan.project_dir)
    main_process = plan.shard is None or plan.shard.rank == 0
    manifest = build_manifest(items, plan.model, plan.config, overwrite=plan.overwrite,
                              log=log if main_process else None)
    if main_process:
        log(f"{len(items)} pairs: {len(manifest.items)} to do, {len(manifest.skipped)} already complete")
    return manifest, items, main_process


def run_batch(plan: BatchPlan, *, log: Log = quiet) -> int:
    """Run a plan that is not :attr:`BatchMode.WATCH` (the CLI runs the watch); returns the exit code."""
    manifest, items, main_process = _manifest(plan, log)
    # under torchrun a process cannot tell "complete before this run" from "just written by another rank", so
    # each one reports on its own share (run_torchrun_share), never on what the others have done meanwhile
    if not manifest.items and plan.shard is None:
        print("nothing to do: every output is complete (pass --overwrite to redo them)")
        return 0
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    # a submitted job keeps reading its own manifest, so each submission gets a new one; local runs reuse theirs
    mpath = plan.work / (f"manifest-{stamp}.json" if plan.slurm else "manifest-local.json")
    if main_process:  # under torchrun only rank 0 writes it (the others never read it)
        write_manifest(manifest, mpath)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    if plan.slurm is not None:
        return _submit(plan, plan.slurm, mpath, len(manifest.items), stamp, log)
    # SLURM (time limit, scancel) and kill send SIGTERM: treated like Ctrl-C, partial outputs are removed
    with signal_handlers(sigterm=raise_interrupt):
        if plan.shard is not None:
            return run_torchrun_share(manifest, items, plan.shard, plan.output_dir)
        if plan.devices is not None:
            return run_on_devices(manifest, mpath, plan.devices, plan.output_dir)
        results = run_all(manifest, log=log)
    print(f"done {count(results, ItemStatus.DONE)}, skipped "
          f"{count(results, ItemStatus.SKIPPED) + len(manifest.skipped)}; outputs in {plan.output_dir}")
    return 0


def _submit(plan: BatchPlan, opts: SlurmConfig, mpath: Path, n: int, stamp: str, log: Log) -> int:
    logs = plan.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)  # SLURM does not create it: tasks would fail silently
    if plan.mode is BatchMode.SUBMITIT:
        job = submit_submitit(mpath, n, opts, logs)
    else:
        script = atomic_write_text(plan.work / f"batch-{stamp}.sbatch", render_script(mpath, n, opts, logs))
        script.chmod(0o755)
        if plan.mode is BatchMode.SBATCH_ONLY:
            print(f"wrote {script} ({n} tasks; manifest {mpath})\nsubmit with: sbatch {script}")
            return 0
        job = submit_script(script)
    print(f"submitted job {job}: {n} tasks; logs in {logs}; manifest {mpath}")
    if plan.wait_minutes is None:
        print(f"follow with: cryocare batch-status --manifest {mpath} --job {job}")
        return 0
    return report_outputs(mpath, job, plan.wait_minutes, log=log)


def report_outputs(manifest_path: Path, job: str | None, wait_minutes: float | None, *, log: Log = quiet) -> int:
    """One line per item (index, name, SLURM state, output state), then the count of complete outputs;
    :class:`ClusterError` when the job ended with outputs missing."""
    manifest = load_manifest(manifest_path)
    n = len(manifest.items)
    if job is None:
        states = {i: "-" for i in range(n)}
    elif wait_minutes:
        states = wait(job, n, wait_minutes * 60, log=log)
    else:
        states = task_states(job, n)
    bad = []
    for i, item in enumerate(manifest.items):
        out = output_state(item.output, tuple(read_meta(item.even).shape))
        print(f"{i:4d}  {item.name:30s}  {states[i]:12s}  {out}")
        if not out.complete:
            bad.append(item.name)
    if bad and job is not None and all(s not in ("PENDING", "RUNNING", "UNKNOWN") for s in states.values()):
        log_dir = manifest_path.parent / "logs"
        raise ClusterError(f"{len(bad)} of {n} outputs are not complete ({', '.join(bad[:5])}); see the task "
                           f"logs in {log_dir}, fix and rerun the same 'cryocare batch' command")
    print(f"{n - len(bad)} of {n} outputs complete")
    return 0
