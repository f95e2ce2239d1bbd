"""Batch commands: ``cryocare batch`` (local or SLURM job array), ``batch-status`` and the internal ``batch-run``."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from cyclopts import Group, Parameter

from ..errors import ClusterError, ConfigError
from ..io.atomic import atomic_write_text
from ..io.mrc import read_meta
from ..logs import log_stderr as _log
from ..workflows.batch import (
    build_manifest,
    load_manifest,
    output_state,
    resolve_batch,
    run_all,
    run_item,
    write_manifest,
)
from ..workflows.shard import from_torchrun, parse_devices, parse_shard
from ..workflows.shard_runs import run_on_devices, run_torchrun_share, run_worker_share
from ..workflows.slurm import SlurmOptions, render_script, submit_script, submit_submitit, task_states, wait
from .app import app
from .commands_watch import WatchCliOptions, run_watch
from .options import ConfigOptions, PredictOptions, RuntimeOptions, build_config

G_SLURM = Group("SLURM (with --slurm)", sort_key=50)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sigterm_interrupts() -> None:
    """SLURM (time limit, scancel) and kill send SIGTERM: treat it like Ctrl-C so that partial outputs are
    removed and the exit is clean (the default would end the process without any clean-up)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@Parameter(name="*", group=G_SLURM)
@dataclass
class SlurmCliOptions:
    partition: str | None = None
    "Partition (queue) for the array tasks."
    time: str | None = None
    "Time limit per task (one pair), e.g. 1:00:00."
    mem: str | None = None
    "Memory per task, e.g. 32G."
    gpus: str | None = None
    "GPUs per task, e.g. 1 or a100:1."
    cpus: int | None = None
    "CPU cores per task (also the torch thread count unless --threads is given)."
    max_parallel: int | None = None
    "At most this many tasks run at once (the %N of --array)."
    account: str | None = None
    "Account to charge."
    job_name: str = "cryocare-batch"
    "Job name (also in the log file names)."
    sbatch_arg: list[str] | None = None
    "Any other sbatch option, e.g. --sbatch-arg=--qos=high (repeatable)."
    setup: list[str] | None = None
    "Shell line run before each task, e.g. --setup 'module load cuda' (repeatable)."
    executable: str | None = None
    "The cryocare command on the compute nodes (default: this environment's, by absolute path)."

    def to_options(self) -> SlurmOptions:
        return SlurmOptions(self.partition, self.time, self.mem, self.gpus, self.cpus, self.max_parallel,
                            self.account, self.job_name, list(self.sbatch_arg or []), list(self.setup or []),
                            self.executable).validate()


@app.command
def batch(
    inputs: list[str] | None = None,
    *,
    model: Path,
    output_dir: Path,
    suffix: str = "_denoised",
    project_dir: Path | None = None,
    overwrite: bool = False,
    work_dir: Path | None = None,
    slurm: bool = False,
    sbatch_only: bool = False,
    submitit: bool = False,
    wait_minutes: float | None = None,
    watch: Path | None = None,
    devices: str | None = None,
    watch_opts: WatchCliOptions | None = None,
    slurm_opts: SlurmCliOptions | None = None,
    predict_opts: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """Restore many even/odd pairs with one trained model, locally in turn or as a SLURM job array.

    Outputs that are already complete are skipped, so an interrupted batch is finished by running the same
    command again. Example: cryocare batch tomos/ --model best.pt --output-dir denoised --slurm --gpus 1

    Parameters
    ----------
    inputs
        A folder of pairs (x_even/x_odd, x_EVN/x_ODD, x_half1/x_half2, or even/ and odd/ sub-folders), a
        quoted glob such as 'tomos/**/*.mrc', a list file with '[name] even odd' per line, a RELION 5
        tomograms.star, or the MRC files themselves.
    model
        Checkpoint written by 'cryocare train' (best.pt).
    output_dir
        Folder for the restored tomograms, NAME_denoised.mrc (see --suffix).
    suffix
        Appended to each pair's name to form its output file name.
    project_dir
        RELION project folder that the paths in a tomograms.star are relative to (default: found).
    overwrite
        Redo outputs that are already complete.
    work_dir
        Folder for the manifest, the sbatch script and the task logs (default OUTPUT_DIR/cryocare_batch); with
        --slurm it, the inputs, the model and the outputs must be on a file system the compute nodes see.
    slurm
        Submit a SLURM job array (one task per pair) instead of running here.
    sbatch_only
        Write the manifest and the sbatch script, print how to submit it, and stop.
    submitit
        Submit the array through submitit (pip install 'cryocare-torch[cluster]') instead of sbatch.
    wait_minutes
        With --slurm: wait up to this long for the job, then report every task (default: return at once).
    watch
        Live mode instead of INPUTS: restore pairs as they appear in this folder (same as 'cryocare watch').
    devices
        Run here on several devices at once, one worker process each on every Nth pair: cuda:0,cuda:1, a GPU
        count such as 4, or cpu,cpu. (Under torchrun each process takes its share by itself.)
    """
    if sbatch_only and submitit:
        raise ConfigError("--sbatch-only writes a plain sbatch script; it cannot be combined with --submitit")
    if wait_minutes is not None and wait_minutes <= 0:
        raise ConfigError(f"--wait-minutes must be positive, not {wait_minutes}; leave it out to return at once")
    config = build_config(cfg, None, predict_opts, runtime)
    shard = from_torchrun()
    if devices is not None and (watch is not None or slurm or sbatch_only or submitit or shard is not None):
        raise ConfigError("--devices runs the batch here in one process per device; it cannot be combined with "
                          "--watch, the SLURM options or torchrun")
    if shard is not None and (watch is not None or slurm or sbatch_only or submitit):
        raise ConfigError("under torchrun 'cryocare batch' restores its share here; start --watch or --slurm "
                          "without torchrun")
    device_list = parse_devices(devices) if devices is not None else None
    if watch is not None:
        if inputs or slurm or sbatch_only or submitit or wait_minutes is not None:
            raise ConfigError("--watch FOLDER replaces INPUTS and runs here; drop the inputs and SLURM options")

        return run_watch(watch, output_dir, config, watch_opts, model=model, suffix=suffix, overwrite=overwrite)
    inputs = inputs or []
    slurm_options = (slurm_opts or SlurmCliOptions()).to_options() if (slurm or sbatch_only or submitit) else None
    items = resolve_batch(inputs, output_dir, suffix, project_dir)
    main_process = shard is None or shard.rank == 0
    manifest = build_manifest(items, model, config, overwrite=overwrite, log=_log if main_process else None)
    if main_process:
        _log(f"{len(items)} pairs: {len(manifest.items)} to do, {len(manifest.skipped)} already complete")
    if not manifest.items:
        label = f"{shard.label} " if shard is not None else ""
        print(f"{label}nothing to do: every output is complete (pass --overwrite to redo them)")
        return 0
    work = work_dir or output_dir / "cryocare_batch"
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    # a submitted job keeps reading its own manifest, so each submission gets a new one; local runs reuse theirs
    mpath = work / (f"manifest-{stamp}.json" if slurm_options else "manifest-local.json")
    if main_process:  # under torchrun only rank 0 writes it (the others never read it)
        write_manifest(manifest, mpath)
    output_dir.mkdir(parents=True, exist_ok=True)
    if slurm_options is None:
        _sigterm_interrupts()

        if shard is not None:
            return run_torchrun_share(manifest, items, shard, output_dir)
        if device_list is not None:
            return run_on_devices(manifest, mpath, device_list, output_dir)
        results = run_all(manifest, log=_log)
        print(f"done {sum(r == 'done' for r in results.values())}, skipped "
              f"{sum(r == 'skipped' for r in results.values()) + len(manifest.skipped)}; outputs in {output_dir}")
        return 0

    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)  # SLURM does not create it: tasks would fail silently
    n = len(manifest.items)
    if submitit:
        job = submit_submitit(mpath, n, slurm_options, logs)
    else:
        script = atomic_write_text(work / f"batch-{stamp}.sbatch", render_script(mpath, n, slurm_options, logs))
        script.chmod(0o755)
        if sbatch_only:
            print(f"wrote {script} ({n} tasks; manifest {mpath})\nsubmit with: sbatch {script}")
            return 0
        job = submit_script(script)
    print(f"submitted job {job}: {n} tasks; logs in {logs}; manifest {mpath}")
    if wait_minutes is None:
        print(f"follow with: cryocare batch-status --manifest {mpath} --job {job}")
        return 0
    return _report(mpath, job, wait_minutes)


def _report(manifest_path: Path, job: str | None, wait_minutes: float | None) -> int:
    manifest = load_manifest(manifest_path)
    n = len(manifest.items)
    if job is None:
        states = {i: "-" for i in range(n)}
    elif wait_minutes:
        states = wait(job, n, wait_minutes * 60, log=_log)
    else:
        states = task_states(job, n)
    bad = []
    for i, item in enumerate(manifest.items):
        out = output_state(item.output, tuple(read_meta(item.even).shape))
        print(f"{i:4d}  {item.name:30s}  {states[i]:12s}  {out}")
        if out != "complete":
            bad.append(item.name)
    if bad and job is not None and all(s not in ("PENDING", "RUNNING", "UNKNOWN") for s in states.values()):
        log_dir = manifest_path.parent / "logs"
        raise ClusterError(f"{len(bad)} of {n} outputs are not complete ({', '.join(bad[:5])}); see the task "
                           f"logs in {log_dir}, fix and rerun the same 'cryocare batch' command")
    print(f"{n - len(bad)} of {n} outputs complete")
    return 0


@app.command(name="batch-status")
def batch_status(
    *,
    manifest: Path,
    job: str | None = None,
    wait_minutes: float | None = None,
) -> int:
    """Show which outputs of a batch are complete and, with --job, the state of each SLURM task.

    Parameters
    ----------
    manifest
        The manifest-*.json written by 'cryocare batch'.
    job
        SLURM job id printed at submission.
    wait_minutes
        Wait up to this long for the job to finish first.
    """
    return _report(manifest, job, wait_minutes)


@app.command(name="batch-run", show=False)
def batch_run(
    *,
    manifest: Path,
    index: Annotated[int | None, Parameter(help="Item (0-based): the SLURM_ARRAY_TASK_ID.")] = None,
    shard: str | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> int:
    """Restore one item of a batch manifest (what each SLURM array task runs), or every Nth item (what each
    'cryocare batch --devices' worker runs); skips complete outputs.

    Parameters
    ----------
    manifest
        The manifest-*.json written by 'cryocare batch'.
    shard
        RANK/WORLD: restore the items RANK, RANK+WORLD, ... instead of --index.
    device
        Device for this process (instead of the manifest's).
    threads
        CPU threads for this process (instead of the manifest's).
    """
    if (index is None) == (shard is None):
        raise ConfigError("give either --index I (one item) or --shard RANK/WORLD (every WORLD-th item)")
    part = parse_shard(shard or "0/1")  # its errors come before reading the manifest
    _sigterm_interrupts()
    m = load_manifest(manifest)
    if device is not None:
        m.config.predict.device = device
    if threads is not None:
        m.config.predict.num_threads = threads
    if index is None:  # --shard
        return run_worker_share(m, part)
    status = run_item(m, index, log=_log)
    item = m.items[index]
    print(f"{item.name}: {status} {item.output}")
    return 0
