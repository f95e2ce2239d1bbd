"""Live mode: ``cryocare watch FOLDER`` (also ``cryocare batch --watch FOLDER``)."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Group, Parameter

from ..config import CryocareConfig
from ..config_runs import WatchConfig, given
from ..errors import CryocareError
from ..interrupts import raise_interrupt, signal_handlers
from ..logs import log_stderr as _log
from ..workflows.watch import StopReason
from ..workflows.watch import watch as _watch
from .app import EXIT_INTERRUPTED, app
from .options import ConfigOptions, PredictOptions, RuntimeOptions, TrainOptions, build_config

G_WATCH = Group("Live mode", sort_key=5)


WatchSettings = Annotated[WatchConfig | None, Parameter(name="*", group=G_WATCH)]


def _stop_on_ctrl_c(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """First Ctrl-C: finish the current pair, then stop with a summary; a second one stops at once (the
    partial output is removed). SIGTERM (SLURM, kill) stops at once."""

    def on_int(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        _log("stopping after the current pair (Ctrl-C again to stop at once)")

    return signal_handlers(sigint=on_int, sigterm=raise_interrupt)


def run_watch(folder: Path, output_dir: Path, config: CryocareConfig, **kw: Any) -> int:
    """Run the watch (its settings: ``config.watch``), print the summary; failed pairs give the first failure's
    exit code, Ctrl-C twice 130."""
    stop = threading.Event()
    with _stop_on_ctrl_c(stop):
        summary = _watch(folder, output_dir, config, progress=sys.stderr.isatty(), stop=stop, log=_log, **kw)
    print(summary.line())
    if summary.reason is StopReason.INTERRUPTED:
        return EXIT_INTERRUPTED
    if summary.failed:
        name, why = next(iter(summary.failed.items()))
        raise CryocareError(f"{len(summary.failed)} pair(s) failed (first: {name}: {why}); fix them (changed files "
                            "are retried) and rerun the same command")
    return 0


@app.command
def watch(
    folder: Path,
    *,
    output_dir: Annotated[Path, Parameter(name=["--output-dir", "--output"])],
    model: Path | None = None,
    train_after: int | None = None,
    model_dir: Path | None = None,
    suffix: str = "_denoised",
    overwrite: bool = False,
    watch_opts: WatchSettings = None,
    train_opts: TrainOptions | None = None,
    predict_opts: PredictOptions | None = None,
    runtime: RuntimeOptions | None = None,
    cfg: ConfigOptions | None = None,
) -> int:
    """Live mode: restore each even/odd pair as it appears in FOLDER (the microscope keeps acquiring).

    Files still being written are waited for; complete outputs are skipped, so a restarted watch continues
    where it stopped. Ctrl-C stops after the current pair. Example:
    cryocare watch frames/reconstructions --output denoised --model model/best.pt --max-idle-minutes 60

    Parameters
    ----------
    folder
        Folder the pairs appear in: x_even/x_odd, x_EVN_Vol/x_ODD_Vol, x_half1/x_half2 files, or even/ and odd/
        sub-folders with the same file names.
    output_dir
        Folder for the restored tomograms, NAME_denoised.mrc (see --suffix).
    model
        Trained model (best.pt or its folder) to restore every pair with.
    train_after
        Without --model: train once on the first N pairs that arrive (training options apply), then restore
        those and every later pair with that model.
    model_dir
        Where --train-after trains (default OUTPUT_DIR/cryocare_watch_model); a restarted watch reuses the
        model there, or continues its interrupted training.
    suffix
        Appended to each pair's name to form its output file name.
    overwrite
        Redo outputs that are already complete.
    """
    config = build_config(cfg, train_opts, predict_opts, runtime, extra={"watch": given(watch_opts)})
    return run_watch(folder, output_dir, config, model=model, train_after=train_after,
                     model_dir=model_dir, suffix=suffix, overwrite=overwrite)
