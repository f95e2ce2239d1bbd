"""Plain Noise2Noise vs the missing-wedge mode, scored against the true object.

Simulates a lamella the code never trained on (``cryocare simulate`` at an unused seed, tilts -60..60, 3 degree
steps, membranes, filaments and complexes), then for each mode runs ``cryocare train`` with the same time budget
and ``cryocare predict`` in fresh subprocesses (wall time and peak resident memory of each, from
``os.wait4``), and scores the restorations, the raw half average and the noise-free WBP (``tomo_clean.mrc``)
against ``object.mrc``: Pearson correlation and PSNR/SSIM after the affine fit (central region without a 10%
border), and the conical FSC (30-degree cones around z and x) with its z/x ratio. The first row scores the
object less its mean over each z section (the ice slab against the vacuum: the spectrum's kx = ky = 0 line,
which no tilt range short of +-90 degrees measures): what a restoration that got all else exactly right reaches;
"corr. without z profiles" is the correlation once that profile is taken from both the volume and the object.
Each volume is also scored after ``cryocare deconvolve`` (CTF Wiener filter at the simulated defocus, default
strength and falloff): the "+ CTF deconvolution" rows (``--no-deconvolve`` leaves them out).

    nice -n 10 python bench/bench_missing_wedge.py --minutes 10 --out bench/out/missing_wedge --record

Prints a markdown table; ``--record`` appends it, with the command, to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADING = "## Missing-wedge mode vs plain Noise2Noise, against the object (bench/bench_missing_wedge.py)"


def run(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; its wall time (s) and peak resident memory (MB)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"failed: {shlex.join(cmd)}\n{err.read()[-3000:]}")
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": usage.ru_maxrss / 1024}


def cryocare(*args: str) -> list[str]:
    return [sys.executable, "-m", "cryocare_torch.cli", *args]


def scores(volume_path: Path, obj_path: Path) -> dict[str, float]:
    from cryocare_torch.evaluate.directional import directional_resolution
    from cryocare_torch.evaluate.object_scores import correlation, score_against_object, z_profile
    from cryocare_torch.io.mrc import read_volume

    vol, meta = read_volume(volume_path)
    obj, _ = read_volume(obj_path)
    out = score_against_object(vol, obj) | {"corr_no_z": correlation(vol - z_profile(vol), obj - z_profile(obj))}
    d = directional_resolution(vol, obj, voxel_size=float(meta.voxel_size[0]))
    return out | {"z_0_5": d["z"]["res_0_5_nm"], "x_0_5": d["x"]["res_0_5_nm"], "z_0_143": d["z"]["res_0_143_nm"],
                  "x_0_143": d["x"]["res_0_143_nm"], "ratio_0_5": d["ratio_z_over_x_0_5"],
                  "ratio_0_143": d["ratio_z_over_x_0_143"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per mode")
    ap.add_argument("--seed", type=int, default=1313, help="simulator seed (unused by tests and defaults)")
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 192, 192))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["plain", "wedge"], choices=["plain", "wedge"])
    ap.add_argument("--set", action="append", default=[], help="extra --set for the wedge mode's training")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "missing_wedge")
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--sim-args", default="", help="more 'cryocare simulate' options, one string (e.g. "
                    "'--phantom /tmp/ph/phantom.mrc --phantom-axes 1 0 2')")
    ap.add_argument("--no-deconvolve", action="store_true", help="no '+ CTF deconvolution' rows")
    a = ap.parse_args()
    sim = a.out / "sim"
    if not (sim / "object.mrc").is_file():
        run(cryocare("simulate", str(sim), "--seed", str(a.seed), "--shape", *map(str, a.shape), "--overwrite",
                     *shlex.split(a.sim_args)))
    even, odd, obj = sim / "tomo_even.mrc", sim / "tomo_odd.mrc", sim / "object.mrc"
    rows: dict[str, dict[str, float]] = {}
    import numpy as np

    from cryocare_torch.io.mrc import read_volume, write_volume

    raw = 0.5 * (read_volume(even)[0] + read_volume(odd)[0])
    write_volume(a.out / "raw_average.mrc", raw.astype(np.float32), voxel_size=read_volume(even)[1].voxel_size,
                 overwrite=True)
    defocus = json.loads((sim / "simulation.json").read_text())["simulate"]["defocus_um"]

    def add(name: str, path: Path, extra: dict[str, float] | None = None) -> None:
        rows[name] = scores(path, obj) | (extra or {})
        if not a.no_deconvolve:
            dec = path.with_name(path.stem + "_deconv.mrc")
            d = run(cryocare("deconvolve", str(path), "--output", str(dec), "--defocus", str(defocus), "--overwrite",
                             "--threads", str(a.threads)))
            rows[f"{name} + CTF deconvolution"] = scores(dec, obj) | {"deconv_s": d["seconds"],
                                                                       "deconv_mb": d["peak_rss_mb"]}

    from cryocare_torch.evaluate.object_scores import z_profile

    obj_vol, obj_meta = read_volume(obj)
    write_volume(a.out / "object_without_z_profile.mrc", (obj_vol - z_profile(obj_vol)).astype(np.float32),
                 voxel_size=obj_meta.voxel_size, overwrite=True)
    rows["object without its z profile (what no tilt series measures)"] = scores(
        a.out / "object_without_z_profile.mrc", obj)
    add("raw half average", a.out / "raw_average.mrc")
    add("noise-free WBP (tomo_clean)", sim / "tomo_clean.mrc")
    for mode in a.modes:
        model, restored = a.out / f"model_{mode}", a.out / f"restored_{mode}.mrc"
        shutil.rmtree(model, ignore_errors=True)
        extra = ["--missing-wedge", "-60", "60", *[x for s in a.set for x in ("--set", s)]] if mode == "wedge" else []
        t = run(cryocare("train", "--even", str(even), "--odd", str(odd), "--model-dir", str(model),
                         "--max-minutes", str(a.minutes), "--threads", str(a.threads), *extra))
        p = run(cryocare("predict", "--even", str(even), "--odd", str(odd), "--model", str(model / "best.pt"),
                         "--output", str(restored), "--overwrite", "--threads", str(a.threads)))
        steps = json.loads((model / "history.json").read_text())[-1]["steps"]
        add(f"{mode}, {a.minutes:g} min", restored, {
            "train_s": t["seconds"], "train_mb": t["peak_rss_mb"], "predict_s": p["seconds"],
            "predict_mb": p["peak_rss_mb"], "steps": steps})
        for part, label in (("wedge", "its wedge model alone"), ("plain", "its plain warm-up model alone")):
            if restored.with_name(f"{restored.stem}_{part}.mrc").exists():  # predict merged the two models
                add(f"{mode}, {a.minutes:g} min: {label}", restored.with_name(f"{restored.stem}_{part}.mrc"))
    table = format_table(rows)
    print(table)
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    if a.record:
        cmd = "nice -n 10 python bench/bench_missing_wedge.py " + shlex.join(sys.argv[1:])
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(f"\n{HEADING}\n\nCommand: `{cmd}` (data: `cryocare simulate --seed {a.seed} --shape "
                     f"{' '.join(map(str, a.shape))}`, 8 A, tilts -60..60 step 3, defaults otherwise).\n\n{table}\n")


def format_table(rows: dict[str, dict[str, float]]) -> str:
    head = ("| volume | corr. with object | corr. without z profiles | PSNR (dB) | SSIM | FSC-0.5 z / x (nm) | "
            "z/x ratio 0.5 | FSC-0.143 z / x (nm) | train s / MB | predict s / MB | steps |")
    lines = [head, "|" + "---|" * 11]
    for name, r in rows.items():
        run_cols = (f"{r['train_s']:.0f} / {r['train_mb']:.0f} | {r['predict_s']:.0f} / {r['predict_mb']:.0f} | "
                    f"{r['steps']:.0f}") if "train_s" in r else "- | - | -"
        if "deconv_s" in r:
            run_cols = f"- | deconvolve {r['deconv_s']:.0f} / {r['deconv_mb']:.0f} | -"
        lines.append(f"| {name} | {r['correlation']:.3f} | {r['corr_no_z']:.3f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['z_0_5']:.2f} / "
                     f"{r['x_0_5']:.2f} | {r['ratio_0_5']:.2f} | {r['z_0_143']:.2f} / {r['x_0_143']:.2f} | "
                     f"{run_cols} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
