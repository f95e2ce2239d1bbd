"""Scores of a volume against the true object (``object.mrc`` of a simulated dataset), after an affine fit.

A restoration, a reconstruction and the object differ by a gain and an offset (the reconstruction's radial
filter, dose fading, normalisation), so every score first maps the volume onto the object by the
least-squares ``a * x + b`` (:func:`cryocare_torch.evaluate.metrics.affine_fit`) on the scoring region
(the central region without a 10% border per side by default, as :mod:`.metrics`):

* ``correlation`` -- Pearson's correlation coefficient (unchanged by the fit);
* ``psnr`` (dB) and ``ssim`` -- :func:`~cryocare_torch.evaluate.metrics.psnr` / ``ssim`` of the fitted volume,
  with the object's range over the region as the data range;
* ``scale``, ``offset`` -- the fit itself.

What no tilt series measures: the object's mean over each z section, ``z_profile`` (its spectrum's line
``kx = ky = 0``, inside the missing wedge of any tilt range short of +-90 degrees; for a lamella the ice slab
against the vacuum around it). :func:`z_profile_bound` is the correlation of the object with the object less that
profile, the score a restoration that got everything else exactly right would reach without inventing it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError
from .directional import directional_resolution
from .metrics import ArrayLike, Region, _numpy64, affine_fit, psnr, region_slices, ssim


def correlation(x: ArrayLike, ref: ArrayLike, *, region: Region = None) -> float:
    """Pearson correlation of ``x`` and ``ref`` over the scoring region (0 when either is constant there)."""
    a, r = _numpy64(x), _numpy64(ref)
    if a.shape != r.shape:
        raise DataError(f"volume shape {a.shape} differs from the object's shape {r.shape}")
    sl = region_slices(a.shape, region)
    a, r = a[sl].ravel(), r[sl].ravel()
    if a.size == 0 or not (np.isfinite(a).all() and np.isfinite(r).all()):
        raise DataError("the scoring region is empty or holds NaN/infinite values")
    a, r = a - a.mean(), r - r.mean()
    den = float(np.sqrt((a * a).sum() * (r * r).sum()))
    return float((a * r).sum() / den) if den > 0 else 0.0


def score_against_object(x: ArrayLike, obj: ArrayLike, *, region: Region = None) -> dict[str, Any]:
    """``correlation``, ``psnr``, ``ssim``, ``scale`` and ``offset`` of ``x`` against the object ``obj``."""
    sl = region_slices(_numpy64(obj).shape, region)
    scale, offset = affine_fit(_numpy64(x)[sl], _numpy64(obj)[sl])
    return {"correlation": correlation(x, obj, region=region), "psnr": psnr(x, obj, fit=True, region=region),
            "ssim": ssim(x, obj, fit=True, region=region), "scale": scale, "offset": offset}


def directional_table(volumes: dict[str, ArrayLike], obj: ArrayLike, *, voxel_size: float,
                      soft_edge: float = 6.0) -> dict[str, Any]:
    """Per volume: ``correlation`` with ``obj`` (central region) and :func:`.directional.directional_resolution`
    against it (whole volumes, cosine-edged box). Meaningful against the true object: against a noise-free
    reconstruction the z cone holds only what the reconstruction itself has."""
    return {name: {"correlation": correlation(v, obj)}
            | directional_resolution(v, obj, voxel_size=voxel_size, soft_edge=soft_edge)
            for name, v in volumes.items()}


def z_profile(obj: ArrayLike) -> np.ndarray:
    """Mean of ``obj`` over each z section (shape ``(d, 1, 1)``): its spectrum on the line ``kx = ky = 0``."""
    return _numpy64(obj).mean(axis=(-2, -1), keepdims=True)


def z_profile_bound(obj: ArrayLike, *, region: Region = None) -> float:
    """Correlation of ``obj`` with ``obj - z_profile(obj)`` over the scoring region: at most what a restoration
    from tilts within +-90 degrees reaches without inventing the unmeasured z profile (module docstring)."""
    o = _numpy64(obj)
    return correlation(o - z_profile(o), o, region=region)
