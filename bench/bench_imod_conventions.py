"""Effect of matching IMOD's conventions (issue 12 items 3 and 4), measured as ratios within one run.

1. ``.xf`` centre: a phantom of random Gaussian blobs (not our simulator) is projected (-60..60, step 3);
   the raw views are made with scipy's ``affine_transform`` from IMOD's own formula (cubinterp.c: rotation
   about ``(n - 1) / 2``, 0-based) with an ~86 degree rotation and small shifts; they are aligned with
   ``apply_xf`` about IMOD's centre (now) and about ``n / 2`` (before: the same transform with the shift
   ``d + (I - A)(0.5, 0.5)``), reconstructed at bin 1, and correlated with the phantom and with the
   reconstruction of the perfectly aligned views.
2. Radial filter: white-noise rows filtered with IMOD ``tilt``'s weighting (now) and with the previous
   form (Kak-Slaney ramp times ``exp(-(f - 0.35)^2 / (2 * 0.035^2))`` beyond the cutoff, edge-replicated
   padding): noise power per frequency band, new / old.

    PYTHONPATH=src nice -n 5 python bench/bench_imod_conventions.py
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import affine_transform

from cryocare_torch.tomo.align import apply_xf
from cryocare_torch.tomo.backproject import filter_rows, weighted_backprojection
from cryocare_torch.tomo.projector import project


def phantom(d: int, h: int, w: int, n_blobs: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    vol = np.zeros((d, h, w), np.float32)
    for _ in range(n_blobs):
        c = rng.uniform([d * 0.3, h * 0.25, w * 0.25], [d * 0.7, h * 0.75, w * 0.75])
        s = rng.uniform(0.8, 2.0)
        vol += rng.choice([-1.0, 1.0]) * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * s * s))
    return torch.from_numpy(vol)


def imod_unalign(view: np.ndarray, xf: np.ndarray) -> np.ndarray:
    """Raw view whose IMOD-aligned version (``X' = A (X - c) + d + c``, ``c = (n - 1) / 2``) is ``view``."""
    h, w = view.shape
    c = np.array([(h - 1) / 2, (w - 1) / 2])  # (row, column)
    a = np.array([[xf[1, 1], xf[1, 0]], [xf[0, 1], xf[0, 0]]])  # (y, x) order
    d = np.array([xf[1, 2], xf[0, 2]])
    # raw(p) = aligned(A (p - c) + d + c): affine_transform samples input at matrix @ out + offset
    return affine_transform(view, a, offset=d + c - a @ c, order=3, mode="nearest")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


def xf_centre() -> None:
    d, h, w = 40, 128, 128
    vol = phantom(d, h, w, 300, seed=0)
    angles = torch.arange(-60.0, 60.1, 3.0)
    aligned = project(vol, angles)
    rng = np.random.default_rng(1)
    xfs, raw = [], []
    for i in range(len(angles)):
        rot = math.radians(86.0 + rng.uniform(-1, 1))
        a = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
        xf = np.hstack([a, rng.uniform(-2, 2, (2, 1))])
        xfs.append(xf)
        raw.append(imod_unalign(aligned[i].numpy().astype(np.float64), xf))
    xf_t = torch.tensor(np.stack(xfs))
    raw_t = torch.tensor(np.stack(raw), dtype=torch.float32)
    old_t = xf_t.clone()
    eye = torch.eye(2, dtype=torch.float64)
    old_t[:, :, 2] += ((eye - xf_t[:, :, :2]) @ torch.tensor([0.5, 0.5], dtype=torch.float64))  # n/2 centre
    ref = weighted_backprojection(aligned, angles, d)
    core = (slice(None), slice(32, 96), slice(32, 96))  # away from the corners the rotation cannot fill
    print(f"{'alignment':<24}{'corr vs phantom':>16}{'corr vs perfect-alignment WBP':>32}")
    print(f"{'perfect (no .xf)':<24}{corr(ref[core], vol[core]):>16.4f}{1.0:>32.4f}")
    for name, t in (("IMOD centre (n-1)/2", xf_t), ("before: n/2", old_t)):
        rec = weighted_backprojection(apply_xf(raw_t, t), angles, d)
        print(f"{name:<24}{corr(rec[core], vol[core]):>16.4f}{corr(rec[core], ref[core]):>32.4f}")


def old_filter(rows: torch.Tensor, cutoff: float = 0.35, sigma: float = 0.035) -> torch.Tensor:
    """The previous filter (git 580e144, prepare/backproject.py), restated for the comparison."""
    from scipy.fft import next_fast_len

    w = rows.shape[-1]
    n_pad = next_fast_len(2 * w, real=True)
    left = (n_pad - w) // 2
    padded = torch.nn.functional.pad(rows[:, None], (left, n_pad - w - left), mode="replicate")[:, 0]
    k = torch.arange(n_pad, dtype=torch.float64)
    k = torch.minimum(k, n_pad - k)
    h = torch.where(k % 2 == 1, -1.0 / (math.pi * k.clamp(min=1)) ** 2, torch.zeros_like(k))
    h[0] = 0.25
    resp = torch.fft.rfft(h).real
    f = torch.fft.rfftfreq(n_pad, dtype=torch.float64)
    tail = torch.exp(-((f - cutoff) ** 2) / (2 * sigma**2))
    resp = torch.where(f > cutoff, resp * (cutoff / f.clamp(min=1e-12)) * tail, resp)
    return torch.fft.irfft(torch.fft.rfft(padded) * resp, n=n_pad)[:, left : left + w]


def radial() -> None:
    rows = torch.from_numpy(np.random.default_rng(2).normal(size=(4000, 256)))
    spectra = {}
    for name, out in (("new", filter_rows(rows)), ("old", old_filter(rows))):
        spectra[name] = (torch.fft.rfft(out * torch.hann_window(256, dtype=torch.float64)).abs() ** 2).mean(0)
    f = torch.fft.rfftfreq(256, dtype=torch.float64)
    print(f"{'band (cycles/px)':<18}{'noise power new/old':>22}")
    for lo, hi in ((0.05, 0.3), (0.3, 0.35), (0.35, 0.38), (0.38, 0.42), (0.42, 0.46), (0.46, 0.5)):
        m = (f >= lo) & (f < hi) if hi < 0.5 else (f >= lo)
        print(f"{lo:.2f}-{hi:.2f}{'':<9}{float(spectra['new'][m].sum() / spectra['old'][m].sum()):>22.3g}")


if __name__ == "__main__":
    torch.manual_seed(0)
    xf_centre()
    radial()
