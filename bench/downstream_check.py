"""The downstream detection check alone, on a finished ``bench/reproduce_paper.py`` folder.

Reads the saved halves, the restored tomogram, the noise-free reconstruction, the labels and the
decoration centres of ``--run`` (default ``bench/out/paper``) and runs
:func:`cryocare_torch.evaluate.detection.downstream_comparison` for the truth (the upper bound), the raw
average and the restored tomogram with the library's defaults (two folds, 1000 segmenter steps, matching
within half the decoration spacing). Prints a markdown table of the best F1 over size thresholds and
writes ``precision_recall_check.png`` into the run folder. No denoising is repeated.

    # ~25 min on one core (3 volumes x 2 folds x 1000 steps)
    taskset -c 1 env OMP_NUM_THREADS=1 python bench/downstream_check.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=HERE / "out" / "paper", help="reproduce_paper output folder")
    ap.add_argument("--steps", type=int, help="segmenter steps per fold (default: the library's)")
    ap.add_argument("--folds", type=int, default=2, choices=(1, 2))
    ap.add_argument("--volumes", default="truth,raw,restored", help="comma-separated subset of truth,raw,restored")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from cryocare_torch.evaluate.detection import (
        best_rows,
        default_max_distance,
        downstream_comparison,
        plot_precision_recall,
    )
    from cryocare_torch.io import read_volume
    from cryocare_torch.report.inputs import read_centres
    from cryocare_torch.runtime import set_threads

    set_threads(args.threads)
    data = args.run / "data"
    loaders = {
        "truth (noise-free)": lambda: read_volume(data / "tomo_clean.mrc")[0],
        "raw average": lambda: 0.5 * (read_volume(data / "tomo_even.mrc")[0] + read_volume(data / "tomo_odd.mrc")[0]),
        "cryocare-torch": lambda: read_volume(args.run / "restored.mrc")[0],
    }
    keys = dict(zip(("truth", "raw", "restored"), loaders, strict=True))
    wanted = [keys[v.strip()] for v in args.volumes.split(",")]
    volumes = {name: np.asarray(loaders[name](), dtype=np.float32) for name in wanted}
    labels = np.rint(read_volume(data / "labels.mrc")[0]).astype(np.int16)
    centres = read_centres(data / "decorations.csv")
    extra = {"steps": args.steps} if args.steps is not None else {}
    t0 = time.perf_counter()
    results = downstream_comparison(volumes, labels, centres, folds=args.folds, seed=args.seed,
                                    log=lambda m: print(m, file=sys.stderr, flush=True), **extra)
    minutes = (time.perf_counter() - t0) / 60
    plot_precision_recall(results, args.run / "precision_recall_check.png")
    best = best_rows(results)
    first = next(iter(best.values()))
    print(f"{len(centres)} decorations, {first['tp'] + first['fn']} scored ({args.folds} fold(s)); matching within "
          f"{default_max_distance(centres):.2f} voxels; {minutes:.1f} min\n")
    print("| volume | F1 | precision | recall | size threshold (voxels) | TP / FP / FN |\n|---|---|---|---|---|---|")
    for name, r in best.items():
        print(f"| {name} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['size_threshold']} | "
              f"{r['tp']} / {r['fp']} / {r['fn']} |")


if __name__ == "__main__":
    main()
