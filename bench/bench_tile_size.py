"""Throughput and memory of one forward pass of the default cryo-CARE U-Net against the tile edge.

For each tile edge ``t`` a fresh child process builds the default model (:class:`cryocare_torch.config.ModelConfig`
defaults: depth 2, 16 first channels, Gaussian skip), runs one forward pass on a ``(1, 1, t, t, t)`` tile of random
values (CPU, bf16 autocast and channels_last_3d as ``cryocare predict`` does) and reports

* the peak-memory cost of the pass: ``ru_maxrss`` after it minus before it, per tile voxel (the activations);
* the time of the next ``--repeats`` passes (median), as raw voxels/s and as *useful* voxels/s, counting per
  tile only the ``(t - overlap)^3`` voxels that a tile adds in the interior of a large volume.

Tile sizes are interleaved over the repeats so that load from other jobs hits them alike.

    python bench/bench_tile_size.py --tiles 48 64 80 96 112 128 --overlap 16

Prints a markdown table (append it to bench/RESULTS.md by hand with the command and the machine's load).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def child(tile: int, repeats: int, threads: int) -> dict:
    import torch

    from cryocare_torch.config import ModelConfig
    from cryocare_torch.model import build_model
    from cryocare_torch.runtime import autocast, memory_format

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(skip_sigma=(1.5, 1.5, 1.5)), 3).eval()
    fmt = memory_format(3, torch.device("cpu"))
    model = model.to(memory_format=fmt)
    x = torch.randn(1, 1, tile, tile, tile).contiguous(memory_format=fmt)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
            model(x)
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tile": tile, "peak_mb": (after - before) / 1024, "times": times[1:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, nargs="+", default=[48, 64, 80, 96, 112, 128])
    ap.add_argument("--overlap", type=int, default=16, help="overlap counted as discarded (voxels)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeats, args.threads)))
        return
    runs: dict[int, list[dict]] = {t: [] for t in args.tiles}
    for _ in range(2):  # two rounds, interleaved
        for t in args.tiles:
            out = subprocess.check_output([sys.executable, __file__, "--child", str(t), "--repeats",
                                           str(args.repeats), "--threads", str(args.threads)], text=True)
            runs[t].append(json.loads(out.strip().splitlines()[-1]))
            print(t, runs[t][-1], flush=True)
    print("\n| tile | overlap | peak MB (activations) | bytes / voxel | s / tile | raw Mvoxel/s | useful fraction "
          "| useful Mvoxel/s |\n|---|---|---|---|---|---|---|---|")
    for t in args.tiles:
        peak = max(r["peak_mb"] for r in runs[t])
        sec = statistics.median([s for r in runs[t] for s in r["times"]])
        frac = ((t - args.overlap) / t) ** 3
        print(f"| {t} | {args.overlap} | {peak:.0f} | {peak * 2**20 / t**3:.0f} | {sec:.2f} | {t**3 / sec / 1e6:.2f} "
              f"| {frac:.2f} | {frac * t**3 / sec / 1e6:.2f} |")


if __name__ == "__main__":
    main()
