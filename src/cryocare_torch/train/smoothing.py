"""Self-tuned Gaussian for the model's skip connection, chosen by the Noise2Noise loss alone.

For independent noise in the two halves, ``E|G*even - odd|^2 = E|G*even - signal|^2 + noise variance``: the
Gaussian that best predicts one half from the other is the one closest to the clean signal, so the widths
can be picked on the training patches without any clean data. The search is anisotropic (z separately
from y and x): missing-wedge tomograms are blurrier and noisier along z.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..config import CryocareConfig
from ..errors import ConfigError
from ..filters import gaussian_smooth
from ..patches import PatchPairs

SIGMAS_Z = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
SIGMAS_XY = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def _cut(x: torch.Tensor, nd: int, margin: int) -> torch.Tensor:
    return x[(slice(None),) + tuple(slice(margin, s - margin) for s in x.shape[-nd:])]


def estimate_skip_sigma(data: PatchPairs, ndim: int, *, max_voxels: int = 1 << 23, seed: int = 0) -> tuple[float, ...]:
    """Grid search of the widths ``(z, y, x)`` (3D) or ``(y, x)`` (2D) minimising the Noise2Noise loss
    ``(|G*even - odd|^2 + |G*odd - even|^2) / 2`` (reflected patch borders cut).

    Uses a random subset of at most ``max_voxels`` voxels per half (256 patches of 32^3).
    """
    n = len(data)
    if n == 0:
        raise ConfigError("no training patches to choose the Gaussian skip from; set model.skip_sigma")
    per_patch = int(np.prod(data.patch[-ndim:]))
    take = max(1, min(n, 256, max_voxels // per_patch))
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:take])
    batch = data.get_batch(idx)  # (B, 2, *spatial) float32
    even, odd = batch[:, 0], batch[:, 1]
    margin = min(4, min(even.shape[-ndim:]) // 4)  # skip the reflected borders
    best: tuple[float, tuple[float, ...]] | None = None
    for sz in SIGMAS_Z if ndim == 3 else (None,):
        e_z = even if sz is None else gaussian_smooth(even, (sz, 0.0, 0.0))
        o_z = odd if sz is None else gaussian_smooth(odd, (sz, 0.0, 0.0))
        for sxy in SIGMAS_XY:
            a = _cut(gaussian_smooth(e_z, (sxy, sxy)) - odd, ndim, margin)
            b = _cut(gaussian_smooth(o_z, (sxy, sxy)) - even, ndim, margin)
            loss = 0.5 * float(a.square().mean() + b.square().mean())
            sigma = (sxy, sxy) if sz is None else (sz, sxy, sxy)
            if best is None or loss < best[0]:
                best = (loss, sigma)
    assert best is not None  # SIGMAS_XY is not empty
    return best[1]


def resolve_skip(cfg: CryocareConfig, data: PatchPairs, ndim: int, log: Callable[[str], None]) -> CryocareConfig:
    """``cfg`` with ``model.skip_sigma`` filled in (estimated) when the Gaussian skip is on and unset."""
    mc = cfg.model
    if mc.residual or not mc.gaussian_skip:
        return cfg
    if mc.skip_sigma is not None:
        if len(mc.skip_sigma) != ndim:
            raise ConfigError(f"model.skip_sigma needs {ndim} widths for {ndim}D data, got {list(mc.skip_sigma)}")
        return cfg
    sigma = estimate_skip_sigma(data, ndim, seed=cfg.train.seed)
    out = cfg.model_copy(deep=True)
    out.model.skip_sigma = sigma
    axes = "z, y, x" if ndim == 3 else "y, x"
    log(f"Gaussian skip: widths ({axes}) = {', '.join(f'{s:g}' for s in sigma)} voxels, chosen by the "
        "Noise2Noise loss on the training patches")
    return out
