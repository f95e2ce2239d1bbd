"""Image-quality scores against a known ground truth: PSNR, SSIM and FSC resolution.

Denoisers change the grey-level scale and offset, so by default the restored volume is first mapped
onto the reference by a least-squares affine fit (:func:`affine_fit`) -- the usual practice for
comparing denoisers (e.g. Weigert et al. 2018, Buchholz et al. 2019). Scores are computed on a
central region that excludes a border (10% of each axis per side by default), where tiling and
reconstruction edge effects live. ``data_range = ref.max() - ref.min()`` over that region.

SSIM is :func:`skimage.metrics.structural_similarity` in 2D or 3D with the settings of Wang et al.
(2004): Gaussian window sigma 1.5 (11 voxels wide), population covariances, K1 = 0.01, K2 = 0.03.

Inputs may be numpy arrays or torch tensors of shape ``(d, h, w)`` or ``(h, w)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .fsc import fsc

ArrayLike = torch.Tensor | np.ndarray
Region = float | Sequence[slice] | None
DEFAULT_BORDER = 0.1


def as_tensor(x: ArrayLike | Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor view of ``x`` (numpy arrays are shared, not copied, when possible), optionally cast."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def like(result: torch.Tensor, template: ArrayLike) -> ArrayLike:
    """``result`` as the same kind of object as ``template`` (numpy in, numpy out)."""
    if isinstance(template, torch.Tensor):
        return result
    return result.detach().cpu().numpy().astype(np.asarray(template).dtype, copy=False)


def _numpy64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def region_slices(shape: Sequence[int], region: Region = None) -> tuple[slice, ...]:
    """Slices of the scoring region: ``None`` = central region without a 10% border per side, a float
    = that border fraction per side (0 = everything), or explicit slices."""
    if region is None or isinstance(region, (int, float)):
        border = DEFAULT_BORDER if region is None else float(region)
        if not 0.0 <= border < 0.5:
            raise ConfigError(f"region border must be a fraction in [0, 0.5), got {region}")
        return tuple(slice(int(n * border), n - int(n * border)) for n in shape)
    sl = tuple(region)
    if len(sl) != len(shape) or not all(isinstance(s, slice) for s in sl):
        raise ConfigError(f"region must be a border fraction or one slice per axis of {tuple(shape)}")
    return sl


def _prepare(x: ArrayLike, ref: ArrayLike, region: Region) -> tuple[np.ndarray, np.ndarray]:
    a, r = _numpy64(x), _numpy64(ref)
    if a.shape != r.shape:
        raise DataError(f"volume shape {a.shape} differs from the reference shape {r.shape}")
    if a.ndim not in (2, 3):
        raise DataError(f"expected a 2D image or 3D volume, got shape {a.shape}")
    sl = region_slices(a.shape, region)
    a, r = a[sl], r[sl]
    if a.size == 0:
        raise DataError(f"the scoring region {sl} of shape {a.shape} is empty")
    if not (np.isfinite(a).all() and np.isfinite(r).all()):
        raise DataError("volume or reference contains NaN or infinite values")
    return a, r


def affine_fit(x: ArrayLike, ref: ArrayLike) -> tuple[float, float]:
    """``(scale, offset)`` minimising ``||scale * x + offset - ref||^2`` (least squares, float64)."""
    a, r = _numpy64(x).ravel(), _numpy64(ref).ravel()
    if a.shape != r.shape:
        raise DataError(f"affine fit needs equal sizes, got {a.size} and {r.size} values")
    am, rm = a.mean(), r.mean()
    var = np.mean((a - am) ** 2)
    scale = float(np.mean((a - am) * (r - rm)) / var) if var > 0 else 0.0
    return scale, float(rm - scale * am)


def _fitted(a: np.ndarray, r: np.ndarray, fit: bool) -> tuple[np.ndarray, float]:
    data_range = float(r.max() - r.min())
    if data_range <= 0:
        raise DataError("the reference is constant over the scoring region; PSNR/SSIM are undefined")
    if fit:
        scale, offset = affine_fit(a, r)
        a = scale * a + offset
    return a, data_range


def psnr(x: ArrayLike, ref: ArrayLike, *, fit: bool = True, region: Region = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, over the scoring region."""
    a, r = _prepare(x, ref, region)
    a, data_range = _fitted(a, r, fit)
    mse = float(np.mean((a - r) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(x: ArrayLike, ref: ArrayLike, *, fit: bool = True, region: Region = None) -> float:
    """Structural similarity (mean SSIM, Gaussian window sigma 1.5) over the scoring region."""
    from skimage.metrics import structural_similarity

    a, r = _prepare(x, ref, region)
    if min(a.shape) < 11:
        raise DataError(f"SSIM needs at least 11 voxels per axis in the scoring region, got {a.shape}")
    a, data_range = _fitted(a, r, fit)
    return float(structural_similarity(a, r, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def quality_table(
    results: Mapping[str, ArrayLike],
    truth: ArrayLike,
    *,
    voxel_size: float | None = None,
    fit: bool = True,
    region: Region = None,
) -> list[dict[str, Any]]:
    """One row per result: ``name``, ``psnr`` (dB), ``ssim`` and, with ``voxel_size`` (Angstrom),
    ``fsc_res_0_5_nm`` -- the resolution where the FSC with the truth (same region, apodised by a
    cosine-edged box of up to 6 voxels) drops below 0.5."""
    rows = []
    for name, vol in results.items():
        row: dict[str, Any] = {"name": name, "psnr": psnr(vol, truth, fit=fit, region=region),
                               "ssim": ssim(vol, truth, fit=fit, region=region)}
        if voxel_size is not None:
            a, r = _prepare(vol, truth, region)
            edge = max(1, min(6, min(a.shape) // 8))  # soft box edge: no crop-edge discontinuity in Fourier
            row["fsc_res_0_5_nm"] = fsc(a, r, voxel_size=voxel_size, mask="box", soft_edge=edge).res_0_5
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of :func:`quality_table` rows (for logs and reports)."""
    cols = [c for c in ("psnr", "ssim", "fsc_res_0_5_nm") if rows and c in rows[0]]
    heads = {"psnr": "PSNR (dB)", "ssim": "SSIM", "fsc_res_0_5_nm": "FSC0.5 (nm)"}
    width = max([len(str(r["name"])) for r in rows] + [4]) + 2
    lines = ["name".ljust(width) + "".join(f"{heads[c]:>13s}" for c in cols)]
    lines += [str(r["name"]).ljust(width) + "".join(f"{r[c]:13.3f}" for c in cols) for r in rows]
    return "\n".join(lines)
