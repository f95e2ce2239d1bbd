"""Forward projection (line integrals) of a volume for single-axis tilt about ``y``, IMOD convention.

A point at ``(x, z)`` from the volume centre lands at ``u = x cos(theta) + z sin(theta)`` from the
detector centre (see :mod:`cryocare_torch.tomo.geometry` for the convention and the IMOD source it
comes from). Rows (``y``) are independent and processed in chunks of ``y_chunk`` rows, which bounds
memory.

Method: Joseph's ray-driven projector. For ``|theta| <= 45`` degrees a ray crosses every ``z`` layer
once; its value on a layer is linearly interpolated along ``x`` (bilinear sampling at points on the
layers), summed and multiplied by the path length per layer ``1/|cos(theta)|``. Steeper views step
through the ``x`` columns the ray crosses inside the slab (interpolating along ``z``, length
``1/|sin(theta)|``). The result is the line integral in voxel units (a uniform slab of thickness ``L``
projects to ``L`` at zero tilt). Outside the volume the density is zero.

The interpolation weights form sparse CSR matrices (one for shallow views over a z-major layout padded by
one zero voxel in ``x``, one for steep views over an x-major layout padded in ``z``), shared by every row
``y``: a chunk of rows is projected by sparse-dense products with ``y`` as the dense, contiguous
dimension. :class:`Projector` keeps the matrices for repeated projections with one geometry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .geometry import AngleLike, as_angles, center, sparse_rows

_CHUNK_BYTES = 256 * 2**20  # dense buffers per y-chunk


def _taps(pos: Tensor, n: int, step: float) -> tuple[Tensor, Tensor]:
    """Left tap index on an axis padded by one zero on each side, and the two weights ``(R, P, 2)``."""
    i0 = torch.floor(pos)
    f = (pos - i0).float()
    left = ((i0 >= 0) & (i0 <= n - 1)).float()
    right = ((i0 >= -1) & (i0 <= n - 2)).float()
    vals = torch.stack([(1.0 - f) * left * step, f * right * step], dim=-1)
    return (i0 + 1).clamp(0, n).long(), vals  # taps i0+1 and i0+2 of the padded axis


def _shallow_rows(theta: float, d: int, w: int, det: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rays of a view with ``|theta| <= 45``: one sample per z layer; columns index ``z * (w + 2) + x + 1``."""
    c, s = math.cos(theta), math.sin(theta)
    u = (torch.arange(det, dtype=torch.float64) - center(det))[:, None]
    k = torch.arange(d, dtype=torch.float64)[None, :]
    tap, vals = _taps(center(w) + (u - (k - center(d)) * s) / c, w, 1.0 / abs(c))  # x on layer k
    cols = (tap + (torch.arange(d) * (w + 2))[None, :])[..., None] + torch.arange(2)
    return torch.full((det,), 2 * d), cols.reshape(-1), vals.reshape(-1)


def _steep_rows(theta: float, d: int, w: int, det: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rays of a view with ``|theta| > 45``: one sample per crossed x column; columns ``x * (d + 2) + z + 1``."""
    c, s = math.cos(theta), math.sin(theta)
    u = (torch.arange(det, dtype=torch.float64) - center(det))[:, None]
    if abs(c) > 1e-9:  # only the columns the ray crosses while inside the slab
        span = min(w, int(math.ceil((d + 1) * abs(s / c))) + 2)
        ends = center(w) + (u - (torch.tensor([-1.0, float(d)]) - center(d)) * s) / c  # (det, 2)
        j0 = torch.floor(ends.min(dim=1, keepdim=True).values).clamp(0, w - span)
    else:
        span, j0 = w, torch.zeros_like(u)
    j = j0 + torch.arange(span, dtype=torch.float64)[None, :]
    tap, vals = _taps(center(d) + (u - (j - center(w)) * c) / s, d, 1.0 / abs(s))  # z in column j
    cols = (tap + j.long() * (d + 2))[..., None] + torch.arange(2)
    return torch.full((det,), 2 * span), cols.reshape(-1), vals.reshape(-1)


class Projector:
    """Line-integral projector for volumes of ``shape`` ``(d, h, w)`` at ``angles_deg``; see :func:`project`."""

    def __init__(
        self,
        shape: Sequence[int],
        angles_deg: AngleLike,
        *,
        detector_width: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        d, h, w = (int(s) for s in shape)
        if min(d, h, w) < 1:
            raise DataError(f"cannot project a volume of shape {tuple(shape)}")
        self.shape = (d, h, w)
        self.det = w if detector_width is None else int(detector_width)
        if self.det < 1:
            raise DataError(f"detector_width must be positive, got {self.det}")
        self.angles = as_angles(angles_deg)
        self.dtype, self.device = dtype, torch.device(device) if device is not None else torch.device("cpu")
        theta = torch.deg2rad(self.angles)
        shallow = theta.cos().abs() >= theta.sin().abs()
        self.shallow_idx = torch.nonzero(shallow).flatten()
        self.steep_idx = torch.nonzero(~shallow).flatten()
        self.shallow = sparse_rows([_shallow_rows(float(theta[i]), d, w, self.det) for i in self.shallow_idx],
                                   d * (w + 2), device=self.device, dtype=dtype) if len(self.shallow_idx) else None
        self.steep = sparse_rows([_steep_rows(float(theta[i]), d, w, self.det) for i in self.steep_idx],
                                 w * (d + 2), device=self.device, dtype=dtype) if len(self.steep_idx) else None

    def default_y_chunk(self) -> int:
        """Rows per chunk so the dense buffers stay near 256 MiB."""
        d, h, w = self.shape
        per_row = (2 * (d + 2) * (w + 2) + self.angles.numel() * self.det) * 4
        return max(1, min(h, _CHUNK_BYTES // per_row))

    def __call__(self, volume: Tensor, *, y_chunk: int | None = None) -> Tensor:
        if tuple(volume.shape) != self.shape:
            raise DataError(f"volume shape {tuple(volume.shape)} differs from the projector's {self.shape}")
        d, h, w = self.shape
        m = int(y_chunk) if y_chunk is not None else self.default_y_chunk()
        if m < 1:
            raise DataError(f"y_chunk must be positive, got {m}")
        n, det = self.angles.numel(), self.det
        out = torch.empty((n, h, det), dtype=self.dtype, device=self.device)
        for y0 in range(0, h, m):
            y1 = min(h, y0 + m)
            slab = volume[:, y0:y1, :].to(device=self.device, dtype=self.dtype).permute(0, 2, 1)  # (z, x, rows)
            lines = torch.empty((n, det, y1 - y0), dtype=self.dtype, device=self.device)
            for mat, idx, layout in ((self.shallow, self.shallow_idx, (0, 0, 1, 1)),
                                     (self.steep, self.steep_idx, (0, 0, 1, 1, 0, 0))):
                if mat is None:
                    continue
                src = slab if len(layout) == 4 else slab.permute(1, 0, 2)  # steep: (x, z, rows)
                dense = F.pad(src, layout).reshape(-1, y1 - y0)  # pad the interpolated axis by one zero
                lines[idx.to(self.device)] = (mat @ dense).reshape(len(idx), det, y1 - y0)
            out[:, y0:y1, :] = lines.permute(0, 2, 1)
        return out


def project(
    volume: Tensor,
    angles_deg: AngleLike,
    *,
    detector_width: int | None = None,
    y_chunk: int | None = None,
) -> Tensor:
    """Line-integral projections ``(n, h, detector_width or w)`` of ``volume`` ``(d, h, w)``.

    ``angles_deg`` are tilt angles in degrees (IMOD ``.tlt`` convention). Computed on the volume's device
    in float32 (float64 for a float64 volume). For many volumes of one geometry reuse a :class:`Projector`.
    """
    if volume.ndim != 3:
        raise DataError(f"project needs a (d, h, w) volume, got shape {tuple(volume.shape)}")
    dtype = torch.float64 if volume.dtype == torch.float64 else torch.float32
    proj = Projector(tuple(volume.shape), angles_deg, detector_width=detector_width,
                     device=volume.device, dtype=dtype)
    return proj(volume, y_chunk=y_chunk)
