"""Classical denoisers to compare against, and oracle-tuned versions of them for benchmarks.

* :func:`gaussian_filter` -- separable Gaussian in torch (CPU or GPU), half-sample symmetric edges
  (scipy's ``mode="reflect"``), kernel truncated at 4 sigma like scipy.
* :func:`median_filter` -- :func:`scipy.ndimage.median_filter` (CPU), ``mode="reflect"``.
* :func:`best_gaussian`, :func:`best_median`, :func:`best_nad`, :func:`best_perona_malik` -- small grid
  searches that pick the parameters maximising PSNR (after the affine fit of
  :func:`~cryocare_torch.evaluate.metrics.psnr`) against the *ground truth*. They are oracles: only
  possible on simulated data, and an upper bound on what the method achieves in practice.

All functions take 2D ``(h, w)`` or 3D ``(d, h, w)`` numpy arrays or tensors and return the same kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..filters import gaussian_smooth, symmetric_index
from .metrics import ArrayLike, Region, as_tensor, like, psnr
from .nad import contrast_estimate, kappa_estimate, nad, perona_malik

if TYPE_CHECKING:  # nad imports this module
    from .nad import Mode

__all__ = ["best_gaussian", "best_median", "best_nad", "best_perona_malik", "gaussian_filter", "gaussian_smooth",
           "median_filter", "symmetric_index"]


def _spatial(x: torch.Tensor, ndim: int | None) -> int:
    nd = x.ndim if ndim is None else ndim
    if nd not in (2, 3) or x.ndim < nd:
        raise DataError(f"expected a 2D image or 3D volume, got shape {tuple(x.shape)}")
    return nd


def _per_axis(value: float | Sequence[float], nd: int, name: str) -> list[float]:
    vals = [float(value)] * nd if isinstance(value, (int, float, np.number)) else [float(v) for v in value]
    if len(vals) != nd or any(not math.isfinite(v) or v < 0 for v in vals):
        raise ConfigError(f"{name} must be >= 0, one value or one per axis ({nd}), got {value!r}")
    return vals


def gaussian_filter(x: ArrayLike, sigma: float | Sequence[float], *, truncate: float = 4.0) -> ArrayLike:
    """Gaussian blur with standard deviation ``sigma`` voxels (one value or one per axis)."""
    t = as_tensor(x)
    t = t if t.dtype in (torch.float32, torch.float64) else t.float()
    nd = _spatial(t, None)
    return like(gaussian_smooth(t, _per_axis(sigma, nd, "sigma"), truncate), x)


def median_filter(x: ArrayLike, size: int | Sequence[int]) -> ArrayLike:
    """Median over a ``size`` box (odd int or one per axis), via scipy on the CPU."""
    from scipy import ndimage

    t = as_tensor(x)
    nd = _spatial(t, None)
    sizes = [int(size)] * nd if isinstance(size, (int, np.integer)) else [int(s) for s in size]
    if len(sizes) != nd or any(s < 1 or s % 2 == 0 for s in sizes):
        raise ConfigError(f"median size must be odd and >= 1 (one value or one per axis), got {size!r}")
    out = ndimage.median_filter(t.detach().cpu().numpy(), size=sizes, mode="reflect")
    return like(torch.from_numpy(out).to(t.device), x)


def _score(y: ArrayLike, truth: ArrayLike, region: Region) -> float:
    return psnr(y, truth, fit=True, region=region)


def best_gaussian(
    x: ArrayLike, truth: ArrayLike, sigmas: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0), *,
    region: Region = None,
) -> tuple[float, ArrayLike]:
    """Oracle: the Gaussian ``sigma`` (voxels) with the best PSNR against ``truth``, and that result."""
    best = max(((_score(y := gaussian_filter(x, s), truth, region), s, y) for s in sigmas), key=lambda r: r[0])
    return best[1], best[2]


def best_median(
    x: ArrayLike, truth: ArrayLike, sizes: Sequence[int] = (3, 5, 7), *, region: Region = None,
) -> tuple[int, ArrayLike]:
    """Oracle: the median box size with the best PSNR against ``truth``, and that result."""
    best = max(((_score(y := median_filter(x, s), truth, region), s, y) for s in sizes), key=lambda r: r[0])
    return best[1], best[2]


def _best_iterative(run: Any, x: ArrayLike, truth: ArrayLike, scales: Sequence[float],
                    iterations: Sequence[int], region: Region, key: str) -> tuple[dict[str, Any], ArrayLike]:
    """Grid over ``scales`` x ``iterations``; one run per scale, scored at each checkpoint iteration."""
    best: tuple[float, dict[str, Any], Any] = (-math.inf, {}, None)
    checkpoints = sorted({int(i) for i in iterations})
    if not checkpoints or checkpoints[0] < 1:
        raise ConfigError(f"iterations must be positive integers, got {iterations!r}")
    for scale in scales:
        scores: list[tuple[float, dict[str, Any], Any]] = []

        def score_at(it: int, u: torch.Tensor, scale: float = scale, scores: list = scores) -> None:
            if it in checkpoints:
                y = like(u, x)
                scores.append((_score(y, truth, region), {key: scale, "iterations": it}, y))

        run(x, checkpoints[-1], scale, score_at)
        best = max([best, *scores], key=lambda r: r[0])
    return best[1], best[2]


def best_nad(
    x: ArrayLike, truth: ArrayLike, *, mode: Mode = "hybrid", lambda_scales: Sequence[float] = (0.5, 1.0, 2.0),
    iterations: Sequence[int] = (5, 10, 20), region: Region = None, **nad_options: Any,
) -> tuple[dict[str, Any], ArrayLike]:
    """Oracle NAD: contrast ``lambda_ = scale * contrast_estimate(x)`` and iteration count with the best
    PSNR against ``truth``. Returns ``({"lambda_scale", "iterations", "lambda_"}, result)``."""
    base = contrast_estimate(x, sigma=nad_options.get("sigma", 1.0), rho=nad_options.get("rho", 2.0))

    def run(v: ArrayLike, n: int, scale: float, cb: Any) -> None:
        nad(v, iterations=n, lambda_=scale * base, mode=mode, callback=cb, **nad_options)

    params, y = _best_iterative(run, x, truth, lambda_scales, iterations, region, "lambda_scale")
    return {**params, "lambda_": params["lambda_scale"] * base, "mode": mode}, y


def best_perona_malik(
    x: ArrayLike, truth: ArrayLike, *, kappa_scales: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    iterations: Sequence[int] = (5, 10, 20, 40), region: Region = None, dt: float | None = None,
) -> tuple[dict[str, Any], ArrayLike]:
    """Oracle Perona-Malik: ``kappa = scale * kappa_estimate(x)`` and iteration count with the best PSNR
    against ``truth``. Returns ``({"kappa_scale", "iterations", "kappa"}, result)``."""
    base = kappa_estimate(x)

    def run(v: ArrayLike, n: int, scale: float, cb: Any) -> None:
        perona_malik(v, iterations=n, kappa=scale * base, dt=dt, callback=cb)

    params, y = _best_iterative(run, x, truth, kappa_scales, iterations, region, "kappa_scale")
    return {**params, "kappa": params["kappa_scale"] * base}, y
