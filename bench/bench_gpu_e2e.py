"""End-to-end time to denoise a large tomogram pair (default 500 x 2000 x 2000 voxels per half), in ONE run.

Builds the pair by tiling the simulator's default T2T-df halves periodically (so the content and the noise
statistics are those of a real-looking tomogram, at full size on disk as float32 MRC), then trains with a wall
time budget (``--minutes``) and predicts the whole pair through the tiled, memory-mapped path. Reports the
time of each phase, voxels/s of prediction, peak host RSS and peak GPU memory.

Usage::

    python bench/bench_gpu_e2e.py --device cuda --shape 500 2000 2000 --minutes 3 --out /tmp/e2e
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.config import CryocareConfig, SimulateConfig
from cryocare_torch.io.mrc import VolumeMeta, VolumeWriter, read_meta, read_volume
from cryocare_torch.simulate import write_dataset
from cryocare_torch.workflows import api


def tile_up(src: np.ndarray, shape: tuple[int, int, int], path: Path, voxel: float) -> None:
    """Write ``src`` repeated periodically (mirrored, so no seams) to a ``shape`` float32 MRC."""
    mirrored = np.concatenate([src, src[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[:, :, ::-1]], axis=2)
    d, h, w = shape
    iy = np.arange(h) % mirrored.shape[1]
    ix = np.arange(w) % mirrored.shape[2]
    meta = VolumeMeta(shape=shape, voxel_size=(voxel, voxel, voxel))
    with VolumeWriter(path, shape, meta, overwrite=True) as wr:
        for z0 in range(0, d, 8):
            zs = np.arange(z0, min(d, z0 + 8)) % src.shape[0]
            wr.write_block((z0, 0, 0), mirrored[zs][:, iy][:, :, ix].astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(500, 2000, 2000))
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall-time budget")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("bench/out/e2e"))
    ap.add_argument("--budget-gb", type=float, nargs="+", default=[1.0],
                    help="prediction memory budget(s) to time (PredictConfig.memory_budget_gb)")
    args = ap.parse_args()
    shape = tuple(args.shape)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    small = args.out / "small"
    if not (small / "tomo_even.mrc").exists():
        write_dataset(SimulateConfig(), small, overwrite=True)
    t_sim = time.perf_counter() - t0
    even, odd = args.out / "big_even.mrc", args.out / "big_odd.mrc"
    for name, path in (("even", even), ("odd", odd)):
        if not path.exists() or read_meta(path).shape != shape:
            vol, meta = read_volume(small / f"tomo_{name}.mrc")
            tile_up(vol, shape, path, meta.pixel_size)
    t_build = time.perf_counter() - t0 - t_sim
    print(f"pair {shape} ({np.prod(shape) * 4 / 1e9:.1f} GB per half) built in {t_build:.0f} s", flush=True)

    cfg = CryocareConfig()
    cfg.train.device = cfg.predict.device = args.device
    cfg.train.max_minutes = args.minutes
    logs: list[str] = []

    def log(m: str) -> None:
        logs.append(m)
        print(m, flush=True)

    t1 = time.perf_counter()
    best = api.train([(even, odd)], args.out / "model", cfg, overwrite=True, progress=False, log=log)
    t_train = time.perf_counter() - t1
    t_preds = {}
    for budget in args.budget_gb:
        cfg.predict.memory_budget_gb = budget
        t2 = time.perf_counter()
        out = api.predict(best, even, odd, args.out / "restored.mrc", cfg, overwrite=True, progress=False, log=log)
        t_preds[budget] = time.perf_counter() - t2
    t_pred = min(t_preds.values())
    nvox = float(np.prod(shape))
    gpu = (f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if torch.cuda.is_available() else "-")
    print(f"\n| phase | wall (s) |\n|---|---|\n| simulate small pair | {t_sim:.0f} |\n"
          f"| build the large pair (write 2 x {nvox * 4 / 1e9:.1f} GB) | {t_build:.0f} |\n"
          f"| train (budget {args.minutes:g} min, incl. patch extraction) | {t_train:.0f} |\n"
          + "".join(f"| predict both halves + average + write, budget {b:g} GB | {t:.0f} |\n"
                    for b, t in t_preds.items())
          + f"| train + predict (end to end from the pair) | {t_train + t_pred:.0f} |")
    print(f"prediction {nvox / t_pred / 1e6:.1f} M voxels/s of tomogram; peak host RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; peak GPU memory (this process) {gpu}; "
          f"output {out}")


if __name__ == "__main__":
    main()
