"""Restoration quality against the number of optimisation steps, in ONE run on one simulated T2T-df pair.

Answers "is the network under-trained at this budget, and what does more training buy?": it simulates the
default specimen once, scores the raw half average and the oracle-tuned Gaussian against the noise-free
reconstruction, then trains the default U-Net for each step count in ``--steps`` (fixed step counts, not a
time budget, so the answer does not depend on machine load; the cosine schedule spans each run) and scores
the restoration. Wall time per run is reported as well.

Usage::

    python bench/quality_curve.py --device cuda --steps 250 1000 4000 --patch 32 64 --out bench/out/curve
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.config import CryocareConfig, SimulateConfig
from cryocare_torch.evaluate.baselines import best_gaussian
from cryocare_torch.evaluate.metrics import psnr, ssim
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.simulate import write_dataset
from cryocare_torch.workflows import api

EVAL_REGION = 0.8  # central fraction per axis, as in the other quality benchmarks


def _region(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(int(s * (1 - EVAL_REGION) / 2), int(s * (1 + EVAL_REGION) / 2)) for s in shape)


def _scores(x: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    reg = _region(truth.shape)
    return {"psnr": float(psnr(x, truth, region=reg)), "ssim": float(ssim(x, truth, region=reg))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/out/curve"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, nargs="+", default=[250, 1000])
    ap.add_argument("--patch", type=int, nargs="+", default=[32])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--n-first", type=int, default=16)
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="simulated tomogram (z y x); default: demo size")
    ap.add_argument("--seed", type=int, default=0, help="simulation seed")
    args = ap.parse_args()

    data = args.out / "data"
    sim = SimulateConfig(seed=args.seed) if args.shape is None else SimulateConfig(shape=tuple(args.shape),
                                                                                    seed=args.seed)
    t0 = time.perf_counter()
    if not (data / "tomo_clean.mrc").exists():
        write_dataset(sim, data, overwrite=True)
    print(f"simulation {sim.shape} seed {sim.seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    even, odd, clean = (data / f"tomo_{n}.mrc" for n in ("even", "odd", "clean"))
    truth, meta = read_volume(clean)
    raw = 0.5 * (read_volume(even)[0] + read_volume(odd)[0])
    sigma, gauss = best_gaussian(raw, truth, region=_region(truth.shape))
    rows = [{"method": "raw half average", **_scores(raw, truth)},
            {"method": f"Gaussian, oracle sigma {sigma:g}", **_scores(gauss, truth)}]
    print(rows, flush=True)
    for patch in args.patch:
        for steps in args.steps:
            cfg = CryocareConfig()
            cfg.model.n_first = args.n_first
            cfg.patches.patch_size = patch
            cfg.train.device = cfg.predict.device = args.device
            cfg.train.batch_size = args.batch
            cfg.train.learning_rate = args.lr
            cfg.train.steps_per_epoch = min(100, steps)
            cfg.train.epochs = max(1, steps // cfg.train.steps_per_epoch)
            run = args.out / f"p{patch}_s{steps}"
            t1 = time.perf_counter()
            best = api.train([(even, odd)], run / "model", cfg, overwrite=True, progress=False, log=lambda _m: None)
            t_train = time.perf_counter() - t1
            out = api.predict(best, even, odd, run / "restored.mrc", cfg, overwrite=True, progress=False,
                              log=lambda _m: None)
            t_pred = time.perf_counter() - t1 - t_train
            hist = json.loads((run / "model" / "history.json").read_text())
            epochs = hist if isinstance(hist, list) else hist.get("epochs", [])
            val = [e.get("val_loss") for e in epochs if isinstance(e, dict)]
            row = {"method": f"U-Net patch {patch}, {steps} steps", **_scores(read_volume(out)[0], truth),
                   "train_s": round(t_train, 1), "predict_s": round(t_pred, 1),
                   "best_val": min((v for v in val if v is not None), default=None)}
            rows.append(row)
            print(row, flush=True)
    print("\n| method | PSNR (dB) | SSIM | train (s) | predict (s) | best val loss |\n|---|---|---|---|---|---|")
    for r in rows:
        bv = f"{r['best_val']:.4f}" if r.get("best_val") else "-"
        print(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r.get('train_s', '-')} | "
              f"{r.get('predict_s', '-')} | {bv} |")
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    (args.out / "curve.json").write_text(json.dumps({"device": dev, "rows": rows, "args": vars(args)}, default=str,
                                                    indent=1))


if __name__ == "__main__":
    main()
