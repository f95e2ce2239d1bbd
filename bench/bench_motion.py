"""Motion-correction benchmark: trajectory accuracy vs dose per frame, and speed, ours vs teamtomo.

Synthetic movies as in tests/test_motion.py: a smooth random image (correlation length ~2 px) with relative
contrast ``--contrast``, a random-walk drift (0.7 px rms per frame and axis, zero mean), Poisson counts at
the given e-/pixel/frame, each frame cut from a larger shifted image (non-circular drift).

Methods
* ours: :func:`cryocare_torch.prepare.motion.estimate_drift` (defaults; pixel size 2 A, B 500 A^2).
* tt-global: ``torch_motion_correction.estimate_global_motion`` (integer-pixel peak, middle frame reference).
* tt-local: ``estimate_local_motion`` with a (t, 1, 1) field (i.e. global, sub-pixel by optimisation),
  128-px patches, initialised from tt-global, Adam lr 0.05 (the default 0.01 A/step cannot leave 0 in 100 steps).

teamtomo 0.6 imports ``torch_fourier_rescale`` without declaring it; when it is missing the tt rows are skipped.

tt-local is slow on CPU (~70 s for 10 frames of 512^2 on 2 cores), so it runs on one seed at ``--tt-local-doses``
only and is left out of the speed table beyond 512^2.

``--simulator N`` adds our accuracy on N tilts (-30/0/30...) of the project's own simulator (CTF, dose fading,
3 e-/A^2 per tilt in 8 frames, 4 A pixels, 512^2 -> ~5.6 e-/px/frame) for B = 500 and 2000 A^2.

Usage: python bench/bench_motion.py [--acc-size 512] [--doses 0.5 1 2 4] [--seeds 3] [--tt-local-doses 1]
       [--speed-sizes 1024 4096] [--speed-frames 10] [--simulator 3]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import torch
from motion_lowdose import detection_rates, lowdose_table, restoration_check

from cryocare_torch.fourier import shift_frames
from cryocare_torch.prepare.motion import estimate_drift
from cryocare_torch.tomo.frames import frame_sums

PIXEL = 2.0


def movie(n: int, t: int, dose: float, contrast: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pad = 32
    m = n + 2 * pad
    x = torch.fft.rfft2(torch.randn(m, m, generator=g))
    fy, fx = torch.fft.fftfreq(m)[:, None], torch.fft.rfftfreq(m)[None]
    x = torch.fft.irfft2(x * torch.exp(-2 * (math.pi * 2.0) ** 2 * (fy**2 + fx**2)), s=(m, m))
    big = (x - x.mean()) / x.std()
    drift = torch.cumsum(torch.randn(t, 2, generator=g) * 0.7, 0)
    drift -= drift.mean(0)
    frames = torch.empty(t, n, n)
    for i in range(t):  # one frame at a time keeps 4k movies within memory
        lam = dose * (1 + contrast * shift_frames(big, drift[i])[pad:-pad, pad:-pad])
        frames[i] = torch.poisson(lam.clamp(min=0), generator=g)
    return frames, drift


def rms(est: torch.Tensor, truth: torch.Tensor) -> float:
    est = est - est.mean(0)
    return float(((est - truth) ** 2).sum(1).mean().sqrt())


def teamtomo_methods() -> tuple[dict[str, Callable[[torch.Tensor], torch.Tensor]], str]:
    try:
        import torch_motion_correction as tmc
    except ImportError as exc:
        return {}, f"teamtomo unavailable ({exc})"
    warnings.filterwarnings("ignore")

    def tt_global(fr: torch.Tensor) -> torch.Tensor:
        return tmc.estimate_global_motion(fr, pixel_spacing=PIXEL).data[:, :, 0, 0].T / PIXEL

    def tt_local(fr: torch.Tensor) -> torch.Tensor:
        import contextlib
        import io

        init = tmc.estimate_global_motion(fr, pixel_spacing=PIXEL)
        opt = tmc.OptimizationConfig(max_iterations=100, optimizer_kwargs={"lr": 0.05}, early_stopping=True)
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm bar
            f, _ = tmc.estimate_local_motion(fr, pixel_spacing=PIXEL, deformation_field_resolution=(fr.shape[0], 1, 1),
                                             patch_sampling=tmc.PatchSamplingConfig(patch_shape=(128, 128)),
                                             initial_deformation_field=init, optimization=opt)
        return f.data[:, :, 0, 0].T / PIXEL

    return {"tt-global": tt_global, "tt-local": tt_local}, f"teamtomo {tmc.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acc-size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--contrast", type=float, default=0.1)
    ap.add_argument("--doses", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tt-local-doses", type=float, nargs="*", default=[1.0])
    ap.add_argument("--speed-sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--speed-frames", type=int, default=10)
    ap.add_argument("--simulator", type=int, default=0, help="tilts of the simulator check (0: skip)")
    ap.add_argument("--lowdose", action="store_true", help="only the issue-17 low-dose tilt-movie table")
    ap.add_argument("--lowdose-seeds", type=int, nargs="+", default=[201, 202])
    ap.add_argument("--detection", type=int, default=0, help="movies for hot-pixel/gain-orientation rates")
    ap.add_argument("--restore-minutes", type=float, default=0.0, help="P2P-df check, minutes per training")
    args = ap.parse_args()
    if args.lowdose or args.detection or args.restore_minutes:
        tt, _ = teamtomo_methods()
        if args.lowdose:
            lowdose_table([(40, 3.0, 3.0), (40, 3.0, 5.0), (40, 1.5, 3.0), (20, 3.0, 3.0)], args.lowdose_seeds,
                          {"tt-global": tt["tt-global"]} if "tt-global" in tt else {})
        if args.detection:
            detection_rates(args.detection)
        if args.restore_minutes:
            restoration_check(40, 3.0, args.lowdose_seeds[0], args.restore_minutes)
        return
    tt, tt_note = teamtomo_methods()
    methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "ours": lambda fr: estimate_drift(fr, pixel_size=PIXEL), **tt}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {tt_note}")
    print(f"\nAccuracy: rms trajectory error (px), {args.frames} frames {args.acc_size}^2, contrast {args.contrast}, "
          f"mean (max) over {args.seeds} seeds")
    tt_local_time = float("nan")
    print("| e-/px/frame | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for dose in args.doses:
        errs: dict[str, list[float]] = {k: [] for k in methods}
        for seed in range(args.seeds):
            fr, truth = movie(args.acc_size, args.frames, dose, args.contrast, seed)
            for name, fn in methods.items():
                if name != "tt-local" or (seed == 0 and dose in args.tt_local_doses):
                    t0 = time.perf_counter()
                    errs[name].append(rms(fn(fr), truth))
                    if name == "tt-local":
                        tt_local_time = time.perf_counter() - t0
        cells = [f"{sum(e) / len(e):.3f} ({max(e):.3f})" if len(e) > 1 else f"{e[0]:.3f} (1 seed)" if e else "-"
                 for e in errs.values()]
        print(f"| {dose:g} | " + " | ".join(cells) + " |", flush=True)

    print(f"\nSpeed: {args.speed_frames} frames at 2 e-/px/frame, wall time (frames/s)")
    print("| frame size | ours estimate | ours estimate + sums | tt-global | tt-local |")
    print("|---|---|---|---|---|")
    for n in args.speed_sizes:
        fr, truth = movie(n, args.speed_frames, 2.0, args.contrast, 0)
        cells = []
        t0 = time.perf_counter()
        d = estimate_drift(fr, pixel_size=PIXEL)
        t1 = time.perf_counter()
        frame_sums(fr, d)
        t2 = time.perf_counter()
        cells += [f"{t1 - t0:.2f} s ({args.speed_frames / (t1 - t0):.1f}); err {rms(d, truth):.3f} px",
                  f"{t2 - t0:.2f} s ({args.speed_frames / (t2 - t0):.1f})"]
        for name in ("tt-global", "tt-local"):
            if name not in tt or (name == "tt-local" and n > 512):
                cells.append("n/a" if name not in tt else f"not run ({tt_local_time:.0f} s at {args.acc_size}^2)")
                continue
            t0 = time.perf_counter()
            d = tt[name](fr)
            dt = time.perf_counter() - t0
            cells.append(f"{dt:.2f} s ({args.speed_frames / dt:.1f}); err {rms(d, truth):.3f} px")
        print(f"| {n}x{n} | " + " | ".join(cells) + " |", flush=True)
        del fr
    if args.simulator:
        simulator_check(args.simulator)


def simulator_check(n_tilts: int) -> None:
    from cryocare_torch.config import SimulateConfig
    from cryocare_torch.prepare.motion import estimate_drift_detailed
    from cryocare_torch.simulate.acquisition import simulate_tilt_series
    from cryocare_torch.simulate.dataset import make_phantom, required_lateral_pad

    half = 15 * (n_tilts - 1)
    cfg = SimulateConfig(shape=(48, 512, 512), pixel_size=4.0, tilt_min=-half, tilt_max=half, tilt_step=30,
                         n_frames=8, dose_per_tilt=3.0, seed=1)
    g = torch.Generator().manual_seed(0)
    drift = torch.cumsum(torch.randn(n_tilts, 8, 2, generator=g) * 0.7, 1)
    drift -= drift.mean(1, keepdim=True)
    ts = simulate_tilt_series(make_phantom(cfg, lateral_pad=required_lateral_pad(tuple(cfg.shape), half)), cfg,
                              keep_frames=True, frame_drift=drift)
    assert ts.frames is not None
    print(f"\nSimulator: {n_tilts} tilts, {float(ts.frames.mean()):.1f} e-/px/frame, drift rms "
          f"{float(drift.norm(dim=-1).pow(2).mean().sqrt()):.2f} px; ours: rms error px (min peak z, group size)")
    print("| tilt | B=500 | B=2000 |\n|---|---|---|")
    for i in range(n_tilts):
        cells = []
        for b in (500.0, 2000.0):
            r = estimate_drift_detailed(ts.frames[i], pixel_size=cfg.pixel_size, bfactor=b)
            cells.append(f"{rms(r.shifts, drift[i]):.3f} (z {float(r.peak_z.min()):.0f}, g {r.group_size})")
        print(f"| {float(ts.angles[i]):+.0f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
