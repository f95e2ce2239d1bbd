"""Is it better? ``cryocare fsc``, ``baseline``, ``evaluate`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from cyclopts import Group, Parameter

from ..config_runs import EvalConfig
from ..errors import ConfigError
from ..evaluate.baseline_files import Method, NadMode, baseline_sources, filter_files
from ..evaluate.fsc_io import fsc_files
from ..evaluate.metrics import format_table
from ..logs import log_stderr as _log
from ..report import RunInputs, build_report, evaluate_run
from ..report.collect import mrc_role
from ..runtime import set_threads
from .app import app

G_EVAL = Group("Evaluation", sort_key=15)
G_HW = Group("Hardware", sort_key=40)


EvalSettings = Annotated[EvalConfig | None, Parameter(name="*", group=G_EVAL)]
Threads = Annotated[int | None, Parameter(group=G_HW)]


def _options(opts: EvalConfig | None, threads: int | None) -> EvalConfig:
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    set_threads(threads)
    return opts or EvalConfig()


@app.command
def fsc(
    a: Path,
    b: Path,
    *,
    mask: Path | None = None,
    soft_edge: float = 0.0,
    crop: int | None = None,
    voxel_size: float | None = None,
    json: Path | None = None,
    csv: Path | None = None,
    plot: Path | None = None,
    overwrite: bool = False,
) -> int:
    """Fourier shell correlation of two maps (e.g. two half tomograms) and the resolutions at 0.5 and 0.143.

    Example: cryocare fsc restored_even.mrc restored_odd.mrc --soft-edge 6 --plot fsc.png

    Parameters
    ----------
    a
        First map (MRC, TIFF z-stack or Zarr/OME-Zarr).
    b
        Second map, same shape and voxel size.
    mask
        Optional mask MRC (values in [0, 1]); with --soft-edge it is binarised and given a cosine edge.
    soft_edge
        Cosine edge of the mask in voxels.
    crop
        Use only the central box of this size (voxels per axis); bounds memory for large tomograms.
    voxel_size
        Voxel size in Angstrom (default: from the headers).
    json
        Write the curve and resolutions as JSON.
    csv
        Write the curve as CSV (one row per shell).
    plot
        Write a plot (PNG, PDF or SVG by suffix).
    overwrite
        Replace existing output files.
    """
    result = fsc_files(a, b, mask_path=mask, voxel_size=voxel_size, crop=crop, soft_edge=soft_edge,
                       json_path=json, csv_path=csv, plot_path=plot, overwrite=overwrite)
    shape = "x".join(map(str, result.shape))
    print(f"FSC of {a} vs {b}: {shape} voxels of {result.voxel_size:.4g} A, Nyquist {result.nyquist_nm:.3g} nm")
    for t in (0.5, 0.143):
        flag = ("  (reaches Nyquist: the curve stays above the threshold up to the last shell)"
                if not result.crosses(t) else "")
        print(f"resolution at FSC = {t:<5g}: {result.resolution_at(t):.3f} nm{flag}")
    for path in (json, csv, plot):
        if path is not None:
            print(f"wrote {path}")
    if {mrc_role(a), mrc_role(b)} & {"restored", "restored_half"}:
        print("note: if these are halves restored by one network trained on both, their FSC is not a resolution "
              "(it stays high even on pure noise); 'cryocare evaluate --model' estimates the FSC against the truth")
    return 0


@app.command
def baseline(
    input: Path | None = None,
    *,
    method: Method,
    output: Path,
    even: Path | None = None,
    odd: Path | None = None,
    size: int = 3,
    sigma: float = 1.0,
    iterations: int = 10,
    lambda_: Annotated[float | None, Parameter(name="--lambda")] = None,
    nad_mode: NadMode = "hybrid",
    overwrite: bool = False,
    threads: int | None = None,
    voxel_size: float | None = None,
) -> int:
    """Filter a tomogram with a classical denoiser to compare with (median, Gaussian or NAD).

    The output keeps the input's voxel size and origin. Example:
    cryocare baseline --even E.mrc --odd O.mrc --method nad --output nad.mrc

    Parameters
    ----------
    input
        Tomogram to filter (MRC, TIFF z-stack or Zarr/OME-Zarr); or give --even and --odd to filter their average.
    method
        median (box of --size), gaussian (--sigma) or nad (non-linear anisotropic diffusion, --iterations).
    output
        Output MRC (float32).
    even
        Even half; with --odd, the average of the halves is filtered.
    odd
        Odd half.
    size
        Median box edge in voxels (odd).
    sigma
        Gaussian standard deviation in voxels.
    iterations
        NAD iterations (each costs about a second per million voxels on one CPU core).
    lambda_
        NAD contrast parameter (default: estimated from the data).
    nad_mode
        NAD diffusion: hybrid (edge- and coherence-enhancing), eed or ced.
    overwrite
        Replace an existing output.
    threads
        CPU threads (default: all available cores).
    voxel_size
        Voxel size (Angstrom) for the output, replacing the input's (TIFF/Zarr without one).
    """
    sources = baseline_sources(input, even, odd, output, overwrite=overwrite)
    set_threads(threads)
    filter_files(sources, output, method, size=size, sigma=sigma, iterations=iterations, lambda_=lambda_,
                 nad_mode=nad_mode, overwrite=overwrite, voxel_size=voxel_size, log=_log)
    print(f"wrote {output}")
    return 0


@app.command(default_parameter=Parameter(consume_multiple=True, negative_iterable=()))
def evaluate(
    *,
    restored: Path,
    even: Path,
    odd: Path,
    output_dir: Path,
    truth: Path | None = None,
    labels: Path | None = None,
    centres: Path | None = None,
    model_dir: Annotated[Path | None, Parameter(name=["--model", "--model-dir"])] = None,
    overwrite: bool = False,
    opts: EvalSettings = None,
    threads: Threads = None,
) -> int:
    """Is it better? FSC, baselines, PSNR/SSIM against a truth, downstream detection; metrics.json + figures.

    Then 'cryocare report OUTPUT_DIR --output report.html' makes one HTML page of it.

    Parameters
    ----------
    restored
        The restored tomogram (its halves RESTORED_even/_odd.mrc, from predict --write-halves, are used when present).
    even
        Even half the restoration was made from.
    odd
        Odd half.
    output_dir
        Folder for metrics.json and the figures (created).
    truth
        Noise-free reference (simulated data), for PSNR/SSIM, FSC against the truth and oracle-tuned baselines.
    labels
        Label volume for the downstream detection check (with --centres).
    centres
        CSV of z,y,x voxel centres of the labelled objects (e.g. decorations.csv of 'cryocare simulate').
    model_dir
        Model folder with history.json and best.pt (default: model/ or RESTORED_model/ beside the restored file).
        Its validation slab, never trained on, is where the FSC against the truth is estimated from the halves.
    overwrite
        Replace the files of an earlier evaluation in OUTPUT_DIR.
    threads
        CPU threads (default: all available cores).
    """
    inputs = RunInputs(restored=restored, even=even, odd=odd, truth=truth, labels=labels, centres=centres,
                       model_dir=model_dir)
    metrics = evaluate_run(inputs, output_dir, _options(opts, threads), overwrite=overwrite, log=_log)
    _print_metrics(metrics)
    print(f"wrote {output_dir / 'metrics.json'} and figures; make a page with: cryocare report {output_dir} "
          f"--output {output_dir / 'report.html'}")
    return 0


def _print_metrics(metrics: dict[str, Any]) -> None:
    """The FSC crossings, quality table and downstream F1 of an evaluation, as printed by 'cryocare evaluate'."""
    for name, c in metrics["fsc"].items():
        print(f"FSC {name:28s} {_crossings(c)}" + ("  (not a resolution: one network trained on both halves)"
                                                   if c.get("note") else ""))
    est = metrics.get("estimated_fsc_truth")
    if est:
        where = " ".join(f"{ax}{a}-{b}" for ax, (a, b) in zip("zyx", est["region"], strict=True))
        print(f"FSC {'restored vs truth, estimated':28s} {_crossings(est)}  (from the halves on {where}"
              f"{', biased' if est['biased'] else ''}; raw average: 0.5 {est['raw_average_res_0_5_nm']:.2f} nm, "
              f"0.143 {est['raw_average_res_0_143_nm']:.2f} nm)")
    for name, d in (metrics.get("directional_fsc_truth") or {}).items():
        print(f"vs truth, {name}: correlation {d['correlation']:.3f}; FSC 0.5 in a {d['half_angle_deg']:g}-degree cone "
              f"around z {d['z']['res_0_5_nm']:.2f} nm, around x {d['x']['res_0_5_nm']:.2f} nm (z/x "
              f"{d['ratio_z_over_x_0_5']:.2f})")
    if metrics["quality"]:
        print(format_table(metrics["quality"]))
    for name, row in ((metrics.get("downstream") or {}).get("best") or {}).items():
        print(f"downstream {name}: F1 {row['f1']:.3f} (precision {row['precision']:.3f}, recall {row['recall']:.3f})")


def _crossings(c: dict[str, Any]) -> str:
    return (f"0.5: {c['res_0_5_nm']:6.2f} nm{' (Nyquist)' if c['res_0_5_reaches_nyquist'] else ''}"
            f"   0.143: {c['res_0_143_nm']:6.2f} nm{' (Nyquist)' if c['res_0_143_reaches_nyquist'] else ''}")


@app.command(default_parameter=Parameter(consume_multiple=True, negative_iterable=()))
def report(
    paths: list[Path],
    *,
    output: Path,
    title: str | None = None,
    overwrite: bool = False,
    opts: EvalSettings = None,
    threads: Threads = None,
) -> int:
    """One self-contained HTML page (figures embedded) of a run: slices, FSC, training loss, numbers.

    PATHS: the folder of 'cryocare evaluate' (metrics.json) or of 'cryocare demo', or the files of a run
    (*restored*.mrc, *even*.mrc, *odd*.mrc and optionally *clean*/*truth*.mrc, *labels*.mrc, decorations.csv,
    the model folder). Without a metrics.json the run is evaluated first (see 'cryocare evaluate').

    Parameters
    ----------
    paths
        Run folder(s) or files.
    output
        The HTML file to write.
    title
        Page title (default: from the run folder's name).
    overwrite
        Replace an existing output.
    threads
        CPU threads (default: all available cores).
    """
    out = build_report(paths, output, _options(opts, threads), overwrite=overwrite, title=title, log=_log)
    print(f"wrote {out}")
    return 0
