"""Single-axis tilt geometry in IMOD's convention, shared by the projector and the back-projector.

Coordinates
-----------
A volume is ``(d, h, w)`` = ``(z, y, x)``; ``z`` is the beam direction (thickness) at zero tilt, the
tilt axis is ``y`` (rows of the tilt series). A tilt series is ``(n, h, w_det)``. Positions are voxel
indices; the centre of an axis of length ``n`` is :func:`center` ``(n) = (n - 1) / 2``.

Convention (IMOD ``tilt`` + ``trimvol -rx``)
-------------------------------------------
A point at ``(x, z)`` relative to the volume centre is seen, in the view at tilt angle ``theta``
(degrees, as in a ``.tlt`` file), at detector position ``u`` relative to the detector centre::

    u = x * cos(theta) + z * sin(theta)

i.e. the specimen is rotated by ``+theta`` about ``+y`` (right-handed, ``R_y`` of :func:`rotation_y`)
and projected along ``z``. The detector row equals ``y``.

Evidence (IMOD source, LabShare-Archive/IMOD):

* ``flib/tilt/tilt.f90`` sets ``cosBeta = cos(theta)`` and ``sinBeta = -sin(theta)`` ("take the
  negative of the sine ... equations are written for rotations in the X/Z plane, viewed from the
  negative Y axis"), and back-projects output row ``i`` (the thickness axis of tilt's X-Z output
  slices), column ``j`` from input position ``xcenIn + (j - xcenOut) * cosBeta + (i - ycenOut) *
  sinBeta`` (routine ``PROJECT``; identical in the CUDA kernel ``bpNoXtTest`` of ``gpubp.cu``).
* ``clip/clip_proc.c`` (``clip rotx``, used by ``trimvol -rx`` in etomo's post-processing) writes
  output section ``k`` from input line ``ny - 1 - k`` and output line ``j`` from input section ``j``,
  so the final tomogram has ``z = thickness - 1 - i``: the minus sign of ``sinBeta`` cancels and
  ``u = x cos(theta) + z sin(theta)`` in the rotated tomogram. (A volume made with ``trimvol -yz``
  (flip instead of rotate) is mirrored in ``z`` relative to this.)

Centres: IMOD uses ``xcenIn = nx/2 + 0.5`` (1-based, i.e. ``(nx - 1)/2`` 0-based) for the detector
and ``iwidth/2 + 0.5`` / ``ithick/2 + 0.5`` with integer division for the output; these equal
``(n - 1)/2`` for even sizes. For odd output sizes IMOD's centre is half a voxel lower; we keep
``(n - 1)/2`` so geometry is symmetric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..io.imod import read_tlt

AngleLike = Tensor | np.ndarray | Sequence[float]


def center(n: int) -> float:
    """Centre of an axis of ``n`` samples in 0-based index units: ``(n - 1) / 2``."""
    return (int(n) - 1) / 2.0


def as_angles(angles_deg: AngleLike | str | Path, n_views: int | None = None) -> Tensor:
    """Tilt angles in degrees as a 1-D float64 CPU tensor; reads a ``.tlt`` file if given a path.

    Raises :class:`DataError` for an empty, non-finite or wrongly sized list (``n_views``).
    """
    source = None
    if isinstance(angles_deg, (str, Path)):

        source = Path(angles_deg)
        angles_deg = read_tlt(source)
    a = torch.as_tensor(np.asarray(angles_deg, dtype=np.float64) if not isinstance(angles_deg, Tensor)
                        else angles_deg.detach().to("cpu", torch.float64))
    a = a.reshape(-1) if a.ndim == 0 else a
    if a.ndim != 1 or a.numel() == 0:
        raise DataError("tilt angles must be a non-empty 1-D list of degrees", source)
    if not bool(torch.isfinite(a).all()):
        raise DataError("tilt angles contain NaN or infinite values; fix the angle list", source)
    if bool((a.abs() > 180).any()):
        raise DataError("tilt angles must lie within -180..180 degrees; are they in radians?", source)
    if n_views is not None and a.numel() != int(n_views):
        raise DataError(
            f"{a.numel()} tilt angles for {int(n_views)} views; give exactly one angle per view", source
        )
    return a


def sort_angles(angles_deg: AngleLike) -> tuple[Tensor, Tensor]:
    """``(sorted_angles, order)`` with ``sorted_angles = angles[order]`` (stable, ascending)."""
    a = as_angles(angles_deg)
    order = torch.argsort(a, stable=True)
    return a[order], order


def angular_intervals(angles_deg: AngleLike) -> Tensor:
    """Angular interval (radians) each view represents, in the input order, shape ``(n,)``.

    Views are sorted by angle; a view's interval is the mean of the gaps to its neighbours (one gap at
    either end), as IMOD's tilt-increment weighting does. The intervals of a full ``-90..90`` range sum
    to about ``pi``; decimating a tilt set (e.g. keeping every second tilt) doubles the intervals, so
    weighted back-projections keep the same amplitude. A single view gets ``pi``.
    """
    a = as_angles(angles_deg)
    n = a.numel()
    if n == 1:
        return torch.full((1,), math.pi, dtype=torch.float64)
    s, order = sort_angles(a)
    gaps = torch.deg2rad(s[1:] - s[:-1])
    # mean of the gaps to both neighbours; the end views have a single neighbour
    w_sorted = torch.empty(n, dtype=torch.float64)
    w_sorted[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w_sorted[0], w_sorted[-1] = gaps[0], gaps[-1]
    if float(w_sorted.sum()) <= 0:
        raise DataError("all tilt angles are equal; a tilt series needs different angles")
    out = torch.empty_like(w_sorted)
    out[order] = w_sorted
    return out


def uniform_intervals(angles_deg: AngleLike) -> Tensor:
    """The mean angular interval (radians) for every view, ignoring uneven spacing."""
    a = as_angles(angles_deg)
    n = a.numel()
    if n == 1:
        return torch.full((1,), math.pi, dtype=torch.float64)
    span = math.radians(float(a.max() - a.min()))
    if span <= 0:
        raise DataError("all tilt angles are equal; a tilt series needs different angles")
    return torch.full((n,), span / (n - 1), dtype=torch.float64)


def rotation_y(angle_deg: float) -> Tensor:
    """3x3 right-handed rotation about ``+y`` acting on ``(x, y, z)`` column vectors.

    ``(rotation_y(t) @ p)[0]`` is the detector coordinate of ``p`` in the view at tilt ``t``.
    """
    t = math.radians(float(angle_deg))
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


def detector_x(
    x: float | Tensor,
    z: float | Tensor,
    angle_deg: float | Tensor,
    *,
    width: int,
    thickness: int,
    detector_width: int | None = None,
) -> Tensor:
    """Detector column (0-based, fractional) where voxel column ``x``, layer ``z`` projects at ``angle_deg``.

    ``width``/``thickness`` are the volume's ``w``/``d``; ``detector_width`` defaults to ``width``.
    """
    wd = width if detector_width is None else detector_width
    t = torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float64))
    xr = torch.as_tensor(x, dtype=torch.float64) - center(width)
    zr = torch.as_tensor(z, dtype=torch.float64) - center(thickness)
    return center(wd) + xr * torch.cos(t) + zr * torch.sin(t)


def sparse_rows(
    blocks: Sequence[tuple[Tensor, Tensor, Tensor]],
    n_cols: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Stack row blocks into one CSR matrix ``(sum of R, n_cols)``.

    Each block is ``(counts (R,), cols (nnz,), vals (nnz,))``: the entries of its rows in row-major order,
    columns sorted and distinct within a row. Index dtype is int32 when it fits (half the memory).
    """
    cnt = torch.cat([b[0] for b in blocks])
    nnz = int(cnt.sum())
    idx = torch.int32 if max(nnz, n_cols) < 2**31 - 1 else torch.int64
    crow = torch.zeros(cnt.numel() + 1, dtype=idx)
    torch.cumsum(cnt, 0, out=crow[1:])
    cols = torch.cat([b[1].to(idx) for b in blocks])
    vals = torch.cat([b[2].to(dtype) for b in blocks])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, cols, vals, (cnt.numel(), int(n_cols)), device=device)
