"""Peak host memory and wall time of ``cryocare predict`` / ``cryocare batch`` as the tomogram grows.

Writes random-valued (standard normal) even/odd MRC pairs of ``--hw`` x ``--hw`` sections, a few sections at a
time (the bench itself stays low-memory), then restores each one in a fresh child process through the batch
workflow (:func:`cryocare_torch.workflows.batch.run_all`, the code path of ``cryocare predict``/``batch``/``watch``:
each item is :func:`cryocare_torch.predict.predict_files`). The volumes share their section and grow in z, the
axis prediction streams along, so a bounded implementation shows the same peak at every size. Reported per run:

* peak RSS: the child's ``ru_maxrss`` (``os.wait4``), file-backed pages (mapped libraries, input maps) included;
* peak anonymous RSS: ``RssAnon`` of ``/proc/<pid>/status`` sampled every 0.1 s by a thread of the child;
* wall time of the restoration and the tile plan it logged.

The model is a checkpoint (``--checkpoint``, e.g. the ``best.pt`` of ``cryocare train`` at its defaults), else a
default-architecture U-Net saved untrained (same memory and speed as a trained one). ``--old-src DIR`` runs each
case a second time with ``PYTHONPATH=DIR`` (e.g. the ``src`` of an earlier commit, from ``git archive``), for a
before/after within one run. ``--batch N`` adds one child that restores N pairs of ``--batch-gb`` in turn.

    python bench/bench_predict_memory.py --sizes-gb 0.25 1 4 --batch 4 --checkpoint model/best.pt \\
        --old-src /tmp/old/src

Prints a markdown table and appends it, with the command, to bench/RESULTS.md (not with ``--no-results``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEADING = "## Prediction memory (bench/bench_predict_memory.py)"
SRC = HERE.parent / "src"


def proc_status() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process in MB (Linux)."""
    out: dict[str, float] = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class Sampler(threading.Thread):
    """Peak RssAnon / RssFile, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = {"RssAnon": 0.0, "RssFile": 0.0}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            s = proc_status()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s[k])
            self.done.wait(self.interval)


def write_pair(folder: Path, shape: tuple[int, int, int], seed: int = 0) -> tuple[Path, Path]:
    """Standard-normal halves, written a few sections at a time."""
    from cryocare_torch.io.mrc import VolumeWriter

    d, h, w = shape
    rng = np.random.default_rng(seed)
    paths = (folder / f"even_{d}.mrc", folder / f"odd_{d}.mrc")
    step = max(1, (1 << 23) // (h * w))
    with VolumeWriter(paths[0], shape, overwrite=True) as we, VolumeWriter(paths[1], shape, overwrite=True) as wo:
        for z0 in range(0, d, step):
            for writer in (we, wo):
                writer.write_slab(z0, rng.standard_normal((min(step, d - z0), h, w), dtype=np.float32))
    return paths


def child(args: argparse.Namespace) -> None:
    """Restore the pairs in turn in this process through the batch workflow; print a JSON line."""
    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.workflows.batch import BatchItem, Manifest, run_all

    cfg = CryocareConfig()
    cfg.predict.memory_budget_gb = args.budget_gb
    cfg.predict.device = "cpu"
    cfg.predict.precision = args.precision
    cfg.predict.num_threads = args.threads
    items = [BatchItem(f"p{i}", Path(args.even), Path(args.odd), Path(args.output).with_name(f"out_{i}.mrc"))
             for i in range(args.n_pairs)]
    lines: list[str] = []
    per_pair: list[float] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("["):  # "[k/n] name: done (s)": the anonymous RSS after each pair
            per_pair.append(proc_status()["RssAnon"])

    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    run_all(Manifest(Path(args.checkpoint), cfg, items, overwrite=True), log=log)
    seconds = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    for item in items:
        item.output.unlink(missing_ok=True)
    print(json.dumps({"seconds": seconds, "peak_anon_mb": sampler.peak["RssAnon"],
                      "peak_file_mb": sampler.peak["RssFile"], "anon_after_pair_mb": per_pair, "log": lines}))


def run_child(args: argparse.Namespace, even: Path, odd: Path, out: Path, src: Path, n_pairs: int = 1) -> dict:
    cmd = ["nice", "-n", "10", sys.executable, __file__, "--child", "--even", str(even), "--odd", str(odd),
           "--output", str(out), "--checkpoint", str(args.checkpoint), "--budget-gb", str(args.budget_gb),
           "--threads", str(args.threads), "--precision", args.precision, "--n-pairs", str(n_pairs)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryFile("w+") as out_fh, tempfile.TemporaryFile("w+") as err_fh:
        proc = subprocess.Popen(cmd, stdout=out_fh, stderr=err_fh, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (nice execs into python)
        code = os.waitstatus_to_exitcode(status)
        out_fh.seek(0)
        err_fh.seek(0)
        stdout, stderr = out_fh.read(), err_fh.read()
    if code != 0:
        raise SystemExit(f"child failed ({code}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["tiles"] = next((ln for ln in result["log"] if ln.startswith("tiles")), "")
    return result


def make_checkpoint(folder: Path) -> Path:
    """An (untrained) default cryo-CARE U-Net saved in the real checkpoint format."""
    import torch

    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.model import build_model
    from cryocare_torch.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = CryocareConfig()
    cfg.model.skip_sigma = (1.5, 1.5, 1.5)
    return save_checkpoint(folder / "unet.pt", model=build_model(cfg.model, 3), config=cfg, ndim=3,
                           normalization={"mean": 0.0, "std": 1.0})


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", type=float, nargs="*", default=[0.25, 1.0], help="float32 size of each half")
    ap.add_argument("--hw", type=int, default=1024, help="section edge (h = w)")
    ap.add_argument("--budget-gb", type=float, default=1.0, help="--memory-budget")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: untrained default U-Net)")
    ap.add_argument("--old-src", type=Path, default=None, help="src folder of the code to compare with")
    ap.add_argument("--old-sizes-gb", type=float, nargs="*", default=None,
                    help="the sizes the old code also runs (default: all of --sizes-gb and the batch)")
    ap.add_argument("--batch", type=int, default=0, help="pairs restored in one process (0: no batch row)")
    ap.add_argument("--batch-gb", type=float, default=0.25, help="size of each half in the batch row")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the volumes (default: a temp dir)")
    ap.add_argument("--no-results", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n-pairs", type=int, default=1, help=argparse.SUPPRESS)
    for name in ("--even", "--odd", "--output"):
        ap.add_argument(name, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse()
    if args.child:
        child(args)
        return
    trees = [("after", SRC)] + ([("before", args.old_src.resolve())] if args.old_src else [])
    cases = [(gb, 1) for gb in args.sizes_gb] + ([(args.batch_gb, args.batch)] if args.batch else [])
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        if args.checkpoint is None:
            args.checkpoint = make_checkpoint(folder)
        for gb, n_pairs in cases:
            shape = (max(1, round(gb * 2**30 / (4 * args.hw * args.hw))), args.hw, args.hw)
            even, odd = write_pair(folder, shape)
            for label, src in trees:
                if label == "before" and args.old_sizes_gb is not None and (n_pairs > 1 or gb not in args.old_sizes_gb):
                    continue
                r = run_child(args, even, odd, folder / "out.mrc", src, n_pairs)
                after = ", ".join(f"{v:.0f}" for v in r["anon_after_pair_mb"]) if n_pairs > 1 else ""
                rows.append((label, "x".join(map(str, shape)), gb, n_pairs, r["peak_rss_mb"], r["peak_anon_mb"],
                             r["seconds"], r["tiles"], after))
                print(rows[-1], flush=True)
            even.unlink()
            odd.unlink()
    table = [f"Budget {args.budget_gb} GB, CPU {args.precision}, {args.threads} threads, model {args.checkpoint}.", "",
             "| code | volume per half (d x h x w) | GB per half | pairs | peak RSS (MB) | peak anonymous RSS (MB) "
             "| wall (s) | tiling | anonymous RSS after each pair (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, shape, gb, n, rss, anon, sec, tiles, after in rows:
        table.append(f"| {label} | {shape} | {gb:.3g} | {n} | {rss:.0f} | {anon:.0f} | {sec:.0f} | {tiles} | {after} |")
    text = "\n".join(table)
    print("\n" + text)
    if not args.no_results:
        cmd = "python bench/bench_predict_memory.py " + shlex.join(sys.argv[1:])
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(f"\n{HEADING}\n\n{time.strftime('%Y-%m-%d')}, `{cmd.strip()}`\n\n{text}\n")


if __name__ == "__main__":
    main()
