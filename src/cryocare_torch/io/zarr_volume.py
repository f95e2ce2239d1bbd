"""Zarr and OME-Zarr tomograms (as the CZ cryoET Data Portal serves them), read chunk by chunk.

An OME-Zarr group (NGFF 0.4: ``multiscales`` in the group attributes; 0.5: under ``ome``) is read at its first
(full-resolution) dataset, with the voxel size from that dataset's ``scale`` transformation and the axes' units
(the Data Portal writes z, y, x in ``angstrom``). A plain Zarr array, or a group holding one array, is read as is.
Needs the optional ``zarr`` package (``pip install 'cryocare-torch[zarr]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError

_UNIT_ANGSTROM = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7, "meter": 1e10}
ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")


def is_zarr(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in (".zarr", ".ome.zarr") or (p.is_dir() and any((p / m).exists() for m in ZARR_MARKERS))


def _zarr_module(p: Path) -> Any:
    try:
        import zarr  # optional dependency
    except ModuleNotFoundError:
        raise InputFileError("reading Zarr needs the zarr package: pip install 'cryocare-torch[zarr]'", p) from None
    return zarr


def _multiscales(attrs: Mapping[str, Any]) -> list[Any] | None:
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _scale(transforms: Any) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, Mapping) and t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    return None


def _ome_voxel(ms: Mapping[str, Any], ds: Mapping[str, Any], ndim: int) -> tuple[float, float, float]:
    scale = _scale(ds.get("coordinateTransformations"))
    top = _scale(ms.get("coordinateTransformations"))
    axes = ms.get("axes") or []
    if scale is None or len(scale) != ndim or len(axes) != ndim:
        return (0.0, 0.0, 0.0)
    if top is not None and len(top) == ndim:
        scale = [a * b for a, b in zip(scale, top, strict=True)]
    size = {}
    for ax, s in zip(axes, scale, strict=True):
        name, unit = (ax.get("name"), ax.get("unit")) if isinstance(ax, Mapping) else (ax, None)
        if name in ("x", "y", "z") and unit in _UNIT_ANGSTROM:
            size[name] = s * _UNIT_ANGSTROM[unit]
    if "x" not in size:
        return (0.0, 0.0, 0.0)
    return (size["x"], size.get("y", size["x"]), size.get("z", size["x"]))


def open_zarr_volume(path: str | Path) -> tuple[Any, tuple[int, ...], tuple[float, float, float]]:
    """The (lazy, chunked) array, its shape without singleton axes, and the voxel size ``(x, y, z)`` in Angstrom."""
    p = Path(path)
    zarr = _zarr_module(p)
    try:
        node = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - missing/corrupt stores become one line
        raise InputFileError(f"cannot open Zarr ({type(exc).__name__}: {str(exc)[:120]})", p) from None
    voxel = (0.0, 0.0, 0.0)
    if hasattr(node, "array_keys"):  # a group
        ms = _multiscales(dict(node.attrs))
        if ms is not None:
            ds = ms[0]["datasets"][0]
            arr = node[ds["path"]]
            voxel = _ome_voxel(ms[0], ds, arr.ndim)
        else:
            keys = list(node.array_keys())
            if len(keys) != 1:
                raise InputFileError(f"Zarr group holds {len(keys)} arrays and no OME 'multiscales'; give the array "
                                     "folder itself", p)
            arr = node[keys[0]]
    else:
        arr = node
    lead = 0
    while lead < arr.ndim - 2 and arr.shape[lead] == 1:  # OME's t, c (and a single z) of size 1
        lead += 1
    shape = tuple(int(n) for n in arr.shape[lead:])
    if len(shape) not in (2, 3):
        raise InputFileError(f"Zarr array has shape {tuple(arr.shape)}; expected one 3D tomogram or 2D image", p)
    return ChunkedVolume(arr, lead), shape, voxel


class ChunkedVolume:
    """A read-only array view of a Zarr array that reads only the chunks a selection touches.

    Supports basic slicing and the row gather ``vol[z_indices, y_indices]`` used for statistics (one z-plane
    at a time), so memory stays bounded by the selection, never the tomogram.
    """

    def __init__(self, arr: Any, lead: int = 0) -> None:
        self._arr, self._lead = arr, (0,) * lead
        self.shape = tuple(int(n) for n in arr.shape[lead:])
        self.dtype, self.ndim = np.dtype(arr.dtype), len(self.shape)

    def _raw(self, key: Any) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        return np.asarray(self._arr[self._lead + keys])

    def __getitem__(self, key: Any) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) == 2 and all(isinstance(k, np.ndarray) for k in keys) and self.ndim == 3:
            zi, yi = (np.asarray(k, dtype=np.int64) for k in keys)
            out = np.empty((len(zi), self.shape[2]), dtype=self.dtype)
            for z in np.unique(zi):
                sel = zi == z
                out[sel] = self._raw((int(z),))[yi[sel]]
            return out
        return self._raw(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._raw(...), dtype=dtype)
