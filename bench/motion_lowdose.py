"""Low-dose tilt-movie cases for bench/bench_motion.py (issue 17): the project's simulator at one tilt (0 deg),
8 A pixels, 300 kV, a counting detector (pixel-sinc MTF, 3% gain noise corrected by its reference, a few hot
pixels), random-walk drift of ~1 px rms, and the estimator's own reliability verdict; plus hot-pixel and
gain-orientation detection rates on simulated detectors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from cryocare_torch.config import SimulateConfig
from cryocare_torch.io.movie import orient_gain
from cryocare_torch.prepare.defects import fill_defect_pixels, find_defect_pixels, gain_orientation_scores
from cryocare_torch.prepare.motion import estimate_drift_detailed
from cryocare_torch.simulate.acquisition import simulate_tilt_series
from cryocare_torch.simulate.dataset import make_phantom, required_lateral_pad
from cryocare_torch.simulate.detector import Detector


def rms(est: torch.Tensor, truth: torch.Tensor) -> float:
    est, truth = est - est.mean(0), truth - truth.mean(0)
    return float(((est - truth) ** 2).sum(1).mean().sqrt())


def lowdose_movie(n_frames: int, dose: float, defocus: float, seed: int, size: int = 256,
                  drift_rms: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gain-corrected frames with hot pixels, true drift (t, 2), noise-free sum) at 0 degrees."""
    cfg = SimulateConfig(shape=(48, size, size), pixel_size=8.0, tilt_min=-3, tilt_max=0, tilt_step=3,
                         n_frames=n_frames, dose_per_tilt=dose, defocus_um=defocus, seed=seed)
    g = torch.Generator().manual_seed(seed + 1000)
    walk = torch.cumsum(torch.randn(2, n_frames, 2, generator=g), 1)
    walk -= walk.mean(1, keepdim=True)
    drift = walk * drift_rms / walk[1].norm(dim=-1).pow(2).mean().sqrt()  # tilt 0 is index 1
    det = Detector(mtf=True, gain_sd=0.03, hot_fraction=2e-4, hot_counts=5.0, seed=seed)
    ts = simulate_tilt_series(make_phantom(cfg, lateral_pad=required_lateral_pad(tuple(cfg.shape), 3)), cfg,
                              keep_frames=True, frame_drift=drift, detector=det)
    assert ts.frames is not None
    k = int(ts.angles.abs().argmin())
    gain = torch.from_numpy(det.gain_reference((size, size)))
    return ts.frames[k] * gain, drift[k], ts.clean[k]


def lowdose_table(cases: list[tuple[int, float, float]], seeds: list[int],
                  others: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> None:
    print("\nLow-dose tilt movies (simulator, 0 deg, 8 A px, 256^2, counting detector with MTF, 3% gain noise "
          "corrected, hot pixels removed first): rms trajectory error (px) per movie")
    print("| frames | e/A^2 | defocus um | seed | e-/px/frame | true drift rms | ours: error (reported) | ours applied"
          " (verdict) | B A^2, group | " + " | ".join(others) + " | s |")
    print("|---" * (10 + len(others)) + "|")
    for n_frames, dose, defocus in cases:
        for seed in seeds:
            frames, drift, _ = lowdose_movie(n_frames, dose, defocus, seed)
            frames = fill_defect_pixels(frames, find_defect_pixels(frames).mask)
            t0 = time.perf_counter()
            est = estimate_drift_detailed(frames, pixel_size=8.0)
            dt = time.perf_counter() - t0
            verdict = "reliable" if est.reliable else "unshifted"
            cells = [f"{rms(fn(frames), drift):.3f}" for fn in others.values()]
            print(f"| {n_frames} | {dose:g} | {defocus:g} | {seed} | {float(frames.mean()):.2f} | "
                  f"{rms(torch.zeros_like(drift), drift):.2f} | {rms(est.fitted, drift):.3f} ({est.error_px:.3f}) | "
                  f"{rms(est.shifts, drift):.3f} ({verdict}) | {est.bfactor:.0f}, {est.group_size} | "
                  + " | ".join(cells) + f" | {dt:.0f} |", flush=True)


def detection_rates(n_movies: int) -> None:
    """Hot/dead pixels found and gain orientations identified on simulated detectors (seeds 500+)."""
    found = missed = false = 0
    right = 0
    for s in range(n_movies):
        det = Detector(mtf=True, gain_sd=0.03, hot_fraction=5e-4, hot_counts=3.0, dead_fraction=2e-4, seed=500 + s)
        g = torch.Generator().manual_seed(600 + s)
        img = torch.fft.irfft2(torch.fft.rfft2(torch.randn(256, 256, generator=g)) * torch.exp(
            -20 * (torch.fft.fftfreq(256)[:, None] ** 2 + torch.fft.rfftfreq(256)[None] ** 2) * 40), s=(256, 256))
        lam = 5.0 * (1 + 0.2 * img / img.std()).clamp(min=0)  # 5 e-/px/frame, 40 frames
        frames = det.count(lam.expand(40, -1, -1), g)
        truth = det.defects((256, 256))
        mask = find_defect_pixels(frames).mask
        found += int((mask & truth).sum())
        missed += int((truth & ~mask).sum())
        false += int((mask & ~truth).sum())
        flip, k = ("none", "x")[s % 2], s % 4
        stored = det.gain_reference((256, 256), rotation_k=k, flip=flip)
        scores = gain_orientation_scores(frames.sum(0).numpy(), stored)
        bf, bk = min(scores, key=scores.__getitem__)
        right += int(np.array_equal(orient_gain(stored, flip=bf, rotation_k=bk),  # type: ignore[arg-type]
                                    orient_gain(stored, flip=flip, rotation_k=k)))  # type: ignore[arg-type]
    print(f"\nDefect detection ({n_movies} simulated 40-frame movies, 256^2, 5 e-/px/frame, hot pixels +3 "
          f"counts/frame, dead pixels): found {found} of {found + missed} "
          f"({100 * found / max(1, found + missed):.1f}%), "
          f"{false} false ({false / (n_movies * 256 * 256):.2e} per pixel)")
    print(f"Gain orientation (3% gain noise, all 8 orientations in turn): right in {right} of {n_movies}")


def restoration_check(n_frames: int, dose: float, seed: int, minutes: float) -> None:
    """P2P-df restoration from the raw movie (our drift) vs from perfectly aligned sums; PSNR vs the noise-free sum."""
    import tempfile
    from pathlib import Path

    import mrcfile

    from cryocare_torch.io.mrc import write_volume
    from cryocare_torch.tomo.frames import frame_sums
    from cryocare_torch.workflows.api import denoise

    frames, drift, clean = lowdose_movie(n_frames, dose, 3.0, seed, size=256)
    frames = fill_defect_pixels(frames, find_defect_pixels(frames).mask)
    est = estimate_drift_detailed(frames, pixel_size=8.0)
    rows = []  # the simulator's clean image is the expected drift-free sum, the reference for every row
    for name, shifts in (("raw movie, our drift", est.shifts), ("perfect alignment", drift),
                         ("no alignment", torch.zeros_like(drift))):
        sums = frame_sums(frames, shifts)
        with tempfile.TemporaryDirectory() as tmp:
            e, o = Path(tmp) / "m_even.mrc", Path(tmp) / "m_odd.mrc"
            write_volume(e, sums.even.numpy(), voxel_size=8.0)
            write_volume(o, sums.odd.numpy(), voxel_size=8.0)
            out = denoise([(e, o)], Path(tmp) / "restored.mrc", max_minutes=minutes, progress=False)
            with mrcfile.open(out[0]) as f:
                restored = torch.from_numpy(f.data.astype(np.float32).copy())
        rows.append((name, _psnr(sums.full, clean), _psnr(restored.reshape(clean.shape), clean)))
    print(f"\nP2P-df on one movie ({n_frames} frames, {dose} e/A^2, seed {seed}, {minutes} min training each; "
          f"our drift error {rms(est.shifts, drift):.3f} px, verdict {'reliable' if est.reliable else 'unshifted'})")
    print("| sums from | even+odd PSNR dB | restored PSNR dB |\n|---|---|---|")
    for name, raw, rest in rows:
        print(f"| {name} | {raw:.2f} | {rest:.2f} |", flush=True)


def _psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR after the best affine fit of ``img`` to ``ref`` over the central 80% (scale-free), dB."""
    m = [slice(int(0.1 * s), int(0.9 * s)) for s in ref.shape]
    a, b = img[m[0], m[1]].double().flatten(), ref[m[0], m[1]].double().flatten()
    design = torch.stack([a, torch.ones_like(a)], 1)
    coef = torch.linalg.lstsq(design, b[:, None]).solution
    mse = float(((design @ coef)[:, 0] - b).pow(2).mean())
    return 10 * math.log10(float(b.max() - b.min()) ** 2 / mse)
