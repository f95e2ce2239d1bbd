"""Smooth whole-frame trajectories from sliding frame-group correlations, with their own uncertainty.

Model (after RELION's Bayesian polishing, whose motion prior is a Gaussian on each frame-to-frame
velocity -- 3dem/relion src/jaz/motion/gp_motion_fit.cpp, GpMotionFit::f, ``sig_vel_px`` -- and whose
hyper-parameters are fitted to the data, src/jaz/motion/motion_param_estimator.cpp; Warp likewise fits
a temporally smooth global trajectory, warpem/warp WarpTools/Commands/Frameseries/MotionFrameseries.cs
``--grid``): the drift ``d`` of each axis is a Gaussian random walk (step sd ``tau`` per frame), observed
through windows of ``g`` consecutive frames, ``m = A d + e``. Each window's noise sd is measured from its
own correlation map (slope noise of the map over the peak's curvature, :mod:`~cryocare_torch.prepare.peaks`);
overlapping windows share frames, so their errors are correlated in proportion to the overlap. Windows
with insignificant peaks (z < 6) or more than 4 sd's from the fit are left out.
Each window's summed spectrum is cross-correlated with the sum of all frames outside it, aligned by
the current estimate (MotionCor2's and RELION's "sum minus frame" reference, 3dem/relion
src/motioncorr_runner.cpp ``alignPatch``, here for groups of frames).

``tau`` is chosen by maximising the marginal likelihood of the measurements (empirical Bayes, on a
grid); the trajectory is the posterior mean, and its posterior sd (offset removed) is the
estimate's error including the smoothing bias. Frames without measurements are interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..fourier import phase_ramp
from .peaks import correlate

_GRID = tuple(0.003 * 2.0**k for k in range(13))  # random-walk step sd's in working pixels, 0.003 .. 12
_MIN_Z = 6.0  # windows with weaker peaks are left out of the fit (pure-noise maps reach ~6)
_OUTLIER = 4.0  # and so are those more than 4 of their sd's from the fit
_EXCLUDED = 1e3  # sd (working pixels) given to left-out windows


def window_matrix(members: torch.Tensor, g: int, t: int) -> torch.Tensor:
    """``(n_windows, t)`` averaging rows over ``g`` consecutive ``members`` (frame indices), stride 1."""
    n = members.numel()
    g = max(1, min(g, n))
    rows = torch.zeros((n - g + 1, t), dtype=torch.float64, device=members.device)
    for k in range(n - g + 1):
        rows[k, members[k : k + g]] = 1.0 / g
    return rows


@dataclass(frozen=True)
class Fit:
    """Posterior of the random-walk trajectory given window measurements."""

    mean: torch.Tensor  # (t, 2)
    sd: torch.Tensor  # (t,) posterior sd of the offset-free trajectory, both axes together
    tau: float  # random-walk step sd (per frame, per axis)


_OFFSET_SD = 100.0  # working pixels: the trajectory's origin is arbitrary (broad prior on its offset)


def _walk_cov(t: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    i = torch.arange(t, dtype=dtype, device=device)
    return torch.minimum(i[:, None], i[None, :]) + 1.0


def fit_trajectory(a: torch.Tensor, m: torch.Tensor, noise_cov: torch.Tensor, tau: float | None = None) -> Fit:
    """Posterior-mean random walk from windows ``a`` (n, t), measurements ``m`` (n, 2) with noise ``noise_cov`` (n, n).

    ``tau`` (random-walk step sd, working pixels) fixed, or None: chosen by maximum marginal likelihood.
    """
    n, t = a.shape
    k = _walk_cov(t, a.dtype, a.device)
    aka = a @ k @ a.T
    off = _OFFSET_SD**2 * a.sum(dim=1, keepdim=True) @ a.sum(dim=1, keepdim=True).T
    base = off + noise_cov + 1e-9 * torch.eye(n, dtype=a.dtype, device=a.device)
    best = (-math.inf, 1.0)
    for ta in (_GRID if tau is None else (tau,)):
        chol, info = torch.linalg.cholesky_ex(ta**2 * aka + base)
        if int(info):
            continue
        alpha = torch.cholesky_solve(m, chol)
        ll = -0.5 * float((m * alpha).sum()) - float(torch.log(torch.diagonal(chol)).sum()) * m.shape[1]
        if ll > best[0]:
            best = (ll, ta)
    ta = best[1]
    c = ta**2 * aka + base
    prior = ta**2 * k + _OFFSET_SD**2
    kat = prior @ a.T  # (t, n)
    mean = kat @ torch.linalg.solve(c, m)
    cov = prior - kat @ torch.linalg.solve(c, kat.T)
    centre = torch.eye(t, dtype=a.dtype, device=a.device) - 1.0 / t
    var = torch.diagonal(centre @ cov @ centre).clamp(min=0)
    return Fit(mean=mean, sd=(2 * var).sqrt(), tau=ta)


def _robust_fit(a: torch.Tensor, m: torch.Tensor, sd: torch.Tensor, z: torch.Tensor,
                g: int) -> tuple[Fit, torch.Tensor]:
    """Fit with per-window noise (overlapping windows share frames), leaving out insignificant peaks and the
    worst outliers (> 4 sd's from the fit, at most a quarter of the windows). Returns the fit and the windows used."""
    sdw = sd.clamp(max=_EXCLUDED).pow(2).mean(dim=1).sqrt().clamp(min=1e-3)
    used = z >= _MIN_Z
    overlap = g * (a @ a.T)
    for _ in range(2):
        s = torch.where(used, sdw, torch.full_like(sdw, _EXCLUDED))
        fit = fit_trajectory(a, m, s[:, None] * s[None, :] * overlap)
        dev = torch.where(used, (m - a @ fit.mean).norm(dim=1) / sdw, torch.zeros_like(sdw))
        n_out = min(int((dev > _OUTLIER).sum()), max(0, int(used.sum()) - (3 * len(used)) // 4))
        if n_out == 0:
            break
        used = used & ~torch.zeros_like(used).index_fill_(0, dev.topk(n_out).indices, True)
    return fit, used


@dataclass(frozen=True)
class Measured:
    """Window measurements of one set of frames and the trajectory fitted to them."""

    a: torch.Tensor  # (n, t) window averaging matrix
    m: torch.Tensor  # (n, 2) measured mean drift per window, working pixels
    z: torch.Tensor  # (n,) peak z-scores
    fit: Fit
    used: torch.Tensor  # (n,) bool: windows the fit used
    sd: torch.Tensor  # (n,) each window's measurement noise sd (working pixels, per axis)


def measure_windows(spectra: torch.Tensor, members: torch.Tensor, g: int, search: torch.Tensor, fy: torch.Tensor,
                    fx: torch.Tensor, iterations: int, tol: float, init: torch.Tensor | None = None) -> Measured:
    """Iteratively align the windows of ``g`` consecutive ``members`` against the aligned sum of the others.

    ``init`` (t, 2): the trajectory (working pixels) that aligns the first reference (default: none). Long
    windows need it: against the unaligned rest of a drifting movie their peaks are ambiguous.
    """
    t = spectra.shape[0]
    a = window_matrix(members, g, t)
    sel = a[:, members].to(torch.complex64)  # (n, k)
    raw = (sel @ spectra[members].flatten(1)).reshape(-1, *spectra.shape[1:]) * g  # window sums
    d = torch.zeros((t, 2), dtype=torch.float64, device=spectra.device) if init is None else init.to(torch.float64)
    for _ in range(iterations):
        aligned = spectra[members] * phase_ramp(-d[members], fy, fx)
        win = (sel @ aligned.flatten(1)).reshape(-1, *spectra.shape[1:]) * g
        m, z, sd = correlate(raw, aligned.sum(dim=0, keepdim=True) - win, search)
        fit, used = _robust_fit(a, m, sd, z, min(g, members.numel()))
        change = float((fit.mean - d).abs().max())
        d = fit.mean
        if change < tol:
            break
    return Measured(a=a, m=m, z=z, fit=fit, used=used, sd=sd.clamp(max=_EXCLUDED).pow(2).mean(dim=1).sqrt())
