"""Reproduce the cryo-CARE paper's comparison (Buchholz et al. 2019) on the built-in simulator.

1. simulate a tomogram with known truth; the two halves are reconstructions of the even and odd
   dose-fractionated frames of every tilt (the paper's frame-split halves), the truth is the same
   reconstruction of the noise-free tilt series;
2. denoise with cryocare-torch (``api.denoise``: Noise2Noise training within a time budget, then both
   halves restored and written, for half-map FSC);
3. ``cryocare evaluate`` on the result (:func:`cryocare_torch.report.evaluate_run`): median, Gaussian
   and NAD baselines oracle-tuned against the truth, PSNR/SSIM, FSC curves (raw halves, restored
   halves, against the truth) and the downstream task -- a segmenter trained on raw and on restored
   data with the same labels, detections of the filament decorations scored by precision/recall
   (:func:`cryocare_torch.evaluate.detection.downstream_comparison`);
4. writes ``table.md`` (the comparison), the figures, ``metrics.json`` and ``report.html`` into
   ``bench/out/paper/`` and appends a section with the command and the table to ``bench/RESULTS.md``.

The specimen is wider than the demo's (64 x 320 x 320 voxels of 8 A, 256 nm across) so that the
downstream task has a few dozen decorations to find; their period is the simulator's default 24 nm, so
neighbouring decorations do not touch and each is one connected object of the label volume (at 14 nm
they merge into one object per filament, and even a perfect segmentation finds one per filament). The
dose is a third of the simulator's default (1 e/A^2 per tilt, 41 in all), the low-SNR regime in which
the paper's raw tomograms limited detection: at the default 123 e/A^2 the raw average is already good
enough that segmenters trained on raw and on restored data detect alike (best F1 0.37-0.56 vs
0.42-0.58 over seeds, bench/RESULTS.md). Two segmenters per fold and volume (seeds 0 and 1) are pooled,
because one segmenter's best F1 varies by about +-0.1 from seed to seed.

    python bench/reproduce_paper.py            # ~40 min on 2 CPU cores (training budget 15 min)

Time on two otherwise idle CPU cores: simulation ~1 min, training 15 min, restoring both halves ~3 min,
baselines ~2 min (NAD dominates), downstream check 2 volumes x 2 folds x 2 seeds x 1000 segmenter steps
~20 min.
On a busy machine everything but training (which stops at its budget) takes proportionally longer.
    python bench/reproduce_paper.py --quick    # ~3 min smoke run into bench/out/paper_quick/, no RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEADING = "## Paper reproduction (bench/reproduce_paper.py)"
FULL = {"shape": (64, 320, 320), "dose": 1.0, "minutes": 15.0, "downstream_steps": 1000, "repeats": 2, "box": 128,
        "out": HERE / "out" / "paper"}
QUICK = {"shape": (48, 128, 128), "dose": 1.0, "repeats": 1,
         "minutes": 0.75, "patch_size": 32, "n_patches": 400, "downstream_steps": 30,
         "box": 64, "out": HERE / "out" / "paper_quick"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def markdown(metrics: dict[str, Any], seconds: dict[str, float]) -> str:
    """The comparison as markdown: quality against the truth, FSC resolutions, downstream detection."""
    lines = ["| method | parameters | PSNR (dB) | vs raw (dB) | SSIM | FSC 0.5 vs truth (nm) |",
             "|---|---|---|---|---|---|"]
    rows = metrics.get("quality") or []
    raw = next((r["psnr"] for r in rows if r["name"] == "raw average"), float("nan"))
    for r in rows:
        lines.append(f"| {r['name']} | {r['params']} | {r['psnr']:.2f} | {r['psnr'] - raw:+.2f} | {r['ssim']:.3f} "
                     f"| {r['fsc_res_0_5_nm']:.2f} |")
    lines += ["", "| FSC | 0.5 (nm) | 0.143 (nm) |", "|---|---|---|"]
    for name, c in metrics["fsc"].items():
        def res(key: str, c: dict[str, Any] = c) -> str:
            return f"{'< ' if c[f'res_{key}_reaches_nyquist'] else ''}{c[f'res_{key}_nm']:.2f}"

        lines.append(f"| {name} | {res('0_5')} | {res('0_143')} |")
    down = metrics.get("downstream")
    if down:
        scored = "each half held out once" if down.get("folds", 1) == 2 else "held-out half"
        lines += ["", f"Downstream detection of {down['n_centres']} decorations ({scored}, "
                      f"{down.get('repeats', 1)} segmenter(s) per fold trained {down['steps']} steps, counts pooled, "
                      f"matched within {down.get('max_distance', float('nan')):.1f} "
                      "voxels; best F1 over size thresholds):", "",
                  "| volume | F1 | precision | recall | size threshold (voxels) | TP / FP / FN |",
                  "|---|---|---|---|---|---|"]
        for name, r in down["best"].items():
            lines.append(f"| {name} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                         f"{r['size_threshold']} | {r['tp']} / {r['fp']} / {r['fn']} |")
    t = metrics.get("training") or {}
    lines += ["", f"Training: {t.get('epochs')} epochs, {t.get('steps')} steps in {t.get('training_minutes', 0):.1f} "
                  f"min (best validation loss {t.get('best_val_loss', float('nan')):.4f}). Wall time: "
                  + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()) + "."]
    return "\n".join(lines) + "\n"


def summary(metrics: dict[str, Any]) -> str:
    """One sentence: restored vs raw and vs the best oracle-tuned baseline, and the downstream F1."""
    rows = {r["name"]: r for r in metrics.get("quality") or []}
    ours, raw = rows.get("cryocare-torch"), rows.get("raw average")
    if not ours or not raw:
        return ""
    base = max((r for n, r in rows.items() if n not in ("cryocare-torch", "raw average")), key=lambda r: r["psnr"],
               default=None)
    text = f"cryocare-torch gains {ours['psnr'] - raw['psnr']:+.2f} dB PSNR over the raw average"
    if base is not None:
        text += (f" ({ours['psnr'] - base['psnr']:+.2f} dB vs the best oracle-tuned baseline, {base['name']}); "
                 f"SSIM {raw['ssim']:.3f} -> {ours['ssim']:.3f}")
    best = (metrics.get("downstream") or {}).get("best") or {}
    if "cryocare-torch" in best and "raw average" in best:
        text += (f"; downstream F1 {best['raw average']['f1']:.2f} (raw) -> "
                 f"{best['cryocare-torch']['f1']:.2f} (restored)")
    return text + "."


def write_results(path: Path, command: str, table: str, note: str, out: Path, machine: str) -> None:
    """Append this run's section to ``path`` (other sections are left as they are)."""
    try:
        rel = out.relative_to(HERE.parent)
    except ValueError:
        rel = out
    section = (f"\n{HEADING}\n\n{time.strftime('%Y-%m-%d')}, `{command}` ({machine}; figures, metrics.json and "
               f"report.html in `{rel}/`, not committed).\n\n" + (f"{note}\n\n" if note else "") + table)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~3 min smoke run (small volume, short training)")
    ap.add_argument("--minutes", type=float, help="training budget (default 15, quick 0.75)")
    ap.add_argument("--downstream-steps", type=int, help="segmenter steps per volume and fold (default 1000, quick 30)")
    ap.add_argument("--box", type=int, help="evaluation box for baselines and PSNR/SSIM (default 128, quick 64)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dose", type=float, help="electron dose per tilt in e/A^2 (default 1.0: 41 e/A^2 in all)")
    ap.add_argument("--downstream-repeats", type=int, help="segmenters per fold and volume, counts pooled (default 2)")
    ap.add_argument("--out", type=Path, help="output folder (default bench/out/paper, quick bench/out/paper_quick)")
    ap.add_argument("--results-file", type=Path,
                    help="markdown file to append the section to (default bench/RESULTS.md; none for --quick)")
    args = ap.parse_args()
    preset = QUICK if args.quick else FULL
    minutes = args.minutes if args.minutes is not None else preset["minutes"]
    steps = args.downstream_steps if args.downstream_steps is not None else preset["downstream_steps"]
    box = args.box if args.box is not None else preset["box"]
    out: Path = args.out or preset["out"]
    results = args.results_file if args.results_file is not None else (None if args.quick else HERE / "RESULTS.md")

    from cryocare_torch.config import CryocareConfig, SimulateConfig
    from cryocare_torch.config_runs import EvalConfig
    from cryocare_torch.report import RunInputs, build_report, evaluate_run
    from cryocare_torch.runtime import set_threads
    from cryocare_torch.simulate import write_dataset
    from cryocare_torch.workflows import api

    threads = set_threads(args.threads)
    load = os.getloadavg()[0]
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    dose = args.dose if args.dose is not None else preset["dose"]
    repeats = args.downstream_repeats if args.downstream_repeats is not None else preset["repeats"]
    sim = SimulateConfig(shape=preset["shape"], n_filaments=6, dose_per_tilt=dose, seed=args.seed)
    log(f"simulating {sim.shape} (seed {sim.seed}) ...")
    paths = write_dataset(sim, out / "data", overwrite=True)
    seconds["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg = CryocareConfig(simulate=sim)
    cfg.train.seed = args.seed
    if args.quick:  # the default 64^3 patches do not fit the small volume
        cfg.patches.patch_size, cfg.patches.n_patches = preset["patch_size"], preset["n_patches"]
    for section in (cfg.train, cfg.predict):
        section.num_threads, section.device = args.threads, args.device
    cfg.predict.write_halves = True
    restored = out / "restored.mrc"
    log(f"denoising: training for up to {minutes:g} min, then restoring both halves ...")
    api.denoise([(paths["tomo_even"], paths["tomo_odd"])], restored, cfg, model_dir=out / "model",
                max_minutes=minutes, overwrite=True, progress=False, log=log)
    seconds["denoise"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    inputs = RunInputs(restored=restored, even=paths["tomo_even"], odd=paths["tomo_odd"], truth=paths["tomo_clean"],
                       labels=paths["labels"], centres=paths["decorations"], model_dir=out / "model")
    metrics = evaluate_run(inputs, out, EvalConfig(box=box, downstream_steps=steps, downstream_repeats=repeats,
                                                          device=args.device),
                           overwrite=True, log=log)
    seconds["evaluate"] = time.perf_counter() - t0
    build_report([out], out / "report.html", overwrite=True,
                 title="cryocare-torch: paper reproduction on the simulator")

    table = markdown(metrics, seconds)
    note = summary(metrics)
    (out / "table.md").write_text(table, encoding="utf-8")
    print(f"\n{note}\n\n{table}\nfigures, metrics.json and report.html in {out}")
    if results is not None:
        command = "python bench/reproduce_paper.py " + shlex.join(sys.argv[1:])
        machine = (f"device {args.device}, {threads} torch threads on {os.cpu_count()} cores, load average "
                   f"{load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end")
        write_results(results, command.strip(), table, note, out, machine)
        print(f"appended to {results}")


if __name__ == "__main__":
    main()
