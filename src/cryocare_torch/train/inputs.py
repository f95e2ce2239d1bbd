"""Open the even/odd training pairs (MRC/TIFF/Zarr paths or arrays) as read-only arrays, with strict checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.halves import check_distinct_files, check_halves
from ..io.mrc import open_memmap, read_meta
from ..io.volumes import open_volume

Source = str | Path | np.ndarray


@dataclass
class OpenedPair:
    even: np.ndarray
    """``(d, h, w)`` or ``(h, w)``; a read-only memmap for files."""
    odd: np.ndarray
    name: str
    ndim: int
    """3 for a volume; 2 for an image or an image stack (MRC with ispg 0)."""


def _open(src: Source) -> tuple[np.ndarray, tuple[float, float, float] | None, bool, str]:
    if isinstance(src, np.ndarray):
        return src, None, False, "array"
    arr, meta = open_volume(src)  # MRC/TIFF memmap or a chunked Zarr view
    return arr, (meta.voxel_size if meta.has_voxel_size else None), meta.is_stack, str(src)


def open_pair(even: Source, odd: Source, index: int = 0) -> OpenedPair:
    """Open one pair; halves must have the same shape and voxel size (:class:`DataError` otherwise)."""
    if not isinstance(even, np.ndarray) and not isinstance(odd, np.ndarray):
        check_distinct_files(even, odd)
    e, ve, stack, ne = _open(even)
    o, vo, _, no = _open(odd)
    if ne == "array" and no == "array":
        name = f"pair {index}"
    else:
        name = ne if ne != "array" else no
    if e.ndim not in (2, 3):
        raise DataError(f"{ne}: expected a 2D image or a 3D volume, got shape {e.shape}")
    check_halves(ne, no, e.shape, o.shape, ve, vo)
    if not (np.issubdtype(e.dtype, np.number) and np.issubdtype(o.dtype, np.number)):
        raise DataError(f"{name}: data must be numeric, got {e.dtype} and {o.dtype}")
    ndim = 3 if e.ndim == 3 and not stack else 2
    return OpenedPair(e, o, name, ndim)


def open_pairs(pairs: Sequence[tuple[Source, Source]]) -> list[OpenedPair]:
    """Open all pairs; they must all be 3D volumes or all 2D images/stacks."""
    if not pairs:
        raise DataError("no even/odd pairs given; pass at least one pair")
    opened = [open_pair(e, o, i) for i, (e, o) in enumerate(pairs)]
    kinds = {p.ndim for p in opened}
    if len(kinds) > 1:
        names = ", ".join(f"{p.name} ({p.ndim}D)" for p in opened)
        raise DataError(f"cannot train one model on both 2D and 3D data: {names}; train them separately")
    return opened


def open_mask(path: str | Path, pairs: Sequence[OpenedPair]) -> np.ndarray:
    """The sampling mask as a read-only memmap; its shape must match every pair."""
    mask, meta = open_memmap(path, read_meta(path))
    for p in pairs:
        if tuple(mask.shape) != tuple(p.even.shape):
            raise DataError(
                f"mask shape {tuple(mask.shape)} differs from {p.name} {tuple(p.even.shape)}; "
                "use a mask of the same size as the data (or train that pair without a mask)",
                path,
            )
    return mask
