"""The missing wedge of a single-axis tilt series about ``y``, on the Fourier grid of a cubic patch, and the
24 exact rotations of a cube that move it (pure tensor functions).

Geometry (IMOD convention, :mod:`.projector`): a point at ``(x, z)`` projects to ``u = x cos t + z sin t``, so
the view at tilt ``t`` measures the central plane spanned by ``k_y`` and ``(k_x, k_z) ~ (cos t, sin t)``. A
Fourier voxel is measured when ``atan(k_z / k_x)`` (taken in ``(-90, 90]`` degrees) lies in the tilt range
``[t_min, t_max]``; the ``k_y`` axis (``k_x = k_z = 0``) is in every view. The sign was checked by projecting
and back-projecting noise over an asymmetric range (``tests/test_wedge.py``). DeepDeWedge builds the same
wedge for a symmetric range from two bounding planes (``ddw/utils/missing_wedge.py``,
github.com/MLI-lab/DeepDeWedge); here any ``[t_min, t_max]`` works (lamellae with a pre-tilt).

Rotations are the 24 proper rotations of a cube (an axis permutation with flips, determinant +1): exact on the
voxel grid, no interpolation, nothing rotated out of the patch. DeepDeWedge draws rotations from all of SO(3)
and interpolates (``ddw/utils/rotation.py``); exact rotations keep the high frequencies the Noise2Noise target
carries. A real-space flip ``i -> n - 1 - i`` maps the DFT index ``k -> -k mod n`` (``roll(flip, 1)``) up to a
phase, so a Fourier-space mask follows a volume's rotation through :func:`rotate_spectrum`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError

WEDGE_FLIPS_3D: tuple[tuple[int, ...], ...] = ((), (-2,), (-3, -1), (-3, -2, -1))
"""Flips of the last three ``(z, y, x)`` axes that keep a single-axis missing wedge about y in place, even an
asymmetric one: none, y, z with x (the 180-degree rotation about y), all three. x or z alone maps a tilt range
``[a, b]`` to ``[-b, -a]`` (derivation at :func:`cryocare_torch.patches.augment_batch`). Training augments with
them and ``predict --average-flips`` averages over them."""
WEDGE_FLIPS_2D: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""The 2D counterpart: every flip of ``(y, x)`` (a projection keeps no wedge)."""


@dataclass(frozen=True)
class CubeRotation:
    """``volume.permute(perm).flip(flips)`` on the last three (z, y, x) axes."""

    perm: tuple[int, ...]
    flips: tuple[int, ...]


def _parity(perm: tuple[int, ...]) -> int:
    return sum(1 for i in range(3) for j in range(i + 1, 3) if perm[i] > perm[j]) % 2


CUBE_ROTATIONS: tuple[CubeRotation, ...] = tuple(
    CubeRotation(perm, flips)
    for perm in itertools.permutations(range(3))
    for n in range(4)
    for flips in itertools.combinations(range(3), n)
    if (_parity(perm) + len(flips)) % 2 == 0
)
"""The 24 proper rotations of a cube, the identity first."""


def rotate_volume(x: torch.Tensor, rot: CubeRotation) -> torch.Tensor:
    """Rotate the last three axes of ``x`` (cubic: equal sizes) by ``rot``."""
    lead = x.dim() - 3
    out = x.permute(*range(lead), *(lead + p for p in rot.perm))
    return out.flip([lead + f for f in rot.flips]) if rot.flips else out


def rotate_spectrum(m: torch.Tensor, rot: CubeRotation) -> torch.Tensor:
    """The full-grid (``fftn``) Fourier array of ``rotate_volume(v, rot)`` given that of ``v`` (up to a phase):
    the same permutation, and ``k -> -k mod n`` along flipped axes. Use it for masks and power spectra."""
    lead = m.dim() - 3
    out = m.permute(*range(lead), *(lead + p for p in rot.perm))
    for f in rot.flips:
        out = torch.roll(out.flip(lead + f), 1, dims=lead + f)
    return out


def check_tilt_range(tilt_min: float, tilt_max: float) -> None:
    """:class:`ConfigError` unless ``-90 <= tilt_min < tilt_max <= 90``."""
    if not (-90.0 <= tilt_min < tilt_max <= 90.0):
        raise ConfigError(f"missing wedge: the tilt range must satisfy -90 <= min < max <= 90 degrees, got "
                          f"{tilt_min:g} {tilt_max:g}")


def wedge_mask(size: int, tilt_min: float, tilt_max: float, *, device: torch.device | None = None) -> torch.Tensor:
    """float32 ``(n, n, n)`` on the ``fftn`` grid of an ``n^3`` patch: 1 where a tilt in ``[tilt_min, tilt_max]``
    (degrees, about y) measured the Fourier voxel, 0 in the missing wedge (see the module docstring)."""
    check_tilt_range(tilt_min, tilt_max)
    f = torch.fft.fftfreq(size, dtype=torch.float64, device=device)
    kz, kx = f[:, None], f[None, :]
    angle = torch.rad2deg(torch.atan2(kz, kx))  # (-180, 180]
    angle = torch.where(angle > 90, angle - 180, torch.where(angle <= -90, angle + 180, angle))
    eps = 1e-9
    measured = (angle >= tilt_min - eps) & (angle <= tilt_max + eps)
    measured |= (kz == 0) & (kx == 0)
    if math.isclose(tilt_max - tilt_min, 180.0):
        measured[:] = True
    return measured[:, None, :].expand(size, size, size).to(torch.float32).contiguous()
