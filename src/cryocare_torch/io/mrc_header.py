"""MRC headers as other software writes them: the quirks :func:`cryocare_torch.io.mrc.read_meta` accepts.

mrcfile is strict, and should be: a file it refuses is usually damaged. A few refusals, though, hit
files that IMOD, Chimera and RELION read without complaint, and a few strict reads are silently wrong:

* **no machine stamp** (``machst`` 0, written by some older converters): the byte order is taken from
  the mode field (the one that gives a valid mode), as IMOD does, and a warning says so;
* **no map ID** (pre-MRC2000 headers): accepted only when the file size is exactly header + extended
  header + data, so a random file is still "not an MRC file";
* **unsigned bytes**: mode 0 is signed (MRC2014), but IMOD writes unsigned bytes (``newstack -mode 0``,
  ``trimvol``) and reads mode 0 by IMOD's rule (:func:`imod_bytes_signed`): under its stamp, bit 0 of
  ``imodFlags`` says signed; without the stamp the header's min/max decide. Read as int8, unsigned bytes
  wrap (200 becomes -56); here they are read as uint8;
* **axis order** (``mapc, mapr, maps`` other than 1, 2, 3, e.g. older EMDB/SPIDER maps): the data are
  transposed to ``(z, y, x)`` on reading (:func:`axis_permutation`).
"""

from __future__ import annotations

import functools
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
    what = ("no 'MAP ' ID (a pre-MRC2000 header; its size matches the data exactly)" if "Map ID" in strict_error
            else strict_error.rstrip("."))
    warn_once(f"warning: {p}: {what}; read as {'big' if h.mode.dtype.byteorder == '>' else 'little'}-endian "
              f"with mode {int(h.mode)}")
    return h, voxel


@functools.lru_cache(maxsize=256)
def warn_once(message: str, logger: str = "cryocare_torch.io.mrc") -> None:
    """Log ``message`` as a warning the first time only (a file's header is read several times per run)."""
    logging.getLogger(logger).warning(message)


def origin_xyz(h: Any) -> tuple[float, float, float]:
    """Header origin ``(x, y, z)`` in Angstrom as stored (maybe not finite); IMOD's layout without the ``MAP `` ID.

    IMOD (``mrc_head_read`` in ``libiimod/mrcfiles.c``) reads an old-style header (no ``MAP `` at byte 208)
    with the origin at bytes 212 (x), 216 (y) and 208 (z), where MRC2000 puts cmap, stamp and rms.
    """
    if h.tobytes()[208:212] == b"MAP ":
        xyz = (h.origin.x, h.origin.y, h.origin.z)
    else:
        order = "<" if h.mode.dtype.byteorder != ">" else ">"
        z, x, y = np.frombuffer(h.tobytes()[208:220], dtype=f"{order}f4")
        xyz = (x, y, z)
    return float(xyz[0]), float(xyz[1]), float(xyz[2])


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


def data_dtype(h: Any, p: Path | None = None) -> np.dtype:
    """The on-disk dtype: mrcfile's, except mode 0, which is read by IMOD's rule (:func:`imod_bytes_signed`).

    Without IMOD's stamp the choice rests on the header's min/max, and one ``warning:`` line (naming ``p``)
    says which reading was chosen and why.
    """
    dtype = data_dtype_from_header(h)
    if int(h.mode) != 0:
        return dtype
    raw = h.tobytes()
    order = "<" if h.mode.dtype.byteorder != ">" else ">"
    stamp, flags = (int(v) for v in np.frombuffer(raw[152:160], dtype=f"{order}i4"))
    signed, why = imod_bytes_signed(stamp, flags, float(h.dmin), float(h.dmax))
    if stamp != IMOD_STAMP:
        kind = "signed bytes (-128..127)" if signed else "unsigned bytes (0..255)"
        warn_once(f"warning: {p or 'MRC file'}: mode 0 without IMOD's stamp: read as {kind}, as IMOD and 3dmod "
                  f"read it, because {why}")
    return np.dtype(np.int8) if signed else np.dtype(np.uint8)


def imod_bytes_signed(stamp: int, flags: int, dmin: float, dmax: float) -> tuple[bool, str]:
    """``(signed, reason)`` for mode-0 data, IMOD's rule (``readBytesSigned`` in IMOD ``libcfshr/b3dutil.c``).

    With the IMOD stamp (header word 39 = 1146047817) bit 0 of ``imodFlags`` (``MRC_FLAGS_SBYTES``) decides.
    Without it the header's ``dmin``/``dmax`` are the evidence:

    * ``dmin < 0`` and ``dmax < 128``: signed (a value below 0 exists, none above 127);
    * ``dmin >= 0`` and ``dmax >= 128``: unsigned (a value above 127 exists, none below 0);
    * ``dmin < 0`` and ``dmax >= 128``: the header fits neither; signed if ``-dmin > dmax - 128`` (the
      larger excursion outside the other range wins), else unsigned;
    * ``dmin >= 0`` and ``dmax < 128``: either (values 0..127 read the same both ways): unsigned.

    IMOD's environment variable ``READ_MODE0_SIGNED`` overrides this; we do not read it (no global state).
    """
    if stamp == IMOD_STAMP:
        signed = bool(flags & 1)
        return signed, f"IMOD's stamp is set and imodFlags bit 0 is {int(signed)}"
    rng = f"the header's min/max are {dmin:g}/{dmax:g}"
    if dmin < 0 and dmax < 128:
        return True, f"{rng} (below 0, none above 127)"
    if dmin >= 0 and dmax >= 128:
        return False, f"{rng} (above 127, none below 0)"
    if dmin < 0:
        signed = -dmin > dmax - 128
        return signed, f"{rng}, which fit neither reading; IMOD picks the smaller violation"
    return False, f"{rng} (0..127 read the same either way; IMOD's default is unsigned)"


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
