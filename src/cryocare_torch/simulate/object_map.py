"""The true object on the reconstruction grid, as a perfect tomogram would show it.

The tomograms are weighted back-projections of ``counts / expected_mean - 1``. To first order in the
phase (weak-phase object, in focus, no CTF, no dose fading, no noise, every tilt from -90 to 90 degrees)
that image is ``exp(-2 phi) - 1 ~ -2 phi`` with ``phi = sigma * contrast_scale * pixel_size * P[V]`` (the
projected potential ``P`` in voxel units, :mod:`.acquisition`), and the back-projection of ``P[V]`` is ``V``.
So the object a tomogram approximates is

    object = -2 * sigma * contrast_scale * pixel_size * (V - mean V)

on the same ``(d, h, w)`` grid, handedness and sign as ``tomo_*.mrc`` (dense matter dark, negative). The mean
is removed because no tilt image carries it. Scores against it should allow a gain and an offset
(:func:`cryocare_torch.evaluate.object_scores.score_against_object` fits ``a * x + b``): the
reconstruction's radial filter and the dose fading change the overall scale, and the CTF the contrast of
each frequency, which is exactly what the object does not have.
"""

from __future__ import annotations

import torch

from ..config import SimulateConfig
from .ctf import interaction_constant


def object_contrast(density: torch.Tensor, cfg: SimulateConfig) -> torch.Tensor:
    """``-2 sigma contrast_scale pixel_size (V - mean V)`` (float32) of the potential ``density`` (volts)."""
    scale = 2.0 * interaction_constant(cfg.voltage_kv) * cfg.contrast_scale * cfg.pixel_size
    d = density.to(torch.float64)
    return (-scale * (d - d.mean())).float()
