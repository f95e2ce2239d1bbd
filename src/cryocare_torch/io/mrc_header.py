"""MRC headers as other software writes them: the quirks :func:`cryocare_torch.io.mrc.read_meta` accepts.

mrcfile is strict, and should be: a file it refuses is usually damaged. A few refusals, though, hit
files that IMOD, Chimera and RELION read without complaint, and a few strict reads are silently wrong:

* **no machine stamp** (``machst`` 0, written by some older converters): the byte order is taken from
  the mode field (the one that gives a valid mode), as IMOD does, and a warning says so;
* **no map ID** (pre-MRC2000 headers): accepted only when the file size is exactly header + extended
  header + data, so a random file is still "not an MRC file";
* **unsigned bytes**: mode 0 is signed (MRC2014), but IMOD writes unsigned bytes (``newstack -mode 0``,
  ``trimvol``) and says so by leaving bit 0 of ``imodFlags`` clear under its stamp. Read as int8 those
  bytes wrap (200 becomes -56); here they are read as uint8;
* **axis order** (``mapc, mapr, maps`` other than 1, 2, 3, e.g. older EMDB/SPIDER maps): the data are
  transposed to ``(z, y, x)`` on reading (:func:`axis_permutation`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from mrcfile.utils import data_dtype_from_header

from ..errors import InputFileError

HEADER_BYTES = 1024
IMOD_STAMP = 1146047817
"""``imodStamp`` (header word 39): IMOD wrote this file and ``imodFlags`` is meaningful."""
_logger = logging.getLogger("cryocare_torch.io.mrc")


def open_header(p: Path, size: int) -> tuple[Any, tuple[float, float, float]]:
    """``(header, voxel size (x, y, z) in Angstrom, 0 = unknown)`` of ``p`` (``size`` bytes), quirks allowed."""
    try:
        return _read(p, permissive=False)
    except PermissionError:
        raise InputFileError("permission denied; make the file readable", p) from None
    except (ValueError, OSError) as exc:
        strict_error = str(exc)
    quirk = "machine stamp" in strict_error or "Map ID" in strict_error
    if quirk:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h, voxel = _read(p, permissive=True)
        except (ValueError, OSError):
            quirk = False
    if quirk and "Map ID" in strict_error and _expected_size(h) != size:
        quirk = False
    if not quirk:
        raise InputFileError(f"not a valid MRC file ({strict_error})", p)
    _logger.warning("%s: %s; read as %s-endian with mode %d", p, strict_error.rstrip("."),
                    "big" if h.mode.dtype.byteorder == ">" else "little", int(h.mode))
    return h, voxel


def _read(p: Path, permissive: bool) -> tuple[Any, tuple[float, float, float]]:
    with mrcfile.open(p, mode="r", header_only=True, permissive=permissive) as mrc:
        h = mrc.header.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            vs = mrc.voxel_size  # cella / mx: inf or NaN for mx = 0
    # a non-finite or negative cell is no voxel size (0 = unknown, as mrcfile writes it)
    vx, vy, vz = (float(v) if np.isfinite(v) and v > 0 else 0.0 for v in (vs.x, vs.y, vs.z))
    return h, (vx, vy, vz)


def _expected_size(h: Any) -> int:
    try:
        dtype = data_dtype_from_header(h)
    except ValueError:
        return -1
    return HEADER_BYTES + int(h.nsymbt) + int(h.nx) * int(h.ny) * int(h.nz) * dtype.itemsize


def data_dtype(h: Any) -> np.dtype:
    """The on-disk dtype: mrcfile's, except IMOD's unsigned bytes (mode 0, stamp set, flag bit 0 clear)."""
    dtype = data_dtype_from_header(h)
    if int(h.mode) == 0 and _imod_unsigned_bytes(h):
        return np.dtype(np.uint8)
    return dtype


def _imod_unsigned_bytes(h: Any) -> bool:
    raw = h.tobytes()
    order = "<" if h.mode.dtype.byteorder != ">" else ">"
    stamp, flags = np.frombuffer(raw[152:160], dtype=f"{order}i4")
    return int(stamp) == IMOD_STAMP and not int(flags) & 1


def axis_permutation(h: Any, p: Path) -> tuple[int, int, int]:
    """Transpose taking the on-disk ``(sections, rows, columns)`` array to ``(z, y, x)``.

    ``mapc, mapr, maps`` name the space axis (1 = x, 2 = y, 3 = z) of columns, rows and sections; the
    standard 1, 2, 3 gives ``(0, 1, 2)``. Anything but a permutation of 1, 2, 3 is refused.
    """
    order = (int(h.maps), int(h.mapr), int(h.mapc))  # space axis of disk axes 0, 1, 2
    if sorted(order) != [1, 2, 3]:
        if order == (0, 0, 0):  # left unset by some writers: the standard order
            return (0, 1, 2)
        raise InputFileError(f"header axis order mapc, mapr, maps = {order[2]}, {order[1]}, {order[0]} is not a "
                             "permutation of 1, 2, 3; the file is damaged or not an MRC map", p)
    return order.index(3), order.index(2), order.index(1)
