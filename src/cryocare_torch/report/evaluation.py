"""``cryocare evaluate``: every comparison that applies to one restored tomogram, written to a folder.

Given the restored tomogram and its even/odd halves (and optionally the truth, labels and object
centres) :func:`evaluate_run` computes

* FSC between the raw halves, between the restored halves (when ``predict --write-halves`` wrote
  ``<stem>_even.mrc``/``<stem>_odd.mrc`` beside the restored file; not a resolution: one network trained
  on both), and of the raw average and the restored tomogram against the truth -- on the whole volumes,
  with a cosine-tapered box mask;
* the FSC of the restoration against the truth *estimated from the halves alone* on the region the
  network never trained on (:mod:`.truth_estimate`), with the true one there when a truth is given;
* baselines (median, Gaussian, NAD; oracle-tuned with a truth, defaults without) and, with a truth,
  PSNR/SSIM/FSC-0.5 of raw average, baselines and restored -- on a central box (see
  :mod:`.scoring`);
* with a truth, the directional resolution against it (:mod:`cryocare_torch.evaluate.directional`: the FSC in
  a 30-degree cone around z and around x, and their ratio) and the correlation, for raw average and restored --
  give ``object.mrc`` of a simulated dataset as the truth to see how much of the missing wedge was filled -- and
  for the truth less its z profile (:data:`TRUTH_NO_Z`), the score of a restoration that invents nothing;
* with labels and centres, the downstream detection check raw vs restored
  (:func:`cryocare_torch.evaluate.detection.downstream_comparison`);
* the training history (``history.json`` of the model folder) when it can be found,

and writes ``metrics.json`` (written last: its presence means the evaluation is complete) and PNG
figures into the output folder. ``cryocare report`` turns the folder into one HTML page.

Cost: the halves, their average, the restored tomogram and the truth are held in memory (float32), and
FSC needs about four more volume-sized buffers. Baselines run on the central box only (default 128
voxels per axis): on two CPU cores median and Gaussian take seconds, NAD about a minute (its oracle
grid runs on a smaller sub-box), and the downstream check about 0.75 s per segmenter step and volume.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config_runs import EvalConfig
from ..errors import CheckpointError
from ..evaluate.detection import best_rows, default_max_distance, downstream_comparison, plot_precision_recall
from ..evaluate.fsc import fsc
from ..evaluate.fsc_truth import RESTORED_HALVES_NOTE
from ..evaluate.object_scores import directional_table, z_profile
from ..evaluate.plots import loss_curve, plot_estimated_fsc_truth, plot_fsc, slices_figure
from ..io.atomic import atomic_write_json, check_output
from ..io.mrc import read_volume
from ..logs import Log
from ..train.checkpoint import read_checkpoint
from ..version import __version__
from .inputs import RunInputs, find_model_dir, read_centres, restored_halves
from .scoring import evaluation_box, parse_methods, run_baselines, score_rows
from .truth_estimate import estimated_fsc_truth

FORMAT = "cryocare-torch-evaluation"
PLANES = ("xy", "xz", "yz")
"""Slice planes of the slices figures, side by side: z is the beam direction, so xz and yz show the missing wedge."""
FILES = {"metrics": "metrics.json", "slices": "slices.png", "slices_baselines": "slices_baselines.png",
         "fsc": "fsc.png", "fsc_truth": "fsc_truth.png", "loss": "loss.png", "precision_recall": "precision_recall.png"}
RESTORED = "cryocare-torch"
TRUTH_NO_Z = "truth less its z profile"
"""The truth less its mean over each z section, which no tilt series measures (:func:`.object_scores.z_profile`)."""


def versions() -> dict[str, str]:
    import torch


    return {"cryocare-torch": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def training_summary(model_dir: Path | None) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None,
                                                      dict[str, Any] | None]:
    """``(history, summary, config)`` from a model folder (``history.json``, ``best.pt``); ``None`` when absent."""
    if model_dir is None:
        return None, None, None
    history = None
    hp = model_dir / "history.json"
    if hp.is_file():
        try:
            loaded = json.loads(hp.read_text(encoding="utf-8"))
            history = loaded if isinstance(loaded, list) and loaded else None
        except (OSError, json.JSONDecodeError):
            history = None
    summary: dict[str, Any] = {"model_dir": str(model_dir)}
    config = None
    if (model_dir / "best.pt").is_file():

        try:
            raw = read_checkpoint(model_dir / "best.pt")
            config = raw.get("config")
            summary |= {"checkpoint_package_version": raw.get("package_version"),
                        "checkpoint_torch_version": raw.get("torch_version"), "best_epoch": raw.get("epoch"),
                        "best_val_loss": raw.get("best_val_loss")}
        except CheckpointError as exc:
            summary["checkpoint_error"] = str(exc)
    if history:
        last = history[-1]
        summary |= {"epochs": last.get("epoch"), "steps": last.get("steps"),
                    "training_minutes": (last.get("elapsed_s") or 0.0) / 60.0}
        vals = [h["val_loss"] for h in history if isinstance(h.get("val_loss"), (int, float))]
        if vals and "best_val_loss" not in summary:
            summary["best_val_loss"] = min(vals)
    return history, summary, config


def _describe_model(config: dict[str, Any] | None) -> str:
    model = (config or {}).get("model") or {}
    if not model:
        return "Noise2Noise U-Net"
    return f"Noise2Noise U-Net, depth {model.get('depth')}, {model.get('n_first')} channels"


def _fsc_curves(inputs: RunInputs, raw: np.ndarray, e: np.ndarray, o: np.ndarray, restored: np.ndarray,
                truth: np.ndarray | None, voxel_size: float, soft_edge: float) -> dict[str, Any]:
    def one(a: np.ndarray, b: np.ndarray) -> Any:
        if soft_edge > 0:
            return fsc(a, b, voxel_size=voxel_size, mask="box", soft_edge=soft_edge)
        return fsc(a, b, voxel_size=voxel_size)

    curves = {"raw halves": one(e, o)}
    halves = restored_halves(inputs.restored)
    if halves is not None:
        re, _ = read_volume(halves[0])
        ro, _ = read_volume(halves[1])
        if re.shape == e.shape and ro.shape == e.shape:
            curves["restored halves"] = one(re, ro)
        del re, ro
    if truth is not None:
        curves["raw average vs truth"] = one(raw, truth)
        curves[f"{RESTORED} vs truth"] = one(restored, truth)
    return curves


def evaluate_run(
    inputs: RunInputs, output_dir: Path, options: EvalConfig | None = None, *, overwrite: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run every applicable comparison and write ``metrics.json`` and figures into ``output_dir``.

    Returns the metrics dictionary (as written). Inputs and outputs are checked before any work.
    """
    opts = options or EvalConfig()
    say = log or (lambda _m: None)
    t_start = time.perf_counter()
    methods = parse_methods(opts.methods)
    if inputs.model_dir is None:
        inputs.model_dir = find_model_dir(inputs.restored)
    meta, voxel_size = inputs.check(opts.voxel_size)
    box = evaluation_box(meta.shape, opts.box)
    all_inputs = [p for p in (inputs.restored, inputs.even, inputs.odd, inputs.truth, inputs.labels) if p]
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        check_output(output_dir / name, overwrite=overwrite, inputs=all_inputs)
    restored, _ = read_volume(inputs.restored)
    truth = read_volume(inputs.truth)[0] if inputs.truth is not None else None
    seconds: dict[str, float] = {}
    notes: list[str] = []
    raw, fscs = _fsc_part(inputs, restored, truth, voxel_size, opts, seconds, notes, say)

    t0 = time.perf_counter()
    raw_b, restored_b = raw[box], restored[box]
    truth_b = truth[box] if truth is not None else None
    baselines = run_baselines(methods, raw_b, truth_b, say)
    seconds["baselines"] = time.perf_counter() - t0
    history, training, config = training_summary(inputs.model_dir)
    quality = _quality(raw_b, restored_b, truth_b, baselines, config, voxel_size, notes, say)
    main = {"raw average": raw_b, RESTORED: restored_b} | ({"truth": truth_b} if truth_b is not None else {})
    figures = _figures(main, baselines, fscs, output_dir, voxel_size, overwrite)

    downstream = _maybe_downstream(inputs, raw, restored, opts, output_dir, overwrite, seconds, figures, notes, say)
    if history:
        loss_curve(history, output_dir / FILES["loss"], overwrite=overwrite)
        figures["loss"] = FILES["loss"]
    seconds["total"] = time.perf_counter() - t_start
    metrics = {
        "format": FORMAT, "format_version": 1,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "inputs": inputs.as_dict(), "shape": list(meta.shape), "voxel_size_angstrom": voxel_size,
        "box": {"start": [s.start for s in box], "shape": [s.stop - s.start for s in box]},
        "versions": versions(), "config": config, "training": training,
        "fsc": {name: c.to_dict() | ({"note": RESTORED_HALVES_NOTE} if name == "restored halves" else {})
                for name, c in fscs.curves.items()},
        "estimated_fsc_truth": fscs.truth_fsc, "directional_fsc_truth": fscs.directional,
        "quality": quality,
        "baselines": {b.label: {"method": b.method, "params": b.params, "tuned": b.tuned,
                                "description": b.describe(), "seconds": b.seconds} for b in baselines},
        "downstream": downstream, "figures": figures, "seconds": seconds, "notes": notes,
    }
    atomic_write_json(output_dir / FILES["metrics"], metrics, overwrite=overwrite)
    say(f"evaluation done in {seconds['total'] / 60:.1f} min: {output_dir / FILES['metrics']}")
    return metrics


def _quality(raw_b: np.ndarray, restored_b: np.ndarray, truth_b: np.ndarray | None, baselines: list[Any],
             config: dict[str, Any] | None, voxel_size: float, notes: list[str], say: Log) -> Any:
    """PSNR/SSIM rows of the raw average, the baselines and the restoration against the truth (None without)."""
    if truth_b is None:
        notes.append("No ground truth given: PSNR/SSIM are not computed and baselines use default parameters.")
        return None
    say("scoring against the truth ...")
    shown = {"raw average": raw_b, **{b.label: b.volume for b in baselines}, RESTORED: restored_b}
    params = {b.label: b.describe() for b in baselines} | {"raw average": "(even + odd) / 2",
                                                           RESTORED: _describe_model(config)}
    return score_rows(shown, params, truth_b, voxel_size)


@dataclass
class _Fscs:
    curves: dict[str, Any]
    directional: Any
    truth_fsc: dict[str, Any] | None
    estimate: Any


def _fsc_part(inputs: RunInputs, restored: np.ndarray, truth: np.ndarray | None, voxel_size: float,
              opts: EvalConfig, seconds: dict[str, float], notes: list[str], say: Log) -> tuple[np.ndarray, _Fscs]:
    """The raw average of the halves and the FSC curves: between halves, against the truth, and the FSC against
    the truth estimated from the halves (its time in ``seconds``, what is missing in ``notes``)."""
    e, _ = read_volume(inputs.even)
    o, _ = read_volume(inputs.odd)
    raw = 0.5 * (e + o)
    t0 = time.perf_counter()
    say("FSC curves ...")
    curves = _fsc_curves(inputs, raw, e, o, restored, truth, voxel_size, opts.soft_edge)
    directional = None if truth is None else directional_table(  # the last: what no tilt series measures
        {"raw average": raw, RESTORED: restored, TRUTH_NO_Z: truth - z_profile(truth)}, truth,
        voxel_size=voxel_size, soft_edge=opts.soft_edge)
    seconds["fsc"] = time.perf_counter() - t0
    if "restored halves" not in curves:
        notes.append("No restored halves found (write them with 'cryocare predict --write-halves'); "
                     "the FSC between restored halves is not shown.")
    t0 = time.perf_counter()
    say("estimated FSC of the restoration against the truth ...")
    truth_fsc, estimate, note = estimated_fsc_truth(
        e, o, even=inputs.even, halves=restored_halves(inputs.restored), model_dir=inputs.model_dir, truth=truth,
        voxel_size=voxel_size, soft_edge=opts.soft_edge, device=opts.device, log=say)
    seconds["estimated_fsc_truth"] = time.perf_counter() - t0
    notes += [note] if note else []
    return raw, _Fscs(curves, directional, truth_fsc, estimate)


def _figures(main: dict[str, np.ndarray], baselines: list[Any], fscs: _Fscs, output_dir: Path, voxel_size: float,
             overwrite: bool) -> dict[str, str]:
    """Slices of the main volumes and of the baselines, the FSC curves and the estimated FSC against the truth."""
    slices_figure(main, output_dir / FILES["slices"], voxel_size=voxel_size, overwrite=overwrite, axes=PLANES,
                  beside=True)
    figures = {"slices": FILES["slices"]}
    if baselines:
        slices_figure({b.label: b.volume for b in baselines}, output_dir / FILES["slices_baselines"],
                      voxel_size=voxel_size, overwrite=overwrite, axes=PLANES, beside=True)
        figures["slices_baselines"] = FILES["slices_baselines"]
    plot_fsc(fscs.curves, output_dir / FILES["fsc"], overwrite=overwrite)
    figures["fsc"] = FILES["fsc"]
    if fscs.estimate is not None and fscs.truth_fsc is not None:
        plot_estimated_fsc_truth(fscs.estimate, fscs.truth_fsc["region"], output_dir / FILES["fsc_truth"],
                                 overwrite=overwrite)
        figures["fsc_truth"] = FILES["fsc_truth"]
    return figures


def _maybe_downstream(inputs: RunInputs, raw: np.ndarray, restored: np.ndarray, opts: EvalConfig, output_dir: Path,
                      overwrite: bool, seconds: dict[str, float], figures: dict[str, str], notes: list[str],
                      say: Log) -> dict[str, Any] | None:
    """The downstream detection check where labels and centres are given (its time, figure and notes recorded)."""
    if inputs.labels is not None and inputs.centres is not None and opts.downstream_steps > 0:
        downstream = _downstream(inputs.labels, inputs.centres, raw, restored, opts,
                                 output_dir / FILES["precision_recall"], overwrite, say)
        seconds["downstream"] = downstream.pop("seconds")
        figures["precision_recall"] = FILES["precision_recall"]
        return downstream
    if inputs.labels is not None:
        notes.append("Downstream detection check skipped (--downstream-steps 0).")
    return None


def _downstream(labels_path: Path, centres_path: Path, raw: np.ndarray, restored: np.ndarray, opts: EvalConfig,
                figure: Path, overwrite: bool, say: Log) -> dict[str, Any]:
    t0 = time.perf_counter()
    labels, _ = read_volume(labels_path)
    centres = read_centres(centres_path)
    distance = default_max_distance(centres)
    say(f"downstream detection check: one segmenter per fold each for raw average and {RESTORED} "
        f"({opts.downstream_folds} fold(s) x {opts.downstream_repeats} repeat(s) of {opts.downstream_steps} steps) ...")
    results = downstream_comparison({"raw average": raw, RESTORED: restored}, np.rint(labels).astype(np.int16),
                                    centres, target_label=opts.target_label, folds=opts.downstream_folds,
                                    repeats=opts.downstream_repeats, max_distance=distance,
                                    steps=opts.downstream_steps, device=opts.device, log=say)
    plot_precision_recall(results, figure, overwrite=overwrite)
    return {"results": results, "best": best_rows(results), "target_label": opts.target_label,
            "steps": opts.downstream_steps, "folds": opts.downstream_folds,
            "repeats": opts.downstream_repeats, "n_centres": int(len(centres)),
            "max_distance": distance, "seconds": time.perf_counter() - t0}

