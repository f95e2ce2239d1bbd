"""Merge two restorations of one tomogram in Fourier space: the measured region from one, the wedge from the other.

A tilt series about ``y`` over ``[min, max]`` measured the Fourier voxels whose direction in the ``(k_x, k_z)``
plane lies within that range (:func:`cryocare_torch.tomo.wedge.wedge_mask`); the rest is the missing wedge. The
merge of a plain Noise2Noise restoration ``p`` (which restores the measured directions best) and a missing-wedge
one ``w`` (which fills the wedge) is::

    F^-1[ M F(p) + (1 - M) F(w) ]        M = 1 where measured

``M`` does not depend on ``k_y``, and the Fourier transform along ``y`` is linear, so the 3D merge equals a 2D
merge of every ``xz`` section over ``(z, x)``: the volume is processed in bands of ``y`` and never held whole.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io.mrc_write import VolumeWriter
from ..io.volumes import open_volume
from ..logs import Log, quiet
from ..tomo.wedge import check_tilt_range


def measured_xz(depth: int, width: int, tilt_range: tuple[float, float]) -> torch.Tensor:
    """float64 ``(depth, 1, width)`` indicator on the ``fft2`` grid over ``(z, x)``: 1 where a tilt in
    ``tilt_range`` (degrees about y) measured the frequency; the same convention as ``wedge_mask``."""
    lo, hi = float(tilt_range[0]), float(tilt_range[1])
    check_tilt_range(lo, hi)
    kz = torch.fft.fftfreq(depth, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    angle = torch.rad2deg(torch.atan2(kz, kx))
    angle = torch.where(angle > 90, angle - 180, torch.where(angle <= -90, angle + 180, angle))
    measured = (angle >= lo - 1e-9) & (angle <= hi + 1e-9)
    measured |= (kz == 0) & (kx == 0)
    if math.isclose(hi - lo, 180.0):
        measured[:] = True
    return measured[:, None, :].to(torch.float64)


def merge_measured(measured_from: torch.Tensor, wedge_from: torch.Tensor, tilt_range: tuple[float, float]
                   ) -> torch.Tensor:
    """``(d, h, w)`` float32: the Fourier voxels ``tilt_range`` measured from ``measured_from``, the missing wedge
    from ``wedge_from`` (same shape)."""
    if measured_from.shape != wedge_from.shape or measured_from.dim() != 3:
        raise DataError(f"cannot merge volumes of shapes {tuple(measured_from.shape)} and {tuple(wedge_from.shape)}")
    m = measured_xz(measured_from.shape[0], measured_from.shape[2], tilt_range)
    a = torch.fft.fft2(measured_from.to(torch.float64), dim=(0, 2))
    b = torch.fft.fft2(wedge_from.to(torch.float64), dim=(0, 2))
    return torch.fft.ifft2(m * a + (1.0 - m) * b, dim=(0, 2)).real.to(torch.float32)


def merge_files(measured_from: Path, wedge_from: Path, output: Path, tilt_range: tuple[float, float], *,
                overwrite: bool = False, band_voxels: int = 1 << 24, dtype: str = "float32", log: Log = quiet
                ) -> Path:
    """:func:`merge_measured` of two MRC/TIFF/Zarr volumes into ``output`` (atomically; header of ``wedge_from``),
    reading bands of ``y`` of about ``band_voxels`` voxels each."""
    a, meta_a = open_volume(measured_from)
    b, meta_b = open_volume(wedge_from)
    if tuple(meta_a.shape) != tuple(meta_b.shape) or len(meta_a.shape) != 3:
        raise DataError(f"{measured_from.name} is {'x'.join(map(str, meta_a.shape))} voxels but "
                        f"{wedge_from.name} is {'x'.join(map(str, meta_b.shape))}; merge restorations of one tomogram")
    d, h, w = (int(s) for s in meta_a.shape)
    band = max(1, min(h, band_voxels // (d * w)))
    log(f"merging {measured_from.name} (measured region) and {wedge_from.name} (missing wedge "
        f"{tilt_range[0]:g}..{tilt_range[1]:g}) in {math.ceil(h / band)} band(s) of y")
    with VolumeWriter(output, (d, h, w), meta_b, overwrite=overwrite, inputs=[measured_from, wedge_from],
                      label="cryocare-torch merge: measured region + wedge", dtype=dtype) as writer:
        for y0 in range(0, h, band):
            y1 = min(h, y0 + band)
            pa = torch.from_numpy(np.array(a[:, y0:y1, :], dtype=np.float32))
            pb = torch.from_numpy(np.array(b[:, y0:y1, :], dtype=np.float32))
            writer.write_block((0, y0, 0), merge_measured(pa, pb, tilt_range).numpy())
        return writer.close()
