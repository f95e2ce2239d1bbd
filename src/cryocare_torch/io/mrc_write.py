"""Writing MRC files atomically: :func:`write_volume` (a whole array) and :class:`VolumeWriter` (slab by slab
into a temporary file renamed into place only when complete). Re-exported by :mod:`cryocare_torch.io.mrc`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from ..errors import DataError
from .atomic import atomic_path, check_output, temporary_sibling
from .mrc_header import HEADER_BYTES
from .mrc_meta import VolumeMeta

_LABEL = "cryocare-torch"


def _fill_header(mrc: mrcfile.mrcfile.MrcFile, meta: VolumeMeta | None, extra_label: str | None) -> None:
    h = mrc.header
    if meta is not None:
        mrc.voxel_size = tuple(float(v) for v in meta.voxel_size)
        h.origin.x, h.origin.y, h.origin.z = meta.origin
        h.nxstart, h.nystart, h.nzstart = meta.start
        if meta.is_stack:
            h.ispg = 0
    labels = [lab for lab in (meta.labels if meta else ()) if lab][:9]
    labels.append(extra_label or _LABEL)
    h.nlabl = len(labels)
    for i, lab in enumerate(labels):
        h.label[i] = lab.encode("ascii", "replace")[:80]


def write_volume(
    path: str | Path,
    data: np.ndarray,
    meta: VolumeMeta | None = None,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    label: str | None = None,
) -> Path:
    """Write ``data`` as a float32 (or its own int/float16 mode) MRC, atomically.

    ``meta`` supplies voxel size, origin and labels (e.g. from the input); ``voxel_size`` overrides.
    """
    arr = np.ascontiguousarray(data)
    if arr.dtype not in (np.int8, np.int16, np.uint16, np.float16, np.float32):
        arr = arr.astype(np.float32)
    meta = meta.with_shape(arr.shape) if meta is not None else VolumeMeta(shape=arr.shape)
    if voxel_size is not None:
        if isinstance(voxel_size, (tuple, list, np.ndarray)):
            vx, vy, vz = (float(v) for v in voxel_size)
        else:
            vx = vy = vz = float(voxel_size)
        meta = replace(meta, voxel_size=(vx, vy, vz))
    with atomic_path(path, overwrite=overwrite, inputs=inputs, nbytes=arr.nbytes + HEADER_BYTES) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(arr)
            if arr.ndim == 3 and not meta.is_stack:
                mrc.set_volume()
            _fill_header(mrc, meta, label)
    return Path(path)


FLOAT16_MAX = 65504.0
_WRITER_MODES = {"float32": (2, "<f4"), "float16": (12, "<f2")}


class VolumeWriter:
    """Write a float32 (or float16, MRC mode 12) MRC slab by slab with bounded memory; renamed on :meth:`close`.

    With ``dtype="float16"`` the RMS of the rounding error is kept in :attr:`rounding_rms` (for the caller's check
    against the data's spread) and values beyond float16's range raise :class:`DataError`.

    Use as a context manager: on an exception the partial file is deleted and nothing appears
    at ``path``. Header statistics (min/max/mean/rms) are accumulated from the slabs written.
    """

    def __init__(
        self,
        path: str | Path,
        shape: Sequence[int],
        meta: VolumeMeta | None = None,
        *,
        overwrite: bool = False,
        inputs: Iterable[str | Path] = (),
        label: str | None = None,
        dtype: str = "float32",
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        if dtype not in _WRITER_MODES:
            raise ValueError(f"dtype must be one of {sorted(_WRITER_MODES)}, got {dtype!r}")
        mode, self.dtype = _WRITER_MODES[dtype]
        self.itemsize = np.dtype(self.dtype).itemsize
        nbytes = int(np.prod(self.shape)) * self.itemsize + HEADER_BYTES
        self.path = check_output(path, overwrite=overwrite, inputs=inputs, nbytes=nbytes)
        self.overwrite = overwrite
        self.tmp = temporary_sibling(self.path)
        m = meta.with_shape(self.shape) if meta is not None else VolumeMeta(shape=self.shape)
        with mrcfile.new_mmap(self.tmp, shape=self.shape, mrc_mode=mode, overwrite=True) as mrc:
            if len(self.shape) == 3 and not m.is_stack:
                mrc.set_volume()
            _fill_header(mrc, m, label)
        self._n = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._min = np.inf
        self._max = -np.inf
        self._err_sumsq = 0.0
        self._done = False

    @property
    def data_std(self) -> float:
        """Standard deviation of the values stored so far."""
        if not self._n:
            return 0.0
        mean = self._sum / self._n
        return max(self._sumsq / self._n - mean * mean, 0.0) ** 0.5

    @property
    def rounding_rms(self) -> float:
        """RMS difference between the values given and the values stored (0 for float32)."""
        return (self._err_sumsq / self._n) ** 0.5 if self._n else 0.0

    def write_slab(self, z0: int, slab: np.ndarray) -> None:
        """Write ``slab`` (shape ``(k, h, w)``) at ``data[z0:z0+k]``."""
        self.write_block((z0, 0, 0), slab)

    def write_block(self, start: tuple[int, int, int], block: np.ndarray) -> None:
        """Write ``block`` (shape ``(k, m, n)``) at ``data[z0:z0+k, y0:y0+m, x0:x0+n]``.

        Each call maps only the z-range it touches and drops the map afterwards. Every voxel must be
        written exactly once for the header statistics to be right.
        """
        d, h, w = self.shape
        z0, y0, x0 = (int(s) for s in start)
        block = np.asarray(block, dtype=np.float32)
        k, m, n = block.shape if block.ndim == 3 else (0, 0, 0)
        if block.ndim != 3 or min(z0, y0, x0) < 0 or z0 + k > d or y0 + m > h or x0 + n > w:
            raise ValueError(f"block of shape {block.shape} at {start} does not fit volume {self.shape}")
        stored = block.astype(self.dtype)
        if self.itemsize == 2:
            if np.abs(block[np.isfinite(block)]).max(initial=0.0) > FLOAT16_MAX:
                raise DataError(f"restored values reach {float(np.abs(block).max()):.6g}, beyond float16's range "
                                f"({FLOAT16_MAX:g}); write float32 (--output-dtype float32)", self.path)
            self._err_sumsq += float(np.square(stored.astype(np.float64) - block).sum())
        mm = np.memmap(self.tmp, dtype=self.dtype, mode="r+", offset=HEADER_BYTES + z0 * h * w * self.itemsize,
                       shape=(k, h, w))
        mm[:, y0 : y0 + m, x0 : x0 + n] = stored
        mm.flush()
        del mm
        s64 = stored.astype(np.float64)
        self._n += block.size
        self._sum += float(s64.sum())
        self._sumsq += float((s64 * s64).sum())
        if block.size:
            self._min = min(self._min, float(s64.min()))
            self._max = max(self._max, float(s64.max()))

    def close(self) -> Path:
        """Write header statistics, fsync and rename into place."""
        if self._done:
            return self.path
        if self._n:
            mean = self._sum / self._n
            rms = max(self._sumsq / self._n - mean * mean, 0.0) ** 0.5
            with open(self.tmp, "r+b") as fh:
                hdr = np.frombuffer(bytearray(fh.read(HEADER_BYTES)), dtype=HEADER_DTYPE.newbyteorder("<"))
                hdr = hdr.copy()
                hdr["dmin"], hdr["dmax"], hdr["dmean"], hdr["rms"] = self._min, self._max, mean, rms
                fh.seek(0)
                fh.write(hdr.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
        if self.path.exists() and not self.overwrite:
            self.abort()
            check_output(self.path, overwrite=False)
        os.replace(self.tmp, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        self._done = True
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
