"""Directional resolution: the FSC of a volume against the object restricted to a cone of directions.

A tilt series about ``y`` measures no Fourier voxel within ``90 - max tilt`` degrees of ``k_z`` (the missing
wedge), so a reconstruction's resolution along ``z`` is worse than along ``x``. The conical FSC sums the shell
terms of :func:`cryocare_torch.evaluate.fsc.fsc` only over the Fourier voxels whose direction lies within
``half_angle`` degrees of an axis (a double cone: ``k`` and ``-k`` alike)::

    FSC_axis(k) = sum_{shell k, cone} Re(A B*) / sqrt(sum_{shell k, cone} |A|^2  sum_{shell k, cone} |B|^2)

For a tilt range of +-60 degrees a 30-degree cone around ``z`` lies entirely inside the wedge; a cone around
``x`` lies in measured data. Against the true object (``object.mrc``), the ratio of the two crossings
(``z / x``, in nm) says how elongated the restoration still is: 1 is isotropic, a WBP of a +-60 series is
well above 1. Both maps are made zero-mean and tapered by the cosine-edged box of :func:`.fsc.make_mask`
(``soft_edge`` voxels) first; the shell binning is :mod:`.shells`' (linear by default). The cone is
tested against volumes low-passed differently along ``z`` and ``x`` in ``tests/test_directional_fsc.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .fsc import FSCResult, checked_voxel_size, make_mask
from .metrics import ArrayLike, as_tensor
from .shells import Binning, shell_frequencies, shell_sums

AXES = {"z": 0, "y": 1, "x": 2}


def cone_mask(shape: tuple[int, int, int], axis: int, half_angle: float) -> torch.Tensor:
    """float64 ``(d, h, w//2+1)`` rfftn-grid indicator of the frequencies within ``half_angle`` degrees of
    ``axis`` (0 = z, 1 = y, 2 = x; both directions along it); the DC voxel is included."""
    if not 0.0 < half_angle <= 90.0:
        raise ConfigError(f"cone half-angle must be in (0, 90] degrees, got {half_angle}")
    f = [torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None, None],
         torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :, None],
         torch.fft.rfftfreq(shape[2], dtype=torch.float64)[None, None, :]]
    norm = torch.sqrt(f[0] ** 2 + f[1] ** 2 + f[2] ** 2)
    along = f[axis].abs().expand_as(norm)
    inside = along >= norm * math.cos(math.radians(half_angle)) - 1e-12
    return inside.to(torch.float64)


def _terms(chunk: list[torch.Tensor]) -> torch.Tensor:
    a, b, m = chunk
    return torch.stack([(a * b.conj()).real * m, a.abs() ** 2 * m, b.abs() ** 2 * m, m])


def conical_fsc(a: ArrayLike, b: ArrayLike, *, voxel_size: float, axis: str = "z", half_angle: float = 30.0,
                soft_edge: float = 6.0, binning: Binning = "linear") -> FSCResult:
    """FSC of two volumes over the Fourier voxels within ``half_angle`` degrees of ``axis`` (z, y or x).

    ``n_voxels_per_shell`` counts the cone's voxels per shell (for the ``3 / sqrt(n)`` noise threshold).
    """
    vs = checked_voxel_size(voxel_size)
    if axis not in AXES:
        raise ConfigError(f"cone axis must be z, y or x, got {axis!r}")
    ta, tb = as_tensor(a, torch.float64), as_tensor(b, torch.float64)
    if ta.shape != tb.shape or ta.ndim != 3 or min(ta.shape) < 8:
        raise DataError(f"conical FSC needs two volumes of one shape, at least 8 voxels per axis; got "
                        f"{tuple(ta.shape)} and {tuple(tb.shape)}")
    shape = (int(ta.shape[0]), int(ta.shape[1]), int(ta.shape[2]))
    w = make_mask(shape, "box", soft_edge) if soft_edge > 0 else torch.ones(shape, dtype=torch.float64)
    fa, fb = (torch.fft.rfftn((t - t.mean()) * w) for t in (ta, tb))
    cone = cone_mask(shape, AXES[axis], half_angle)
    n_shells = min(shape) // 2 + 1
    num, pa, pb, count, _ = shell_sums([fa, fb, cone], _terms, shape, binning, n_shells)
    den = torch.sqrt(pa * pb)
    curve = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.zeros_like(num))
    curve[0] = 1.0
    meta = {"cone_axis": axis, "cone_half_angle_deg": half_angle}
    return FSCResult(shell_frequencies(shape, vs), curve.numpy(), count.numpy(), vs, shape, binning, meta)


def directional_resolution(x: ArrayLike, obj: ArrayLike, *, voxel_size: float, half_angle: float = 30.0,
                           soft_edge: float = 6.0) -> dict[str, Any]:
    """Crossings (nm) of the conical FSC of ``x`` against ``obj`` around z and around x, and their ratios.

    ``{"z": {...}, "x": {...}, "ratio_z_over_x_0_5": r, "ratio_z_over_x_0_143": r, "half_angle_deg": a}``;
    each direction holds ``res_0_5_nm``, ``res_0_143_nm`` and whether the curve stayed above the threshold up
    to Nyquist (``*_reaches_nyquist``: the crossing is then only a bound).
    """
    out: dict[str, Any] = {"half_angle_deg": half_angle}
    for name in ("z", "x"):
        c = conical_fsc(x, obj, voxel_size=voxel_size, axis=name, half_angle=half_angle, soft_edge=soft_edge)
        out[name] = {"res_0_5_nm": c.res_0_5, "res_0_143_nm": c.res_0_143,
                     "res_0_5_reaches_nyquist": not c.crosses(0.5),
                     "res_0_143_reaches_nyquist": not c.crosses(0.143),
                     "fsc": np.round(c.fsc, 5).tolist(), "frequency_per_nm": c.frequency_per_nm.tolist()}
    for t in ("0_5", "0_143"):
        out[f"ratio_z_over_x_{t}"] = out["z"][f"res_{t}_nm"] / out["x"][f"res_{t}_nm"]
    return out
