"""Throughput and roofline of the cryo-CARE U-Net on this machine, fp32 vs bf16, in ONE run.

Measures, as ratios within the run (shared machines are noisy):

* the "roofline": GFLOP/s of a plain Conv3d (n_first -> n_first, 3^3, on a 64^3 batch) in fp32 and in
  bf16 autocast + channels_last_3d;
* the U-Net training step (forward + backward + Adam) in the same two modes: patch voxels/s and
  achieved GFLOP/s (FLOPs counted by torch.utils.flop_counter), as a fraction of the plain-Conv3d rate;
* tiled prediction throughput (tomogram voxels/s) through ``predict_tensor``;
* the PSNR difference between fp32 and bf16 prediction of the same (briefly trained) network.

On a CUDA GPU (``--device cuda``) the modes are fp32 (TF32 convolutions allowed, as cuDNN does by default), bf16 and
fp16 autocast, all channels_last_3d with cuDNN autotuning; peak GPU memory is reported too, and ``--compile`` adds
a ``torch.compile``-d U-Net training step.

Usage: ``python bench/bench_throughput.py [--device auto|cpu|cuda] [--batch 8] [--patch 64] [--repeats 5]
[--threads N] [--compile]``
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
from cryocare_torch.runtime import cpu_has_bf16, resolve_device, set_threads

DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _timeit(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up (oneDNN primitive creation / cuDNN autotuning)
    fn()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _flops(fn) -> int:  # type: ignore[no-untyped-def]
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _ctx(dtype: torch.dtype):  # type: ignore[no-untyped-def]
    if dtype == torch.float32:
        return torch.autocast(DEVICE.type, enabled=False)
    return torch.autocast(DEVICE.type, dtype=dtype)


def _channels_last(dtype: torch.dtype) -> bool:
    return DEVICE.type == "cuda" or dtype != torch.float32


def conv_rate(batch: int, patch: int, channels: int, dtype: torch.dtype, repeats: int) -> float:
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1).to(DEVICE)
    x = torch.randn(batch, channels, patch, patch, patch, device=DEVICE)
    if _channels_last(dtype):
        conv = conv.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)

    def step() -> None:
        with torch.no_grad(), _ctx(dtype):
            conv(x)

    return _flops(step) / _timeit(step, repeats) / 1e9


def unet_train_rate(batch: int, patch: int, n_first: int, dtype: torch.dtype, repeats: int,
                    compile_model: bool = False) -> tuple[float, float]:
    model = build_model(ModelConfig(n_first=n_first), ndim=3).to(DEVICE)
    x = torch.randn(batch, 1, patch, patch, patch, device=DEVICE)
    y = torch.randn_like(x)
    if _channels_last(dtype):
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.to(memory_format=torch.channels_last_3d)
        y = y.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    net = torch.compile(model) if compile_model else model
    flops = _flops(lambda: torch.nn.functional.mse_loss(model(x).float(), y).backward()) if compile_model else 0

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _ctx(dtype):
            loss = torch.nn.functional.mse_loss(net(x).float(), y)
        loss.backward()
        opt.step()

    seconds = _timeit(step, repeats)
    return (flops or _flops(step)) / seconds / 1e9, x.numel() / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--n-first", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--volume", type=int, nargs=3, default=(64, 256, 256))
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile-d training step")
    args = ap.parse_args()
    global DEVICE
    DEVICE = resolve_device(args.device)
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    if DEVICE.type == "cuda":
        torch.backends.cudnn.benchmark = True
        modes = [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
        print(f"device: {torch.cuda.get_device_name(DEVICE)}, torch {torch.__version__}, "
              f"cuDNN {torch.backends.cudnn.version()}")
    else:
        modes = [("fp32", torch.float32)] + ([("bf16+cl3d", torch.bfloat16)] if cpu_has_bf16() else [])
        print(f"machine: {platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
              f"bf16 instructions: {cpu_has_bf16()}")
    rows = []
    for name, dtype in modes:
        conv = conv_rate(args.batch, args.patch, args.n_first, dtype, args.repeats)
        unet, vox = unet_train_rate(args.batch, args.patch, args.n_first, dtype, args.repeats)
        rows.append((name, conv, unet, vox))
        if args.compile:
            unet_c, vox_c = unet_train_rate(args.batch, args.patch, args.n_first, dtype, args.repeats, True)
            rows.append((name + " compiled", conv, unet_c, vox_c))

    # prediction throughput and fp32-vs-bf16 agreement on a smooth test volume
    model = build_model(ModelConfig(n_first=args.n_first), ndim=3).to(DEVICE).eval()
    vol = torch.randn(*args.volume)
    vol = torch.nn.functional.avg_pool3d(vol[None, None], 5, 1, 2)[0, 0]
    preds, pred_rates = {}, {}
    for name, dtype in modes:
        budget = 1.0 if DEVICE.type == "cpu" else 16.0
        predict_tensor(model, vol[:16], dtype=dtype, memory_budget_gb=budget, device=DEVICE)  # warm-up
        t0 = time.perf_counter()
        preds[name] = predict_tensor(model, vol, dtype=dtype, memory_budget_gb=budget, device=DEVICE)
        pred_rates[name] = vol.numel() / (time.perf_counter() - t0)
    gaps = {}
    for name in list(preds)[1:]:
        ref, other = preds["fp32"], preds[name]
        mse = float(torch.mean((ref - other) ** 2))
        gaps[name] = 10 * np.log10(float(ref.max() - ref.min()) ** 2 / max(mse, 1e-20))

    print("\n| mode | plain Conv3d GFLOP/s | U-Net train GFLOP/s | fraction of Conv3d | train patch voxels/s "
          "| predict voxels/s |")
    print("|---|---|---|---|---|---|")
    for name, conv, unet, vox in rows:
        rate = pred_rates.get(name)
        pred = f"{rate / 1e6:.2f} M" if rate else "-"
        print(f"| {name} | {conv:.1f} | {unet:.1f} | {unet / conv:.2f} | {vox / 1e6:.2f} M | {pred} |")
    base = rows[0]
    for name, conv, _unet, vox in rows[1:]:
        pred = f", prediction x{pred_rates[name] / pred_rates['fp32']:.2f}" if name in pred_rates else ""
        print(f"{name} / fp32 speed: Conv3d x{conv / base[1]:.2f}, U-Net training x{vox / base[3]:.2f}{pred}")
    for name, gap in gaps.items():
        print(f"{name} prediction vs fp32 of the same network: PSNR {gap:.1f} dB (agreement)")
    if DEVICE.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(DEVICE) / 2**30:.2f} GiB")
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average {load}")


if __name__ == "__main__":
    main()
