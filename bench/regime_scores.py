"""Scores of bench/bench_regimes.py: correlation, FSC/FRC-0.143, PSNR/SSIM, high-frequency transfer, partner offsets."""

from __future__ import annotations

import numpy as np


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


def hf_transfer(x: np.ndarray, truth: np.ndarray, band: tuple[float, float] = (0.2, 0.4),
                axis: int | None = None) -> float:
    """Sharpness: signal gain ``sum Re(X T*) / sum |T|^2`` in ``band`` (cycles/voxel) over that gain at
    0.02-0.1 cycles/voxel, on the central 80%. 1: the truth's fine detail kept at its strength; < 1: blurred.
    Unbiased by noise (uncorrelated with the truth), unlike the FSC invariant to any per-shell linear filter.
    ``axis``: only frequencies within ~25 degrees of that axis (detail across it: blur along it)."""
    from cryocare_torch.evaluate.metrics import region_slices

    box = region_slices(x.shape)
    a, t = x[box] - x[box].mean(), truth[box] - truth[box].mean()
    fa, ft = np.fft.rfftn(a), np.fft.rfftn(t)
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in a.shape[:-1]], np.fft.rfftfreq(a.shape[-1]), indexing="ij")
    k = np.sqrt(sum(g**2 for g in grids))

    cone = np.abs(grids[axis]) > 0.9 * k if axis is not None else np.ones(k.shape, dtype=bool)

    def gain(lo: float, hi: float) -> float:
        m = (k >= lo) & (k < hi) & cone
        return float(np.real(fa[m] * np.conj(ft[m])).sum() / (np.abs(ft[m]) ** 2).sum())

    return gain(*band) / gain(0.02, 0.1)


def score3d(vol: np.ndarray, truth: np.ndarray, px: float) -> dict[str, float]:
    from cryocare_torch.evaluate import psnr, ssim

    return {"psnr": psnr(vol, truth), "ssim": ssim(vol, truth), "res": fsc143(vol, truth, px),
            "hf": hf_transfer(vol, truth)}


def score2d(stack: np.ndarray, truth: np.ndarray, px: float) -> dict[str, float]:
    """Mean PSNR/SSIM over the tilts; resolution where the tilts' mean FRC curve drops below 0.143."""
    from cryocare_torch.evaluate import FSCResult, fsc, psnr, ssim
    from cryocare_torch.evaluate.metrics import region_slices

    box = region_slices(truth.shape[1:])
    curves = [fsc(s[box], t[box], voxel_size=px, mask="box", soft_edge=4) for s, t in zip(stack, truth, strict=True)]
    c = curves[0]
    mean = FSCResult(c.frequency_per_nm, np.mean([k.fsc for k in curves], axis=0), c.n_voxels_per_shell, px, c.shape)
    scores = np.mean([(psnr(s, t), ssim(s, t), hf_transfer(s, t), hf_transfer(s, t, axis=1), hf_transfer(s, t, axis=0))
                      for s, t in zip(stack, truth, strict=True)], axis=0)
    return {"psnr": float(scores[0]), "ssim": float(scores[1]), "res": mean.res_0_143, "hf": float(scores[2]),
            "hf_x": float(scores[3]), "hf_y": float(scores[4])}


def aligned(stack: np.ndarray, xf: np.ndarray) -> np.ndarray:
    import torch

    from cryocare_torch.tomo.align import apply_xf

    return apply_xf(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)), xf).numpy()


def partner_offsets(sim: dict, shape: list[int]) -> dict[str, float]:
    """How far the two images of a 2D pair are apart (pixels): P2P-ip halves (drift between the half-movie
    centroids, and the unaligned drift blurring each half) and P2P-tap neighbours (rms over the central 80% of
    the field and the ice slab of the x displacement ``x (cos b - cos a) + z (sin b - sin a)``)."""
    d = np.asarray(sim["drift_px"])
    h = d.shape[1] // 2
    ip = np.linalg.norm(d[:, h:].mean(1) - d[:, :h].mean(1), axis=1)
    blur = np.linalg.norm(d[:, :h] - d[:, :h].mean(1, keepdims=True), axis=2).mean()
    th = np.deg2rad(np.sort(np.asarray(sim["tilt_angles"])))
    z = sim["simulate"]["ice_fraction"] * shape[0] / 2
    x = 0.4 * shape[2]
    tap = np.sqrt((x * np.diff(np.cos(th))) ** 2 / 3 + (z * np.diff(np.sin(th))) ** 2 / 3)  # uniform x, z
    return {"ip_mean": float(ip.mean()), "ip_blur_rms": float(blur), "tap_median": float(np.median(tap)),
            "tap_max": float(tap.max())}
