"""Seams of trained models: tiled prediction against one tile covering the crop, per tile size and overlap.

For each checkpoint the first ``--crop`` voxels in y and x (all sections) of ``--volume`` are normalised and
restored untiled (bf16 and float32: their difference is the bf16 rounding noise the seams are compared with) and
tiled with each ``tile/overlap`` pair (bf16); prints RMS and largest |tiled - untiled| in normalised units.

    python bench/bench_seams.py --volume sim/tomo_even.mrc --model wedge=model_wedge/best.pt \\
        --model plain=model_plain/best.pt --crop 128
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.io.mrc import read_volume
from cryocare_torch.predict.arrays import predict_tensor, sample_stats
from cryocare_torch.train.checkpoint import load_checkpoint

PAIRS = ((32, 8), (48, 12), (64, 16), (64, 28), (96, 28), (96, 36), (96, 44))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volume", type=Path, required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=checkpoint (repeatable)")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vol = read_volume(a.volume)[0][:, : a.crop, : a.crop]
    mean, std = sample_stats([vol])
    x = torch.as_tensor((vol - mean) / std, dtype=torch.float32)
    print("| model | tile / overlap | tiled - untiled RMS | max |\n|---|---|---|---|")
    for item in a.model:
        name, _, path = item.partition("=")
        model = load_checkpoint(path).model.eval()
        whole = max(x.shape[1:]) + 4 * 2**int(getattr(model, "depth", 2))
        ref = predict_tensor(model, x, tile_size=whole, overlap=0, batch_size=1, dtype="bf16", memory_budget_gb=8)
        ref32 = predict_tensor(model, x, tile_size=whole, overlap=0, batch_size=1, dtype="fp32", memory_budget_gb=8)
        d = (ref - ref32).numpy()
        print(f"| {name} (restored std {float(ref.std()):.3f}) | untiled bf16 - float32 | "
              f"{np.sqrt((d ** 2).mean()):.1e} | {np.abs(d).max():.1e} |")
        for tile, overlap in PAIRS:
            y = predict_tensor(model, x, tile_size=tile, overlap=overlap, batch_size=4, dtype="bf16",
                               memory_budget_gb=8)
            d = (y - ref).numpy()
            print(f"| {name} | {tile} / {overlap} | {np.sqrt((d ** 2).mean()):.1e} | {np.abs(d).max():.1e} |",
                  flush=True)


if __name__ == "__main__":
    main()
