"""PSNR cost of float16 (MRC mode 12) restored output against float32, in ONE run on the built-in simulator.

Simulates a T2T-df pair with known truth, trains the default model for a fixed number of steps, restores the pair
once with ``predict.output_dtype=float32`` and once with ``float16`` (the same model, the same tiles), and scores
both against the noise-free reconstruction (PSNR/SSIM after the affine fit, central region). Also reports the
file sizes and the rounding-error check printed by predict.

Usage::

    python bench/bench_float16.py --steps 300 --out bench/out/float16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mrcfile

from cryocare_torch.config import CryocareConfig, SimulateConfig
from cryocare_torch.evaluate.metrics import psnr, ssim
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.simulate import write_dataset
from cryocare_torch.workflows import api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 160, 160))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/out/float16"))
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    paths = write_dataset(SimulateConfig(shape=tuple(args.shape)), out / "sim", overwrite=True)
    even, odd, clean = paths["tomo_even"], paths["tomo_odd"], paths["tomo_clean"]
    cfg = CryocareConfig()
    cfg.train.epochs, cfg.train.steps_per_epoch = 1, args.steps
    cfg.train.num_threads = cfg.predict.num_threads = args.threads
    best = api.train([(even, odd)], out / "model", cfg, overwrite=True)
    truth = read_volume(clean)[0]
    row: dict[str, object] = {"shape": list(args.shape), "steps": args.steps}
    for dtype in ("float32", "float16"):
        cfg.predict.output_dtype = dtype
        path = api.predict(best, even, odd, out / f"restored_{dtype}.mrc", cfg, overwrite=True)
        with mrcfile.open(path) as m:
            row[f"{dtype}_mode"] = int(m.header.mode)
            row[f"{dtype}_voxel_A"] = float(m.voxel_size.x)
        vol = read_volume(path)[0]
        row[f"{dtype}_psnr"] = round(psnr(vol, truth), 4)
        row[f"{dtype}_ssim"] = round(ssim(vol, truth), 5)
        row[f"{dtype}_bytes"] = path.stat().st_size
    raw = 0.5 * (read_volume(even)[0] + read_volume(odd)[0])
    row["raw_psnr"] = round(psnr(raw, truth), 4)
    row["psnr_cost_db"] = round(float(row["float32_psnr"]) - float(row["float16_psnr"]), 5)  # type: ignore[arg-type]
    (out / "float16.json").write_text(json.dumps(row, indent=2))
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
