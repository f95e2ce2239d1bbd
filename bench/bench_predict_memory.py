"""Peak memory and throughput of ``predict_files`` as the tomogram grows.

Writes synthetic even/odd MRC pairs slab by slab (the bench itself stays low-memory), then runs
:func:`cryocare_torch.predict.predict_files` on each in a fresh subprocess and reads the child's
peak resident memory (``ru_maxrss`` from ``os.wait4``). The volumes share their (h, w) section and
grow in z, the axis prediction streams along, so a bounded implementation shows the same peak for
every size. The network is a tiny U-Net-like model (a full-resolution path and a 3x3x3 convolution
at 1/4 resolution joined by a skip) so that the run measures the tiling/streaming machinery, not
convolution speed on a shared CPU; one extra row runs the real cryo-CARE U-Net from a checkpoint
file on a small volume for reference.

    python bench/bench_predict_memory.py --sizes-gb 0.25 1 --budget-gb 0.5

Prints a markdown table and appends it, with the command, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEADING = "## Prediction memory (bench/bench_predict_memory.py)"


def tiny_unet():  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class TinyUNet(nn.Module):
        """Full-resolution pointwise path + a 3x3x3 conv at 1/4 resolution, joined by a skip."""

        ndim = 3
        size_multiple = 4

        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor([1.0, 0.0, 0.5]))
            self.mid = nn.Conv3d(1, 1, 3, padding=1)
            self.pool = nn.AvgPool3d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = torch.relu(x * self.scale[0] + self.scale[1])
            b = nn.functional.interpolate(self.mid(self.pool(a)), scale_factor=4, mode="nearest")
            return x + self.scale[2] * (b - a)

    torch.manual_seed(0)
    return TinyUNet().eval()


def write_pair(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> tuple[Path, Path]:
    """Noisy halves of a smooth signal, written a few sections at a time."""
    from cryocare_torch.io.mrc import VolumeWriter

    d, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 6, h, dtype=np.float32), np.linspace(0, 6, w, dtype=np.float32),
                         indexing="ij")
    paths = (folder / f"even_{d}.mrc", folder / f"odd_{d}.mrc")
    step = max(1, (1 << 23) // (h * w))
    with VolumeWriter(paths[0], shape, overwrite=True) as we, VolumeWriter(paths[1], shape, overwrite=True) as wo:
        for z0 in range(0, d, step):
            k = min(step, d - z0)
            zz = np.sin(np.arange(z0, z0 + k, dtype=np.float32) * 0.05)[:, None, None]
            signal = np.sin(xx + zz) * np.cos(yy)
            for writer in (we, wo):
                writer.write_slab(z0, signal + rng.standard_normal((k, h, w), dtype=np.float32))
    return paths


def child(args: argparse.Namespace) -> None:
    """Run predict_files once (in its own process) and print a JSON line."""
    from types import SimpleNamespace

    from cryocare_torch.config import PredictConfig
    from cryocare_torch.predict import predict_files

    cfg = PredictConfig(memory_budget_gb=args.budget_gb, device="cpu", precision="fp32", overlap=args.overlap,
                        num_threads=args.threads)
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        ckpt = SimpleNamespace(model=tiny_unet(), ndim=3, normalization={"mean": 0.0, "std": 1.0}, config=None)
    lines: list[str] = []
    t0 = time.perf_counter()
    predict_files(ckpt, Path(args.even), Path(args.odd), Path(args.output), cfg, overwrite=True, progress=False,
                  log=lines.append)
    print(json.dumps({"seconds": time.perf_counter() - t0, "log": lines}))


def run_child(even: Path, odd: Path, out: Path, budget: float, overlap: int | None, threads: int,
              checkpoint: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--even", str(even), "--odd", str(odd), "--output", str(out),
           "--budget-gb", str(budget), "--threads", str(threads)]
    if overlap is not None:
        cmd += ["--overlap", str(overlap)]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    with tempfile.TemporaryFile("w+") as out_fh, tempfile.TemporaryFile("w+") as err_fh:
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_fh.seek(0)
        err_fh.seek(0)
        stdout, stderr = out_fh.read(), err_fh.read()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def baseline_rss_mb() -> float:
    """Peak RSS of a process that only imports torch and the predict module."""
    code = "import resource, torch, cryocare_torch.predict; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    return int(subprocess.check_output([sys.executable, "-c", code], text=True).strip()) / 1024


def make_checkpoint(folder: Path) -> Path:
    """An (untrained) default cryo-CARE U-Net saved in the real checkpoint format."""
    import torch

    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.model import build_model
    from cryocare_torch.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = CryocareConfig()
    return save_checkpoint(folder / "unet.pt", model=build_model(cfg.model, 3), config=cfg, ndim=3,
                           normalization={"mean": 0.0, "std": 1.0})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[0.25, 1.0], help="float32 size of each half")
    ap.add_argument("--hw", type=int, default=512, help="section edge (h = w)")
    ap.add_argument("--budget-gb", type=float, default=0.5, help="PredictConfig.memory_budget_gb")
    ap.add_argument("--overlap", type=int, default=16, help="tile overlap (None: a quarter of the tile)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--unet-shape", type=int, nargs=3, default=[32, 128, 128],
                    help="volume for the real-U-Net reference row (0 0 0 to skip)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the volumes (default: a temp dir)")
    ap.add_argument("--no-results", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--even", "--odd", "--output", "--checkpoint"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        base = baseline_rss_mb()
        cases: list[tuple[str, tuple[int, int, int], Path | None, float]] = [
            ("tiny U-Net-like", (max(1, round(gb * 2**30 / (4 * args.hw * args.hw))), args.hw, args.hw), None, gb)
            for gb in args.sizes_gb
        ]
        if all(args.unet_shape):
            shape = tuple(args.unet_shape)
            cases.append(("cryo-CARE U-Net (depth 2, 16 ch)", shape, make_checkpoint(folder),  # type: ignore[arg-type]
                          4 * float(np.prod(shape)) / 2**30))
        for name, shape, ckpt, gb in cases:
            t0 = time.perf_counter()
            even, odd = write_pair(folder, shape)
            gen = time.perf_counter() - t0
            res = run_child(even, odd, folder / "out.mrc", args.budget_gb, args.overlap, args.threads, ckpt)
            vox = float(np.prod(shape))
            tiles = next((line for line in res["log"] if line.startswith("tiles")), "")
            rows.append((name, "x".join(map(str, shape)), gb, res["peak_rss_mb"], res["seconds"], vox / res["seconds"],
                         tiles))
            print(f"{name} {shape}: written in {gen:.0f}s, peak RSS {res['peak_rss_mb']:.0f} MB, "
                  f"{res['seconds']:.0f}s, {vox / res['seconds'] / 1e6:.2f} Mvoxel/s; {tiles}", flush=True)
            for p in (even, odd, folder / "out.mrc"):
                p.unlink(missing_ok=True)

    table = [
        f"Baseline (python + torch + cryocare_torch.predict imported): peak RSS {base:.0f} MB. "
        f"Budget {args.budget_gb} GB, CPU fp32, {args.threads} threads, overlap {args.overlap}.",
        "",
        "| model | volume (d x h x w) | size per half (GB) | peak RSS (MB) | time (s) | throughput (Mvoxel/s) "
        "| tiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, shape, gb, rss, sec, thr, tiles in rows:
        table.append(f"| {name} | {shape} | {gb:.3g} | {rss:.0f} | {sec:.1f} | {thr / 1e6:.2f} | {tiles} |")
    text = "\n".join(table)
    print("\n" + text)
    if not args.no_results:
        cmd = "python bench/bench_predict_memory.py " + shlex.join(sys.argv[1:])
        results = HERE / "RESULTS.md"
        with open(results, "a", encoding="utf-8") as fh:
            if results.stat().st_size == 0:
                fh.write("# Benchmark results\n")
            fh.write(f"\n{HEADING}\n\n{time.strftime('%Y-%m-%d')}, `{cmd.strip()}`; throughput counts output "
                     "voxels (each restored from both halves).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
