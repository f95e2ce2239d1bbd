"""MRC files <-> arrays + metadata, strict and memory-bounded.

Arrays are ``(d, h, w)`` = ``(z, y, x)`` for volumes and stacks, ``(h, w)`` for single images.
Voxel sizes are in Angstrom, kept in MRC order ``(x, y, z)`` in :class:`VolumeMeta`.

* :func:`read_meta` validates a header (and that the file holds all the data it announces); it and
  :class:`VolumeMeta` live in :mod:`.mrc_meta`.
* :func:`open_memmap` maps the data read-only; :func:`read_slab` reads a z-range through a
  short-lived map so resident memory stays bounded by the slab, not the file.
* :func:`write_volume` writes a whole array atomically; :class:`VolumeWriter` writes slab by slab
  to a temporary file that is renamed into place only when complete (both in :mod:`.mrc_write`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .mrc_header import HEADER_BYTES
from .mrc_meta import SUPPORTED_MODES, VolumeMeta, read_meta
from .mrc_write import FLOAT16_MAX, VolumeWriter, write_volume

__all__ = ["FLOAT16_MAX", "HEADER_BYTES", "SUPPORTED_MODES", "VolumeMeta", "VolumeWriter", "open_memmap", "read_meta",
           "read_slab", "read_volume", "write_volume"]


def open_memmap(path: str | Path, meta: VolumeMeta | None = None) -> tuple[np.memmap, VolumeMeta]:
    """Map the data read-only (no copy). Pages touched stay resident until the map is dropped."""
    meta = meta or read_meta(path)
    arr = np.memmap(Path(path), dtype=np.dtype(meta.dtype), mode="r", offset=meta.data_offset, shape=meta.disk_shape)
    if meta.axes != (0, 1, 2):
        arr = arr.transpose(meta.axes) if arr.ndim == 3 else arr.transpose(meta.axes[1] - 1, meta.axes[2] - 1)
    return arr, meta


def read_slab(path: str | Path, meta: VolumeMeta, z0: int, z1: int) -> np.ndarray:
    """Read ``data[z0:z1]`` (3D) as float32 through a short-lived map; memory ~ the slab."""
    if meta.ndim != 3:
        raise DataError(f"read_slab needs a 3D volume, got shape {meta.shape}", path)
    d, h, w = meta.shape
    z0, z1 = max(0, int(z0)), min(d, int(z1))
    if meta.axes != (0, 1, 2):  # sections are not z: gather the slab through a transposed map
        mm, _ = open_memmap(path, meta)
        out = np.array(mm[z0:z1], dtype=np.float32, copy=True)
        del mm
        return out
    dt = np.dtype(meta.dtype)
    mm = np.memmap(Path(path), dtype=dt, mode="r", offset=meta.data_offset + z0 * h * w * dt.itemsize,
                   shape=(z1 - z0, h, w))
    out = np.array(mm, dtype=np.float32, copy=True)
    del mm
    return out


def read_volume(path: str | Path) -> tuple[np.ndarray, VolumeMeta]:
    """Read the whole file into memory as float32."""
    mm, meta = open_memmap(path)
    out = np.array(mm, dtype=np.float32, copy=True)
    del mm
    return out, meta
