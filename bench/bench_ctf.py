"""What per-view CTF correction before back-projection gives, scored against the true object.

For each defocus: simulate raw data (:func:`~cryocare_torch.simulate.raw.write_raw_dataset`: drifting movies,
per-tilt defocus spread, defocus gradient across the tilted views, Defocus in the ``.mdoc``), then

* noise-free: the simulator's aligned noise-free tilts (``reference/tilt_clean.mrc``) back-projected with
  the true geometry, without correction / phase-flipped / Wiener-filtered (true per-tilt defocus), and
  phase-flipped at one defocus per view (the gradient across tilted views ignored);
* noisy: ``prepare_t2t`` T2T-df halves from the raw movies (motion correction, true ``.xf``/``.tlt``, defocus
  read from the ``.mdoc``), each mode; score of (even + odd) / 2;
* restored: ``cryocare denoise --epochs E --n-patches P --patch-size 48`` (nice 10) on each pair: a fixed,
  short amount of training (default one epoch of 480 patch pairs), not a wall-time budget, as the machine
  is shared.

Scores against the true object on the tomogram grid (:func:`~cryocare_torch.simulate.object_map.object_contrast`
of ``reference/truth_density.mrc``: same sign as the tomograms), as ``cryocare evaluate`` computes them
(:func:`~cryocare_torch.evaluate.object_scores.score_against_object`: correlation, PSNR/SSIM after the
affine fit, central region), and ``r_band``: the correlation of the Fourier coefficients between the first
CTF zero at the largest underfocus and the second at the smallest (+-0.01 cycles/voxel inside), the band
whose contrast the CTF reverses in every tilt. ``--rescore`` scores the volumes of an earlier run again.

    nice -n 10 python bench/bench_ctf.py --defocus 3 5 --epochs 1 --patches 480 --out /tmp/bench_ctf
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.config import CtfConfig, SimulateConfig, config_to_dict
from cryocare_torch.evaluate.object_scores import score_against_object
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.predict.deconvolve import ctf_deconvolve
from cryocare_torch.prepare.ctf import ViewCtf
from cryocare_torch.prepare.pipeline import Alignment, RawTiltSeries
from cryocare_torch.prepare.regimes import prepare_t2t
from cryocare_torch.prepare.views import reconstruct_views
from cryocare_torch.simulate.ctf import electron_wavelength
from cryocare_torch.simulate.object_map import object_contrast
from cryocare_torch.simulate.raw import raw_config, raw_file_names, write_raw_dataset

MODES = ("none", "phaseflip", "wiener")
WHOLE = "phaseflip-whole-view"


def band_corr(vol: np.ndarray, obj: np.ndarray, lo: float, hi: float) -> float:
    """Correlation of the Fourier coefficients of vol and obj with |k| in [lo, hi) cycles/voxel."""
    fa, fb = np.fft.fftn(vol.astype(np.float64)), np.fft.fftn(obj.astype(np.float64))
    f = [np.fft.fftfreq(n) for n in vol.shape]
    r = np.sqrt(f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2)
    m = (r >= lo) & (r < hi)
    return float((fa[m] * fb[m].conj()).real.sum() / np.sqrt((abs(fa[m]) ** 2).sum() * (abs(fb[m]) ** 2).sum()))


def zero_k(dz_um: float, n: int, px: float) -> float:
    """n-th CTF zero (300 kV, Cs 2.7 mm, A 0.07) in cycles/pixel: a k^4 - b k^2 + n pi - asin(A) = 0."""
    lam = electron_wavelength(300.0)
    a, b = math.pi / 2 * 2.7e7 * lam**3, math.pi * lam * dz_um * 1e4
    return math.sqrt((b - math.sqrt(b * b - 4 * a * (n * math.pi - math.asin(0.07)))) / (2 * a)) * px


def scores(vol: np.ndarray, obj: np.ndarray, band: tuple[float, float]) -> dict[str, float]:
    """Correlation, PSNR and SSIM against the object after a*x+b (central region, as ``cryocare evaluate``),
    and the correlation in the reversed band."""
    s = score_against_object(vol, obj)
    return {"r": round(s["correlation"], 4), "psnr": round(s["psnr"], 2), "ssim": round(s["ssim"], 4),
            "r_band": round(band_corr(vol, obj, *band), 4)}


def setting(defocus: float, args: argparse.Namespace) -> SimulateConfig:
    return raw_config(shape=tuple(args.shape), pixel_size=args.pixel_size, defocus_um=defocus, seed=args.seed,
                      defocus_gradient=True, defocus_spread_um=0.2, tilt_step=3.0, n_frames=6)


def make(defocus: float, out: Path, args: argparse.Namespace) -> None:
    """Simulate, reconstruct (noise-free and T2T-df, each correction) and restore into ``out``."""
    cfg = setting(defocus, args)
    t0 = time.time()
    paths = {k: out / v for k, v in raw_file_names("TS_01").items()}
    same = paths["json"].is_file() and json.loads(paths["json"].read_text())["simulate"] == config_to_dict(cfg)
    if not same:  # an earlier run's raw data of the same setting is reused
        paths = write_raw_dataset(cfg, out, overwrite=True)
        print(f"simulated {defocus} um in {time.time() - t0:.0f} s", flush=True)
    d = int(cfg.shape[0])
    for mode in (*MODES, WHOLE):
        noise_free(out, mode, d)
    for mode in MODES:
        pair = prepare_t2t(RawTiltSeries(paths["mdoc"], gain=paths["gain"]), Alignment(paths["xf"], paths["tlt"]),
                           out / "prep", thickness=d, overwrite=True, ctf=CtfConfig(mode=mode))
        even, odd = out / f"even_{mode}.mrc", out / f"odd_{mode}.mrc"
        pair.even.replace(even)
        pair.odd.replace(odd)
        if args.epochs > 0 and mode in args.denoise:
            t1 = time.time()
            cmd = ["nice", "-n", "10", sys.executable, "-m", "cryocare_torch", "denoise", "--even", str(even), "--odd",
                   str(odd), "--output", str(out / f"den_{mode}.mrc"), "--epochs", str(args.epochs), "--n-patches",
                   str(args.patches), "--patch-size", "48", "--seed", "1", "--overwrite"]
            subprocess.run(cmd, check=True, capture_output=True)
            print(f"denoised {mode} in {time.time() - t1:.0f} s", flush=True)


def noise_free(out: Path, mode: str, thickness: int) -> Path:
    """WBP of the simulator's aligned noise-free tilts, corrected by ``mode`` with the true per-tilt defocus
    (``WHOLE``: phase flipping at the centre's defocus over the whole view, ignoring the gradient)."""
    meta = json.loads((out / "simulation.json").read_text())
    angles, px = np.asarray(meta["tilt_angles"]), float(meta["voxel_size"])
    ctf = None if mode == "none" else ViewCtf(mode.split("-")[0], np.asarray(meta["defocus_um"]),
                                              np.zeros_like(angles) if mode == WHOLE else angles, px,
                                              np.zeros(len(angles)))
    return reconstruct_views(out / "reference" / "tilt_clean.mrc", angles, out / f"clean_{mode}.mrc", thickness,
                             normalize="none", ctf=ctf, overwrite=True)


def score_folder(defocus: float, out: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Scores of every volume ``make`` left in ``out`` against the object."""
    cfg = setting(defocus, args)
    obj = object_contrast(torch.from_numpy(read_volume(out / "reference" / "truth_density.mrc")[0]), cfg).numpy()
    band = (zero_k(defocus + 0.2, 1, cfg.pixel_size) + 0.01, zero_k(defocus - 0.2, 2, cfg.pixel_size) - 0.01)
    print(f"{defocus} um: reversed band {band[0]:.3f}-{band[1]:.3f} cycles/voxel", flush=True)
    rows: dict[str, dict[str, float]] = {}
    if not (out / f"clean_{WHOLE}.mrc").is_file():
        noise_free(out, WHOLE, int(cfg.shape[0]))

    def add(key: str, vol: np.ndarray, mode: str) -> None:
        rows[key] = scores(vol, obj, band)
        if mode in ("none", "phaseflip", WHOLE):  # + the tomogram's CTF deconvolution (cryocare deconvolve)
            dec = ctf_deconvolve(torch.from_numpy(vol), cfg.pixel_size, defocus, phase_flipped=mode != "none")
            rows[key + " + deconvolution"] = scores(dec.numpy(), obj, band)

    for mode in (*MODES, WHOLE):
        if (out / f"clean_{mode}.mrc").is_file():
            add(f"noise-free WBP, {mode}", read_volume(out / f"clean_{mode}.mrc")[0], mode)
        if (out / f"even_{mode}.mrc").is_file():
            avg = (read_volume(out / f"even_{mode}.mrc")[0] + read_volume(out / f"odd_{mode}.mrc")[0]) / 2
            add(f"noisy T2T-df (even+odd)/2, {mode}", avg, mode)
        if (out / f"den_{mode}.mrc").is_file():
            den = read_volume(out / f"den_{mode}.mrc")[0]
            add(f"restored ({args.epochs} x {args.patches} patches), {mode}", den, mode)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defocus", type=float, nargs="+", default=[3.0, 5.0])
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 128, 128])
    ap.add_argument("--pixel-size", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--epochs", type=int, default=1, help="training epochs of each restoration (fixed work, not "
                    "wall time: the machine is shared)")
    ap.add_argument("--patches", type=int, default=480, help="48^3 patch pairs per epoch")
    ap.add_argument("--denoise", nargs="+", default=["none", "phaseflip"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_ctf"))
    ap.add_argument("--rescore", action="store_true", help="only score the volumes an earlier run left in --out")
    args = ap.parse_args()
    if not args.rescore:
        for d in args.defocus:
            make(d, args.out / f"df{d:g}", args)
    results = {str(d): score_folder(d, args.out / f"df{d:g}", args) for d in args.defocus}
    print("| defocus (um) | data | correction | r | PSNR (dB) | SSIM | r in the reversed band |")
    print("|---|---|---|---|---|---|---|")
    for d, rows in results.items():
        for key, s in rows.items():
            data, mode = key.rsplit(", ", 1)
            print(f"| {d} | {data} | {mode} | {s['r']:.4f} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['r_band']:.4f} |")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
