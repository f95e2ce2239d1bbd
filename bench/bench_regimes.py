"""The six cryo-CARE regimes (Buchholz et al. 2019) end to end from simulated raw data, scored against the truth.

1. ``cryocare prepare simulate-raw``: raw movies, gain, .mdoc, true .xf/.tlt, the simulator's reconstructions;
2. ``cryocare prepare t2t`` (df, eoa) and ``prepare p2p`` (df, ip, tap) from the movies + .mdoc + .xf; the
   T2T halves are compared with the simulator's reconstructions (correlation, FSC-0.143);
3. ``cryocare denoise`` per regime with the same wall-time budget per dimensionality (``--max-minutes``),
   ``cryocare prepare p2p-reconstruct`` for P2P-then-reconstruct; the P2P-tap network restores every
   aligned tilt (``api.predict`` with the tilt as both inputs);
4. 3D: PSNR/SSIM (affine fit, central 80%) and FSC-0.143 with the noise-free reconstruction; 2D: the same
   per tilt (FRC) against the noise-free, drift-free aligned tilt images, averaged over tilts.

    python bench/bench_regimes.py                        # ~25 min on 2 shared CPU cores
    python bench/bench_regimes.py --only 2d --drift 0.3  # then: the 2D regimes with less drift (~12 min)

Writes the section "## Six regimes (bench/bench_regimes.py)" of bench/RESULTS.md (``--only 2d``: a sub-section).
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
sys.path.insert(0, str(HERE))
from regime_scores import aligned, corr, fsc143, partner_offsets, score2d, score3d  # noqa: E402

HEADING = "## Six regimes (bench/bench_regimes.py)"


def cli(*args: object) -> None:
    from cryocare_torch.cli.main import main

    argv = [str(a) for a in args]
    print("$ cryocare " + shlex.join(argv), file=sys.stderr, flush=True)
    code = main(argv)
    if code != 0:
        raise SystemExit(f"cryocare {argv[0]} {argv[1] if len(argv) > 1 else ''} failed with exit code {code}")


def run(args: argparse.Namespace, work: Path) -> dict:
    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.io.imod import read_xf
    from cryocare_torch.io.mrc import read_volume
    from cryocare_torch.workflows import api

    t0, times = time.perf_counter(), {}
    d = args.shape[0]
    raw, prep, res = work / "raw", work / "prep", work / "restored"
    res.mkdir(parents=True, exist_ok=True)
    cli("prepare", "simulate-raw", raw, "--shape", *args.shape, "--tilt-step", args.tilt_step, "--n-frames",
        args.n_frames, "--seed", args.seed, "--drift", args.drift)
    times["simulate"] = time.perf_counter() - t0
    common = ["--mdoc", raw / "TS_01.mdoc", "--gain", raw / "gain.mrc", "--xf", raw / "TS_01.xf", "--tlt",
              raw / "TS_01.tlt"]
    t = time.perf_counter()
    for regime in ("df", "eoa"):
        cli("prepare", "t2t", "--output-dir", prep, "--regime", regime, "--thickness", d, *common)
    for regime in ("df", "ip", "tap"):
        cli("prepare", "p2p", "--output-dir", prep, "--regime", regime, *common)
    times["prepare"] = time.perf_counter() - t
    sim = json.loads((raw / "simulation.json").read_text())
    px = float(sim["voxel_size"])

    def vol(p: Path) -> np.ndarray:
        return read_volume(p)[0]

    match = {}
    for regime, ref in (("T2T-df", ""), ("T2T-eoa", "eoa_")):
        tag = regime.split("-")[1]
        e, o = vol(prep / f"TS_01_t2t_{tag}_even.mrc"), vol(prep / f"TS_01_t2t_{tag}_odd.mrc")
        re_, ro = vol(raw / f"reference/tomo_{ref}even.mrc"), vol(raw / f"reference/tomo_{ref}odd.mrc")
        match[regime] = {"corr_even": corr(e, re_), "corr_odd": corr(o, ro), "corr_avg": corr(e + o, re_ + ro),
                         "fsc_avg": fsc143(e + o, re_ + ro, px)}

    train3 = ["--max-minutes", args.minutes_3d, "--patch-size", 32, "--batch-size", 4, "--n-patches", 800,
              "--epochs", 1000, "--seed", args.seed]
    train2 = ["--max-minutes", args.minutes_2d, "--patch-size", 64, "--batch-size", 8, "--n-patches", 1000,
              "--epochs", 1000, "--seed", args.seed]
    out3: dict[str, Path] = {}
    for regime in ("df", "eoa") if args.only == "all" else ():
        t = time.perf_counter()
        out3[f"T2T-{regime}"] = res / f"t2t_{regime}.mrc"
        cli("denoise", "--even", prep / f"TS_01_t2t_{regime}_even.mrc", "--odd", prep / f"TS_01_t2t_{regime}_odd.mrc",
            "--output", out3[f"T2T-{regime}"], *train3)
        times[f"T2T-{regime}"] = time.perf_counter() - t
    if args.only == "all":  # the same training on the simulator's ready-made T2T-df halves (issue 4's yardstick)
        t = time.perf_counter()
        out3["T2T-df, simulator's ready-made halves"] = res / "t2t_df_ready.mrc"
        cli("denoise", "--even", raw / "reference/tomo_even.mrc", "--odd", raw / "reference/tomo_odd.mrc",
            "--output", res / "t2t_df_ready.mrc", "--model-dir", res / "t2t_df_ready_model", *train3)
        times["T2T-df, simulator's ready-made halves"] = time.perf_counter() - t
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
    dirs = {"T2T-df": res / "t2t_df_model", "T2T-eoa": res / "t2t_eoa_model", "P2P-then-reconstruct": res / "p2p_rec"
            / "TS_01_p2p_df_model", "T2T-df, simulator's ready-made halves": res / "t2t_df_ready_model"}
    dirs |= {k: res / f"{k}_model" for k in pairs2}
    steps = {k: json.loads((d / "history.json").read_text())[-1]["steps"] for k, d in dirs.items()
             if (d / "history.json").is_file()}  # optimisation steps the wall-time budget allowed
    model = CryocareConfig().model  # the defaults every command above trained with
    return {"match": match, "3d": rows3, "2d": rows2, "times_s": times, "voxel_size": px, "model": model.model_dump(),
            "steps": steps,
            "partners": partner_offsets(sim, args.shape),
            "args": {k: v for k, v in vars(args).items() if k != "workdir"}}


def markdown(r: dict, cmd: str) -> str:
    a, t = r["args"], r["times_s"]
    if a["only"] == "2d":
        lines = [f"`{cmd}`: the 2D regimes again on data that drift {a['drift']:g} px per movie "
                 f"(otherwise as above; {_unet(r)}; {t['total'] / 60:.1f} min)."]
        return _tables(r, lines, ("2d",))
    lines = [f"{time.strftime('%Y-%m-%d')}, `{cmd}`; total {t['total'] / 60:.1f} min on 2 shared CPU cores "
             f"(simulation {t['simulate']:.0f} s, prepare {t['prepare']:.0f} s).", "",
             f"Data: `cryocare prepare simulate-raw` {' x '.join(map(str, a['shape']))} voxels of "
             f"{r['voxel_size']:g} A, tilts +-60 deg every {a['tilt_step']:g} deg (dose-symmetric), "
             f"{a['n_frames']} frames per movie, 3 e/A^2 per tilt, physical contrast, drift path {a['drift']:g} px "
             "per movie, misalignment up to 3 px and 2+-0.5 deg, 10% gain. Training budget (`--max-minutes`): "
             f"{a['minutes_3d']:g} min per 3D regime (batches of 4 patches of 32^3), {a['minutes_2d']:g} min per "
             f"2D network (batches of 8 patches of 64^2); {_unet(r)}. Scores: affine-fitted "
             "PSNR/SSIM on the central 80%, FSC-0.143 against the truth (box mask, 4-voxel cosine edge; in 2D of "
             "the tilts' mean FRC; lower nm = finer). HF transfer: the truth's detail at 0.2-0.4 cycles/voxel kept "
             "in the result, relative to 0.02-0.1 (1 = as sharp as the truth, < 1 = blurred; noise does not bias "
             "it; unlike the FSC it sees blur); in 2D also across (x) and along (y) the tilt axis, the P2P-tap "
             "partners being displaced along x.",
             "", "Prepared halves vs the simulator's own reconstructions (same frames, true drift and alignment):", "",
             "| pair | corr. even | corr. odd | corr. average | FSC-0.143 of the averages (nm) |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {m['corr_even']:.3f} | {m['corr_odd']:.3f} | {m['corr_avg']:.3f} | {m['fsc_avg']:.2f} |"
              for k, m in r["match"].items()]
    return _tables(r, lines, ("3d", "2d"))


def _unet(r: dict) -> str:
    m = r["model"]
    skip = ", self-tuned Gaussian skip" if m.get("gaussian_skip") and not m["residual"] else ""
    return (f"U-Net depth {m['depth']}, {m['n_first']} channels, {'residual' if m['residual'] else 'non-residual'}"
            f"{skip}")


def _tables(r: dict, lines: list[str], dims: tuple[str, ...]) -> str:
    t = r["times_s"]
    for dim, title, truth in (("3d", "3D (tomograms)", "noise-free reconstruction"),
                              ("2d", "2D (tilt images, mean over tilts)", "noise-free aligned tilts")):
        if dim not in dims:
            continue
        xy = dim == "2d"
        lines += ["", f"{title}, against the {truth}:", "",
                  "| regime | PSNR (dB) | SSIM | FSC-0.143 (nm) | HF transfer "
                  + ("| HF across tilt axis (x) | HF along it (y) " if xy else "") + "| train + restore (s) | steps |",
                  "|---|---|---|---|---|" + ("---|---|" if xy else "") + "---|---|"]
        lines += [f"| {k} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['res']:.2f} | {s['hf']:.2f} | "
                  + (f"{s['hf_x']:.2f} | {s['hf_y']:.2f} | " if xy else "") + (f"{t[k]:.0f} |" if k in t else "- |")
                  + f" {r['steps'].get(k, '-')} |" for k, s in r[dim].items()]
    s3, s2, p = r["3d"], r["2d"], r["partners"]
    lines += ["", f"Partner offsets in the 2D pairs: P2P-ip halves {p['ip_mean']:.2f} px apart on average (any "
              f"direction), each blurred by {p['ip_blur_rms']:.2f} px rms of unaligned drift; P2P-tap neighbours "
              f"{p['tap_median']:.2f} px (median over pairs) to {p['tap_max']:.2f} px rms apart, along x only "
              "(parallax and foreshortening over the ice slab and the central 80%), their inputs motion-corrected."]
    checks = [("P2P-df sharper than P2P-tap across the tilt axis (HF x)", s2["P2P-df"]["hf_x"] > s2["P2P-tap"]["hf_x"]),
              ("P2P-ip sharper than P2P-tap across the tilt axis (HF x)", s2["P2P-ip"]["hf_x"] > s2["P2P-tap"]["hf_x"])]
    if "T2T-df" in s3:
        checks = [("T2T-df >= T2T-eoa (PSNR)", s3["T2T-df"]["psnr"] >= s3["T2T-eoa"]["psnr"]),
                  ("T2T-eoa > P2P-then-reconstruct (PSNR)",
                   s3["T2T-eoa"]["psnr"] > s3["P2P-then-reconstruct"]["psnr"]), *checks]
        ready = s3.get("T2T-df, simulator's ready-made halves")
        if ready:
            gap = s3["T2T-df"]["psnr"] - ready["psnr"]
            checks.append((f"T2T-df from raw frames as good as from the simulator's halves ({gap:+.2f} dB)",
                           gap > -0.5))
    lines += ["", "Paper's ordering: " + "; ".join(f"{c}: {'yes' if ok else 'NO'}" for c, ok in checks) + "."]
    return "\n".join(lines) + "\n"


def write_section(text: str, sub: str | None = None, path: Path = HERE / "RESULTS.md") -> None:
    """Replace this bench's section of RESULTS.md (or, with ``sub``, its ``### sub`` part); append if absent."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = old.find(HEADING)
    if start < 0:
        old, start = old.rstrip("\n") + f"\n\n{HEADING}\n\n", len(old.rstrip("\n")) + 2
    end = old.find("\n## ", start + len(HEADING))
    end = len(old) if end < 0 else end + 1
    body = old[start:end]
    if sub is None:
        kept = body[body.find("\n### ") + 1:] if "\n### " in body else ""  # keep the sub-sections
        body = f"{HEADING}\n\n{text}" + (f"\n{kept}" if kept else "")
    else:
        head = f"### {sub}"
        i = body.find(head)
        if i < 0:
            body = body.rstrip("\n") + f"\n\n{head}\n\n{text}"
        else:
            j = body.find("\n### ", i + len(head))
            body = body[:i] + f"{head}\n\n{text}" + (body[j:] if j >= 0 else "")
    path.write_text(old[:start] + body.rstrip("\n") + "\n" + ("\n" + old[end:] if end < len(old) else ""),
                    encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 128, 128])
    ap.add_argument("--tilt-step", type=float, default=3.0)
    ap.add_argument("--n-frames", type=int, default=6)
    ap.add_argument("--minutes-3d", type=float, default=5.0)
    ap.add_argument("--minutes-2d", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drift", type=float, default=1.5, help="drift path per movie in pixels")
    ap.add_argument("--only", choices=("all", "2d"), default="all", help="2d: train the 2D regimes only")
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
        suffix = "" if args.only == "all" else f"_{args.only}"
        (HERE / f"bench_regimes{suffix}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        write_section(text, None if args.only == "all" else f"2D regimes only, drift path {args.drift:g} px")


if __name__ == "__main__":
    main()
