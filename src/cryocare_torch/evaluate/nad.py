"""Non-linear anisotropic diffusion (NAD) after Frangakis & Hegerl (2001), and Perona-Malik, in torch.

NAD evolves ``du/dt = div(D grad u)`` with a diffusion tensor ``D`` built per voxel from the
structure tensor ``J = G_rho * (grad u_sigma grad u_sigma^T)`` (``u_sigma``: ``u`` blurred with a
Gaussian of ``sigma``; products smoothed with a Gaussian of ``rho``). With the eigenvalues
``mu_1 >= ... >= mu_n`` of ``J`` and eigenvectors ``v_k``, ``D = sum_k lambda_k v_k v_k^T`` where

* EED (edge-enhancing, Weickert): ``lambda_1 = 1 - exp(-3.31488 / (mu_1 / lambda^2)^4)`` across the
  dominant gradient, ``lambda_k = 1`` along the others: smooths everywhere except across edges.
* CED (coherence-enhancing, Weickert, extended to 3D): ``lambda_1 = alpha``; for every other
  direction ``lambda_k = alpha + (1 - alpha) exp(-(lambda^2 / (mu_1 - mu_k))^2)``. A plane
  (membrane: ``mu_1 >> mu_2 ~ mu_3``) diffuses within itself, a line (filament:
  ``mu_1 ~ mu_2 >> mu_3``) only along itself.
* hybrid (Frangakis & Hegerl's idea): CED where the local structure is coherent -- planar or linear,
  ``mu_1 - mu_n > lambda^2`` -- and EED elsewhere (noise, blobs, isotropic edges). Our switch uses the
  same contrast parameter ``lambda`` rather than the paper's threshold from a user-chosen noise area.

``lambda`` (a gradient magnitude) defaults to :func:`contrast_estimate`, the square root of the 90th
percentile of ``mu_1`` of the input, i.e. just above the noise level for noise-dominated tomograms.

Discretisation: explicit Euler in conservative (flux) form: fluxes ``(D grad u)_a`` live on the faces
between neighbouring voxels (``D`` averaged onto the face, the normal derivative a forward difference,
tangential derivatives averaged central differences) and are zero on the outer faces (reflecting
boundaries), so the mean is conserved exactly. Stable for ``dt <= 1 / (2 ndim)`` since the
eigenvalues of ``D`` are at most 1. Memory: about 20 volume-sized float32 buffers (3D); eigen-
decompositions run in chunks of ``chunk_voxels``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..errors import ConfigError, DataError
from ..filters import gaussian_smooth, symmetric_index
from .metrics import ArrayLike, as_tensor, like

Mode = Literal["hybrid", "eed", "ced"]
Callback = Callable[[int, torch.Tensor], None]
_EED_C = 3.31488  # Weickert's constant for m = 4: flux maximal at |grad| = lambda


def _float_volume(x: ArrayLike) -> torch.Tensor:
    t = as_tensor(x)
    t = t.to(torch.float64) if t.dtype == torch.float64 else t.to(torch.float32)
    if t.ndim not in (2, 3):
        raise DataError(f"diffusion needs a 2D image or 3D volume, got shape {tuple(t.shape)}")
    if min(t.shape) < 3:
        raise DataError(f"diffusion needs at least 3 voxels per axis, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise DataError("the volume contains NaN or infinite values")
    return t.clone()


def _check_dt(dt: float | None, nd: int) -> float:
    limit = 1.0 / (2 * nd)
    dt = 0.9 * limit if dt is None else float(dt)
    if not 0 < dt <= limit:
        raise ConfigError(f"dt must be in (0, {limit:.4g}] for a stable explicit {nd}D step, got {dt}")
    return dt


def central_differences(u: torch.Tensor) -> list[torch.Tensor]:
    """``(u[i+1] - u[i-1]) / 2`` along each axis, with mirrored neighbours at the edges."""
    out = []
    for a, n in enumerate(u.shape):
        p = u.index_select(a, symmetric_index(n, 1, u.device))
        out.append(0.5 * (p.narrow(a, 2, n) - p.narrow(a, 0, n)))
    return out


def structure_tensor(u: torch.Tensor, sigma: float, rho: float) -> torch.Tensor:
    """``(..., nd, nd)`` structure tensor ``G_rho * (grad u_sigma grad u_sigma^T)`` of a 2D/3D ``u``."""
    nd = u.ndim
    grads = central_differences(gaussian_smooth(u, [sigma] * nd))
    pairs = [(i, j) for i in range(nd) for j in range(i, nd)]
    comps = gaussian_smooth(torch.stack([grads[i] * grads[j] for i, j in pairs]), [rho] * nd)
    J = u.new_empty(*u.shape, nd, nd)
    for c, (i, j) in enumerate(pairs):
        J[..., i, j] = comps[c]
        J[..., j, i] = comps[c]
    return J


def contrast_estimate(x: ArrayLike, *, sigma: float = 1.0, rho: float = 2.0, q: float = 0.9) -> float:
    """``sqrt`` of the ``q`` quantile of the largest structure-tensor eigenvalue: a default ``lambda_``."""
    u = _float_volume(x)
    J = structure_tensor(u, sigma, rho).reshape(-1, u.ndim, u.ndim)
    mu1 = torch.cat([torch.linalg.eigvalsh(J[s : s + 2**18])[:, -1] for s in range(0, J.shape[0], 2**18)])
    if mu1.numel() > 2**24:
        mu1 = mu1[:: mu1.numel() // 2**24 + 1]
    return max(float(torch.quantile(mu1.clamp(min=0).float(), q)) ** 0.5, 1e-12)


def diffusion_tensor(J: torch.Tensor, lam: float, mode: Mode, alpha: float) -> torch.Tensor:
    """``(N, nd, nd)`` diffusion tensors for ``(N, nd, nd)`` structure tensors (see module doc)."""
    mu, V = torch.linalg.eigh(J)  # ascending: mu[:, -1] = mu_1
    mu = mu.clamp(min=0)
    l2 = lam * lam
    mu1 = mu[:, -1:]
    eed = torch.ones_like(mu)
    eed[:, -1] = 1 - torch.exp(-_EED_C / (mu1[:, 0] / l2).clamp(min=1e-30) ** 4)
    diff = (mu1 - mu).clamp(min=1e-30)
    ced = alpha + (1 - alpha) * torch.exp(-((l2 / diff) ** 2))
    ced[:, -1] = alpha
    if mode == "eed":
        ev = eed
    elif mode == "ced":
        ev = ced
    else:
        ev = torch.where((mu1 - mu[:, :1]) > l2, ced, eed)
    return (V * ev[:, None, :]) @ V.transpose(-1, -2)


def _divergence(u: torch.Tensor, D: list[list[torch.Tensor]]) -> torch.Tensor:
    """``div(D grad u)`` in flux form with zero flux through the outer faces."""
    nd = u.ndim
    cdiff = central_differences(u)
    out = torch.zeros_like(u)
    for a in range(nd):
        n = u.shape[a]

        def face(t: torch.Tensor, a: int = a, n: int = n) -> torch.Tensor:
            return 0.5 * (t.narrow(a, 0, n - 1) + t.narrow(a, 1, n - 1))

        flux = face(D[a][a]) * (u.narrow(a, 1, n - 1) - u.narrow(a, 0, n - 1))
        for b in range(nd):
            if b != a:
                flux = flux + face(D[a][b]) * face(cdiff[b])
        zero = torch.zeros_like(u.narrow(a, 0, 1))
        flux = torch.cat([zero, flux, zero], dim=a)
        out += flux.narrow(a, 1, n) - flux.narrow(a, 0, n)
    return out


def nad(
    volume: ArrayLike,
    *,
    iterations: int = 10,
    dt: float | None = 0.1,
    lambda_: float | None = None,
    sigma: float = 1.0,
    rho: float = 2.0,
    alpha: float = 1e-3,
    mode: Mode = "hybrid",
    callback: Callback | None = None,
    chunk_voxels: int = 2**18,
) -> ArrayLike:
    """Non-linear anisotropic diffusion of a 2D ``(h, w)`` or 3D ``(d, h, w)`` array (see module doc).

    ``lambda_``: contrast parameter (default :func:`contrast_estimate`); ``sigma``, ``rho``: noise and
    structure scales (voxels); ``alpha``: minimal CED diffusivity; ``dt``: time step (``None``: 90% of
    the stability limit). ``callback(i, u)`` is called after iteration ``i`` (1-based). Runs on the
    input's device; returns the same kind of object as the input.
    """
    if mode not in ("hybrid", "eed", "ced"):
        raise ConfigError(f"NAD mode must be 'hybrid', 'eed' or 'ced', got {mode!r}")
    if iterations < 0 or sigma < 0 or rho < 0 or not 0 < alpha <= 1:
        raise ConfigError("NAD needs iterations >= 0, sigma >= 0, rho >= 0 and 0 < alpha <= 1")
    u = _float_volume(volume)
    nd = u.ndim
    dt = _check_dt(dt, nd)
    lam = contrast_estimate(u, sigma=sigma, rho=rho) if lambda_ is None else float(lambda_)
    if not lam > 0:
        raise ConfigError(f"lambda_ must be > 0, got {lambda_}")
    for it in range(1, iterations + 1):
        J = structure_tensor(u, sigma, rho).reshape(-1, nd, nd)
        Dflat = torch.empty_like(J)
        for s in range(0, J.shape[0], chunk_voxels):
            Dflat[s : s + chunk_voxels] = diffusion_tensor(J[s : s + chunk_voxels], lam, mode, alpha)
        del J
        Dv = Dflat.reshape(*u.shape, nd, nd)
        D = [[Dv[..., i, j] for j in range(nd)] for i in range(nd)]
        u = u + dt * _divergence(u, D)
        del Dflat, Dv, D
        if callback is not None:
            callback(it, u)
    return like(u, volume)


def kappa_estimate(x: ArrayLike, q: float = 0.9) -> float:
    """The ``q`` quantile of |neighbour differences| (Perona & Malik's noise-based ``kappa``)."""
    u = _float_volume(x)
    d = torch.cat([(u.narrow(a, 1, n - 1) - u.narrow(a, 0, n - 1)).abs().flatten() for a, n in enumerate(u.shape)])
    if d.numel() > 2**24:
        d = d[:: d.numel() // 2**24 + 1]
    return max(float(torch.quantile(d.float(), q)), 1e-12)


def perona_malik(
    x: ArrayLike,
    iterations: int = 10,
    kappa: float | None = None,
    dt: float | None = None,
    *,
    conductance: Literal["exp", "rational"] = "exp",
    callback: Callback | None = None,
) -> ArrayLike:
    """Perona-Malik diffusion (1990): ``du/dt = div(g(|grad u|) grad u)`` on the 4/6-neighbour stencil,
    ``g = exp(-(d/kappa)^2)`` or ``1 / (1 + (d/kappa)^2)`` per face difference ``d``; reflecting
    boundaries (mean conserved). ``kappa`` defaults to :func:`kappa_estimate`; ``dt`` to 90% of the
    stability limit ``1 / (2 ndim)``."""
    if conductance not in ("exp", "rational"):
        raise ConfigError(f"conductance must be 'exp' or 'rational', got {conductance!r}")
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {iterations}")
    u = _float_volume(x)
    dt = _check_dt(dt, u.ndim)
    k = kappa_estimate(u) if kappa is None else float(kappa)
    if not k > 0:
        raise ConfigError(f"kappa must be > 0, got {kappa}")
    for it in range(1, iterations + 1):
        du = torch.zeros_like(u)
        for a, n in enumerate(u.shape):
            d = u.narrow(a, 1, n - 1) - u.narrow(a, 0, n - 1)
            r = (d / k) ** 2
            flux = d * (torch.exp(-r) if conductance == "exp" else 1.0 / (1.0 + r))
            zero = torch.zeros_like(u.narrow(a, 0, 1))
            flux = torch.cat([zero, flux, zero], dim=a)
            du += flux.narrow(a, 1, n) - flux.narrow(a, 0, n)
        u = u + dt * du
        if callback is not None:
            callback(it, u)
    return like(u, x)
