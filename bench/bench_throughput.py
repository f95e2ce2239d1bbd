"""Throughput and roofline of the cryo-CARE U-Net on this machine, fp32 vs bf16, in ONE run.

Measures, as ratios within the run (shared machines are noisy):

* the "roofline": GFLOP/s of a plain Conv3d (n_first -> n_first, 3^3, on a 64^3 batch) in fp32 and in
  bf16 autocast + channels_last_3d;
* the U-Net training step (forward + backward + Adam) in the same two modes: patch voxels/s and
  achieved GFLOP/s (FLOPs counted by torch.utils.flop_counter), as a fraction of the plain-Conv3d rate;
* tiled prediction throughput (tomogram voxels/s) through ``predict_tensor``;
* the PSNR difference between fp32 and bf16 prediction of the same (briefly trained) network.

Usage: ``python bench/bench_throughput.py [--batch 8] [--patch 64] [--repeats 5] [--threads N]``
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cryocare_torch.config import ModelConfig
from cryocare_torch.model import build_model
from cryocare_torch.predict import predict_tensor
from cryocare_torch.runtime import cpu_has_bf16, set_threads


def _timeit(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _flops(fn) -> int:  # type: ignore[no-untyped-def]
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _ctx(dtype: torch.dtype):  # type: ignore[no-untyped-def]
    if dtype == torch.float32:
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cpu", dtype=dtype)


def conv_rate(batch: int, patch: int, channels: int, dtype: torch.dtype, repeats: int) -> float:
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1)
    x = torch.randn(batch, channels, patch, patch, patch)
    if dtype != torch.float32:
        conv = conv.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)

    def step() -> None:
        with torch.no_grad(), _ctx(dtype):
            conv(x)

    return _flops(step) / _timeit(step, repeats) / 1e9


def unet_train_rate(batch: int, patch: int, n_first: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    model = build_model(ModelConfig(n_first=n_first), ndim=3)
    x = torch.randn(batch, 1, patch, patch, patch)
    y = torch.randn_like(x)
    if dtype != torch.float32:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
        y = y.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _ctx(dtype):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        opt.step()

    seconds = _timeit(step, repeats)
    return _flops(step) / seconds / 1e9, x.numel() / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--n-first", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--volume", type=int, nargs=3, default=(64, 256, 256))
    args = ap.parse_args()
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    modes = [("fp32", torch.float32)] + ([("bf16+cl3d", torch.bfloat16)] if cpu_has_bf16() else [])
    print(f"machine: {platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"bf16 instructions: {cpu_has_bf16()}")
    rows = []
    for name, dtype in modes:
        conv = conv_rate(args.batch, args.patch, args.n_first, dtype, args.repeats)
        unet, vox = unet_train_rate(args.batch, args.patch, args.n_first, dtype, args.repeats)
        rows.append((name, conv, unet, vox))

    # prediction throughput and fp32-vs-bf16 agreement on a smooth test volume
    model = build_model(ModelConfig(n_first=args.n_first), ndim=3).eval()
    vol = torch.randn(*args.volume)
    vol = torch.nn.functional.avg_pool3d(vol[None, None], 5, 1, 2)[0, 0]
    preds, pred_rates = {}, {}
    for name, dtype in modes:
        t0 = time.perf_counter()
        preds[name] = predict_tensor(model, vol, dtype=dtype, memory_budget_gb=1.0)
        pred_rates[name] = vol.numel() / (time.perf_counter() - t0)
    psnr_gap = float("nan")
    if len(preds) == 2:
        ref, other = preds["fp32"], preds["bf16+cl3d"]
        mse = float(torch.mean((ref - other) ** 2))
        psnr_gap = 10 * np.log10(float(ref.max() - ref.min()) ** 2 / max(mse, 1e-20))

    print("\n| mode | plain Conv3d GFLOP/s | U-Net train GFLOP/s | fraction of Conv3d | train patch voxels/s "
          "| predict voxels/s |")
    print("|---|---|---|---|---|---|")
    for name, conv, unet, vox in rows:
        print(f"| {name} | {conv:.1f} | {unet:.1f} | {unet / conv:.2f} | {vox / 1e6:.2f} M | "
              f"{pred_rates[name] / 1e6:.2f} M |")
    if len(rows) == 2:
        print(f"\nbf16 / fp32 speed: Conv3d x{rows[1][1] / rows[0][1]:.2f}, "
              f"U-Net training x{rows[1][3] / rows[0][3]:.2f}, "
              f"prediction x{pred_rates['bf16+cl3d'] / pred_rates['fp32']:.2f}")
        print(f"bf16 prediction vs fp32 of the same network: PSNR {psnr_gap:.1f} dB (agreement)")
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average {load}")


if __name__ == "__main__":
    main()
