"""Throughput and memory of one forward pass of the default cryo-CARE U-Net against the tile edge.

For each tile edge ``t`` a fresh child process builds the default model (:class:`cryocare_torch.config.ModelConfig`
defaults: depth 2, 16 first channels, Gaussian skip), runs one forward pass on a ``(1, 1, t, t, t)`` tile of random
values (CPU, bf16 autocast and channels_last_3d as ``cryocare predict`` does) and reports

* the peak-memory cost of the pass: ``ru_maxrss`` after it minus before it, per tile voxel (the activations);

then this process times ``--repeats`` passes per size (after one warm-up pass each, sizes interleaved so that load
from other jobs hits them alike), as raw voxels/s and as *useful* voxels/s, counting per tile only the
``(t - overlap)^3`` voxels that a tile adds in the interior of a large volume. (Timing the first passes of a fresh
process instead gave warm-up artefacts: some sizes 3-5x slower, none of it seen in a warm process.)

    python bench/bench_tile_size.py --tiles 48 64 80 96 112 128 --overlap 24

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


def timings(tiles: list[int], repeats: int, threads: int) -> dict[int, list[float]]:
    """Seconds per forward pass of each tile size, in this (warm) process, sizes interleaved."""
    import torch

    from cryocare_torch.config import ModelConfig
    from cryocare_torch.model import build_model
    from cryocare_torch.runtime import autocast, memory_format

    torch.set_num_threads(threads)
    fmt = memory_format(3, torch.device("cpu"))
    model = build_model(ModelConfig(skip_sigma=(1.5, 1.5, 1.5)), 3).eval().to(memory_format=fmt)
    out: dict[int, list[float]] = {t: [] for t in tiles}
    for r in range(repeats + 1):
        for t in tiles:
            x = torch.randn(1, 1, t, t, t).contiguous(memory_format=fmt)
            t0 = time.perf_counter()
            with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
                model(x)
            if r:  # the first round warms up
                out[t].append(time.perf_counter() - t0)
    return out


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
    peaks = {}
    for t in args.tiles:  # memory: each size in a fresh process
        out = subprocess.check_output([sys.executable, __file__, "--child", str(t), "--repeats", "0", "--threads",
                                       str(args.threads)], text=True)
        peaks[t] = json.loads(out.strip().splitlines()[-1])["peak_mb"]
    secs = timings(args.tiles, args.repeats, args.threads)
    print("\n| tile | overlap | peak MB (activations) | bytes / voxel | s / tile (median) | raw Mvoxel/s "
          "| useful fraction | useful Mvoxel/s |\n|---|---|---|---|---|---|---|---|")
    for t in args.tiles:
        sec = statistics.median(secs[t])
        frac = ((t - args.overlap) / t) ** 3
        print(f"| {t} | {args.overlap} | {peaks[t]:.0f} | {peaks[t] * 2**20 / t**3:.0f} | {sec:.2f} "
              f"| {t**3 / sec / 1e6:.2f} | {frac:.2f} | {frac * t**3 / sec / 1e6:.2f} |")


if __name__ == "__main__":
    main()
