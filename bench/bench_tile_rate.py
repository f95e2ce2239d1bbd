"""Forward-pass rate of the default U-Net for cubic and flat tiles, in one warm process (bf16 autocast,
channels_last_3d, 2 threads as ``cryocare predict`` on CPU); sizes interleaved, best of 3 passes after a warm-up.

    python bench/bench_tile_rate.py
"""

from __future__ import annotations

import time

import torch

from cryocare_torch.config import ModelConfig
from cryocare_torch.model import build_model
from cryocare_torch.runtime import autocast, memory_format

torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model(ModelConfig(skip_sigma=(1.5, 1.5, 1.5)), 3).eval()
fmt = memory_format(3, torch.device("cpu"))
model = model.to(memory_format=fmt)
shapes = [(68, 68, 68), (64, 96, 96), (84, 96, 96), (96, 96, 96), (64, 112, 112), (48, 128, 128), (64, 128, 128),
          (76, 140, 140), (64, 176, 176), (40, 160, 160)]
res: dict[tuple[int, int, int], list[float]] = {s: [] for s in shapes}


def run(s: tuple[int, int, int]) -> float:
    x = torch.randn(1, 1, *s).to(memory_format=fmt)
    with torch.no_grad(), autocast(torch.device("cpu"), torch.bfloat16):
        t0 = time.perf_counter()
        model(x)
        return time.perf_counter() - t0


for s in shapes:
    run(s)
for _ in range(3):
    for s in shapes:
        res[s].append(run(s))
print("| tile (z x y x x) | Mvoxel | best pass (s) | Mvoxel/s | passes (s) |")
print("|---|---|---|---|---|")
for s in shapes:
    v, t = s[0] * s[1] * s[2], min(res[s])
    passes = [round(x, 2) for x in res[s]]
    print(f"| {'x'.join(map(str, s))} | {v / 1e6:.2f} | {t:.2f} | {v / t / 1e6:.2f} | {passes} |")
