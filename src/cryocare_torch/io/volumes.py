"""Tomograms in any container we read: MRC, TIFF z-stacks (ImageJ/napari/cylindra), Zarr/OME-Zarr.

One interface for the commands that read volumes (train, predict, denoise, fsc, baseline): the metadata, an
array view for random access (memmap or chunked, never a full copy for MRC and Zarr), and float32 z-slabs.
Outputs are always MRC.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from .mrc import VolumeMeta, open_memmap, read_meta, read_slab
from .tiff import TIFF_SUFFIXES, open_tiff_volume, read_tiff_slab
from .zarr_volume import is_zarr, open_zarr_volume


def volume_container(path: str | Path) -> str:
    """``tiff`` (.tif/.tiff), ``zarr`` (.zarr or a Zarr folder) or ``mrc`` (everything else)."""
    p = Path(path)
    if p.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    return "zarr" if is_zarr(p) else "mrc"


def _open_other(p: Path, container: str) -> tuple[Any, VolumeMeta]:
    if not p.exists():
        raise InputFileError("file not found; check the path", p)
    arr, shape, voxel = open_tiff_volume(p) if container == "tiff" else open_zarr_volume(p)
    if not np.issubdtype(np.dtype(arr.dtype), np.number) or np.dtype(arr.dtype).kind == "c":
        raise InputFileError(f"data type {arr.dtype} is not a real number type", p)
    meta = VolumeMeta(shape=shape, voxel_size=voxel, mode=2, dtype=np.dtype(arr.dtype).str, container=container)
    return arr, meta


def read_volume_meta(path: str | Path) -> VolumeMeta:
    """Shape, voxel size (Angstrom, zeros when the file has none) and container of any supported volume."""
    container = volume_container(path)
    if container == "mrc":
        return read_meta(path)
    return _open_other(Path(path), container)[1]


def open_volume(path: str | Path) -> tuple[Any, VolumeMeta]:
    """An array view: a read-only memmap (MRC, uncompressed TIFF), a chunked Zarr view, or a decoded TIFF."""
    container = volume_container(path)
    if container == "mrc":
        return open_memmap(path, read_meta(path))
    return _open_other(Path(path), container)


def read_volume_slab(path: str | Path, meta: VolumeMeta, z0: int, z1: int) -> np.ndarray:
    """``data[z0:z1]`` as float32 ``(k, h, w)`` reading only those sections; a 2D image is one section."""
    if meta.container == "tiff":
        return read_tiff_slab(path, meta.shape, z0, min(z1, meta.shape[0]) if meta.ndim == 3 else 1)
    if meta.container == "zarr":
        arr = open_zarr_volume(path)[0]
        data = arr[int(z0) : int(z1)] if meta.ndim == 3 else arr[...][None]
        return np.asarray(data, dtype=np.float32)
    if meta.ndim == 3:
        return read_slab(path, meta, z0, z1)
    mm, _ = open_memmap(path, meta)
    out = np.array(mm, dtype=np.float32, copy=True)[None]
    del mm
    return out


def read_whole_volume(path: str | Path, voxel_size: float | None = None) -> tuple[np.ndarray, VolumeMeta]:
    """The whole volume as float32 and its metadata; ``voxel_size`` (Angstrom) replaces the file's."""
    arr, meta = open_volume(path)
    out = np.array(arr[...] if meta.container == "zarr" else arr, dtype=np.float32, copy=True)
    del arr
    return out, with_voxel_size(meta, voxel_size)


def with_voxel_size(meta: VolumeMeta, voxel_size: float | None) -> VolumeMeta:
    """``meta`` with an isotropic voxel size given by the user (None: unchanged)."""
    return meta if voxel_size is None else replace(meta, voxel_size=(float(voxel_size),) * 3)
