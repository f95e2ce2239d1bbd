"""Batch commands: ``cryocare batch`` (local or SLURM job array), ``batch-status`` and the internal ``batch-run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cyclopts import Group, Parameter

from ..config_runs import SlurmConfig, given
from ..errors import ConfigError
from ..logs import log_stderr as _log
from ..workflows.batch_plan import BatchMode, plan_batch, report_outputs, run_batch
from ..workflows.shard import parse_shard
from ..workflows.shard_runs import run_from_manifest
from .app import app
from .commands_watch import WatchSettings, run_watch
from .options import ConfigOptions, PredictOptions, RuntimeOptions, build_config

G_SLURM = Group("SLURM (with --slurm)", sort_key=50)


SlurmSettings = Annotated[SlurmConfig | None, Parameter(name="*", group=G_SLURM)]


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
    watch_opts: WatchSettings = None,
    slurm_opts: SlurmSettings = None,
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
    config = build_config(cfg, None, predict_opts, runtime,
                          extra={"watch": given(watch_opts), "slurm": given(slurm_opts)})
    plan = plan_batch(inputs, model, output_dir, config, suffix=suffix, project_dir=project_dir, overwrite=overwrite,
                      work_dir=work_dir, slurm=slurm, sbatch_only=sbatch_only, submitit=submitit, watch=watch,
                      devices=devices, wait_minutes=wait_minutes)
    if plan.mode is BatchMode.WATCH:
        assert watch is not None
        return run_watch(watch, output_dir, config, model=model, suffix=suffix, overwrite=overwrite)
    return run_batch(plan, log=_log)


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
    return report_outputs(manifest, job, wait_minutes, log=_log)


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
    return run_from_manifest(manifest, index=index, part=None if shard is None else part, device=device,
                             threads=threads)
