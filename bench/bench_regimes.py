"""The six cryo-CARE regimes (Buchholz et al. 2019) end to end from simulated raw data, scored against the truth.

1. ``cryocare prepare simulate-raw``: drifting gain-divided TIFF movies, gain, dose-symmetric .mdoc, true
   .xf/.tlt and the simulator's own reconstructions (reference/);
2. ``cryocare prepare t2t`` (df, eoa) and ``prepare p2p`` (df, ip, tap) from the movies + .mdoc + .xf; the
   T2T halves are compared with the simulator's reconstructions (correlation, FSC-0.143);
3. ``cryocare denoise`` per regime with the same wall-time budget per dimensionality (``--max-minutes``),
   ``cryocare prepare p2p-reconstruct`` for P2P-then-reconstruct; the P2P-tap network restores every
   aligned tilt (``api.predict`` with the tilt as both inputs);
4. 3D: PSNR/SSIM (affine fit, central 80%) and FSC-0.143 with the noise-free reconstruction; 2D: the same
   per tilt (FRC) against the noise-free, drift-free aligned tilt images, averaged over tilts.

    python bench/bench_regimes.py                  # ~20-25 min on 2 CPU cores
    python bench/bench_regimes.py --shape 32 128 128 --tilt-step 10 --minutes-3d 0.2 --minutes-2d 0.2 --no-results

Replaces (or appends) the section "## Six regimes (bench/bench_regimes.py)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEADING = "## Six regimes (bench/bench_regimes.py)"
REGIMES_3D = ("T2T-df", "T2T-eoa", "P2P-then-reconstruct")
REGIMES_2D = ("P2P-df", "P2P-ip", "P2P-tap")


def cli(*args: object) -> None:
    from cryocare_torch.cli.main import main

    argv = [str(a) for a in args]
    print("$ cryocare " + shlex.join(argv), file=sys.stderr, flush=True)
    code = main(argv)
    if code != 0:
        raise SystemExit(f"cryocare {argv[0]} {argv[1] if len(argv) > 1 else ''} failed with exit code {code}")


def fsc143(a: np.ndarray, b: np.ndarray, px: float) -> float:
    from cryocare_torch.evaluate import fsc
    from cryocare_torch.evaluate.metrics import region_slices

    box = region_slices(a.shape)
    return fsc(a[box], b[box], voxel_size=px, mask="box", soft_edge=4).res_0_143


def corr(a: np.ndarray, b: np.ndarray) -> float:
    from cryocare_torch.evaluate.metrics import region_slices

    box = region_slices(a.shape)
    x, y = a[box].astype(np.float64).ravel(), b[box].astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


def score3d(vol: np.ndarray, truth: np.ndarray, px: float) -> dict[str, float]:
    from cryocare_torch.evaluate import psnr, ssim

    return {"psnr": psnr(vol, truth), "ssim": ssim(vol, truth), "res": fsc143(vol, truth, px)}


def score2d(stack: np.ndarray, truth: np.ndarray, px: float) -> dict[str, float]:
    """Mean PSNR/SSIM over the tilts; resolution where the tilts' mean FRC curve drops below 0.143."""
    from cryocare_torch.evaluate import FSCResult, fsc, psnr, ssim
    from cryocare_torch.evaluate.metrics import region_slices

    box = region_slices(truth.shape[1:])
    curves = [fsc(s[box], t[box], voxel_size=px, mask="box", soft_edge=4) for s, t in zip(stack, truth, strict=True)]
    c = curves[0]
    mean = FSCResult(c.frequency_per_nm, np.mean([k.fsc for k in curves], axis=0), c.n_voxels_per_shell, px, c.shape)
    scores = np.mean([(psnr(s, t), ssim(s, t)) for s, t in zip(stack, truth, strict=True)], axis=0)
    return {"psnr": float(scores[0]), "ssim": float(scores[1]), "res": mean.res_0_143}


def aligned(stack: np.ndarray, xf: np.ndarray) -> np.ndarray:
    import torch

    from cryocare_torch.prepare.align import apply_xf

    return apply_xf(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)), xf).numpy()


def run(args: argparse.Namespace, work: Path) -> dict:
    from cryocare_torch import api
    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.io.imod import read_xf
    from cryocare_torch.io.mrc import read_volume

    t0, times = time.perf_counter(), {}
    d = args.shape[0]
    raw, prep, res = work / "raw", work / "prep", work / "restored"
    res.mkdir(parents=True, exist_ok=True)
    cli("prepare", "simulate-raw", raw, "--shape", *args.shape, "--tilt-step", args.tilt_step, "--n-frames",
        args.n_frames, "--seed", args.seed)
    times["simulate"] = time.perf_counter() - t0
    common = ["--mdoc", raw / "TS_01.mdoc", "--gain", raw / "gain.mrc", "--xf", raw / "TS_01.xf", "--tlt",
              raw / "TS_01.tlt"]
    t = time.perf_counter()
    for regime in ("df", "eoa"):
        cli("prepare", "t2t", "--output-dir", prep, "--regime", regime, "--thickness", d, *common)
    for regime in ("df", "ip", "tap"):
        cli("prepare", "p2p", "--output-dir", prep, "--regime", regime, *common)
    times["prepare"] = time.perf_counter() - t
    px = float(json.loads((raw / "simulation.json").read_text())["voxel_size"])

    def vol(p: Path) -> np.ndarray:
        return read_volume(p)[0]

    match = {}
    for regime, ref in (("T2T-df", ""), ("T2T-eoa", "eoa_")):
        tag = regime.split("-")[1]
        e, o = vol(prep / f"TS_01_t2t_{tag}_even.mrc"), vol(prep / f"TS_01_t2t_{tag}_odd.mrc")
        re_, ro = vol(raw / f"reference/tomo_{ref}even.mrc"), vol(raw / f"reference/tomo_{ref}odd.mrc")
        match[regime] = {"corr_even": corr(e, re_), "corr_odd": corr(o, ro), "corr_avg": corr(e + o, re_ + ro),
                         "fsc_avg": fsc143(e + o, re_ + ro, px)}

    train3 = ["--max-minutes", args.minutes_3d, "--patch-size", 32, "--batch-size", 8, "--n-patches", 800,
              "--epochs", 1000, "--seed", args.seed]
    train2 = ["--max-minutes", args.minutes_2d, "--patch-size", 64, "--batch-size", 16, "--n-patches", 1000,
              "--epochs", 1000, "--seed", args.seed]
    out3: dict[str, Path] = {}
    for regime in ("df", "eoa"):
        t = time.perf_counter()
        out3[f"T2T-{regime}"] = res / f"t2t_{regime}.mrc"
        cli("denoise", "--even", prep / f"TS_01_t2t_{regime}_even.mrc", "--odd", prep / f"TS_01_t2t_{regime}_odd.mrc",
            "--output", out3[f"T2T-{regime}"], *train3)
        times[f"T2T-{regime}"] = time.perf_counter() - t
    t = time.perf_counter()
    cli("prepare", "p2p-reconstruct", "--output-dir", res / "p2p_rec", "--thickness", d, *common, *train2)
    out3["P2P-then-reconstruct"] = res / "p2p_rec" / "TS_01_p2p_rec.mrc"
    times["P2P-then-reconstruct"] = time.perf_counter() - t
    pairs2 = {"P2P-df": ("tiltseries/TS_01_even", "tiltseries/TS_01_odd"),
              "P2P-ip": ("tiltseries/TS_01_firsthalf", "tiltseries/TS_01_secondhalf"),
              "P2P-tap": ("TS_01_p2p_tap_even", "TS_01_p2p_tap_odd")}
    out2: dict[str, Path] = {}
    for regime, (e, o) in pairs2.items():
        t = time.perf_counter()
        out2[regime] = res / f"{regime.lower().replace('-', '_')}.mrc"
        cli("denoise", "--even", prep / f"{e}.mrc", "--odd", prep / f"{o}.mrc", "--output", out2[regime],
            "--model-dir", res / f"{regime}_model", *train2)
        times[regime] = time.perf_counter() - t
    tap_aligned = prep / "TS_01_p2p_tap_aligned.mrc"  # the tap network restores every aligned tilt on its own
    out2["P2P-tap"] = api.predict(res / "P2P-tap_model" / "best.pt", tap_aligned, tap_aligned,
                                  res / "p2p_tap_every_tilt.mrc", CryocareConfig(), overwrite=True, progress=False)

    truth3, truth2 = vol(raw / "reference/tomo_clean.mrc"), vol(raw / "reference/tilt_clean.mrc")
    xf = read_xf(raw / "TS_01.xf")
    raw3 = vol(prep / "TS_01_t2t_df_even.mrc") + vol(prep / "TS_01_t2t_df_odd.mrc")
    rows3 = {"raw (WBP of the full frame sums)": score3d(raw3, truth3, px)}
    rows3 |= {k: score3d(vol(p), truth3, px) for k, p in out3.items()}
    rows2 = {"raw (aligned full frame sums)": score2d(vol(tap_aligned), truth2, px)}
    for k, p in out2.items():
        restored = vol(p)
        rows2[k] = score2d(restored if k == "P2P-tap" else aligned(restored, xf), truth2, px)
    times["total"] = time.perf_counter() - t0
    return {"match": match, "3d": rows3, "2d": rows2, "times_s": times, "voxel_size": px,
            "args": {k: v for k, v in vars(args).items() if k != "workdir"}}


def markdown(r: dict, cmd: str) -> str:
    a, t = r["args"], r["times_s"]
    lines = [f"{time.strftime('%Y-%m-%d')}, `{cmd}`; total {t['total'] / 60:.1f} min on 2 shared CPU cores "
             f"(simulation {t['simulate']:.0f} s, prepare {t['prepare']:.0f} s).",
             "",
             f"Data: `cryocare prepare simulate-raw` {' x '.join(map(str, a['shape']))} voxels of "
             f"{r['voxel_size']:g} A, tilts +-60 deg every {a['tilt_step']:g} deg (dose-symmetric), "
             f"{a['n_frames']} frames per movie, 3 e/A^2 per tilt, physical contrast, drift 1.5 px per movie, "
             "misalignment up to 3 px and 2+-0.5 deg, 10% gain. Training budget (`--max-minutes`): "
             f"{a['minutes_3d']:g} min per 3D regime (patches 32^3), {a['minutes_2d']:g} min per 2D network "
             "(patches 64^2); U-Net depth 2, 16 channels. Scores: affine-fitted PSNR/SSIM on the central 80%, "
             "FSC-0.143 resolution against the truth (box mask, 4-voxel cosine edge; in 2D of the tilts' mean FRC); "
             "lower nm = sharper.",
             "", "Prepared halves vs the simulator's own reconstructions (same frames, true drift and alignment):", "",
             "| pair | corr. even | corr. odd | corr. average | FSC-0.143 of the averages (nm) |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {m['corr_even']:.3f} | {m['corr_odd']:.3f} | {m['corr_avg']:.3f} | {m['fsc_avg']:.2f} |"
              for k, m in r["match"].items()]
    for dim, title, truth in (("3d", "3D (tomograms)", "noise-free reconstruction"),
                              ("2d", "2D (tilt images, mean over tilts)", "noise-free aligned tilts")):
        lines += ["", f"{title}, against the {truth}:", "", "| regime | PSNR (dB) | SSIM | FSC-0.143 (nm) | "
                  "train + restore (s) |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['res']:.2f} | "
                  f"{t[k]:.0f} |" if k in t else f"| {k} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['res']:.2f} | - |"
                  for k, s in r[dim].items()]
    s3, s2 = r["3d"], r["2d"]
    checks = [("T2T-df >= T2T-eoa (PSNR)", s3["T2T-df"]["psnr"] >= s3["T2T-eoa"]["psnr"]),
              ("T2T-eoa > P2P-then-reconstruct (PSNR)", s3["T2T-eoa"]["psnr"] > s3["P2P-then-reconstruct"]["psnr"]),
              ("P2P-df sharper than P2P-tap (FRC)", s2["P2P-df"]["res"] < s2["P2P-tap"]["res"]),
              ("P2P-ip sharper than P2P-tap (FRC)", s2["P2P-ip"]["res"] < s2["P2P-tap"]["res"])]
    lines += ["", "Paper's ordering: " + "; ".join(f"{c}: {'yes' if ok else 'NO'}" for c, ok in checks) + "."]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = HERE / "RESULTS.md"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = old.find(HEADING)
    section = f"{HEADING}\n\n{text}"
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = old.find("\n## ", start + len(HEADING))
        new = old[:start] + section + (old[end:] if end >= 0 else "")
    path.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 128, 128])
    ap.add_argument("--tilt-step", type=float, default=3.0)
    ap.add_argument("--n-frames", type=int, default=6)
    ap.add_argument("--minutes-3d", type=float, default=3.0)
    ap.add_argument("--minutes-2d", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the data here (default: a temporary folder)")
    ap.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_regimes_") as tmp:
            result = run(args, Path(tmp))
    cmd = "python bench/bench_regimes.py " + shlex.join(sys.argv[1:])
    text = markdown(result, cmd.strip())
    print(text)
    if not args.no_results:
        (HERE / "bench_regimes.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        write_section(text)


if __name__ == "__main__":
    main()
