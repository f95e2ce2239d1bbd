"""MRC files <-> arrays + metadata, strict and memory-bounded.

Arrays are ``(d, h, w)`` = ``(z, y, x)`` for volumes and stacks, ``(h, w)`` for single images.
Voxel sizes are in Angstrom, kept in MRC order ``(x, y, z)`` in :class:`VolumeMeta`.

* :func:`read_meta` validates a header (and that the file holds all the data it announces).
* :func:`open_memmap` maps the data read-only; :func:`read_slab` reads a z-range through a
  short-lived map so resident memory stays bounded by the slab, not the file.
* :func:`write_volume` writes a whole array atomically; :class:`VolumeWriter` writes slab by slab
  to a temporary file that is renamed into place only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from ..errors import DataError, InputFileError
from .atomic import atomic_path, check_output, temporary_sibling
from .mrc_header import HEADER_BYTES, axis_permutation, data_dtype, open_header, origin_xyz

SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_LABEL = "cryocare-torch"


@dataclass(frozen=True)
class VolumeMeta:
    """What we carry from an input MRC to its outputs."""

    shape: tuple[int, ...]
    """Array shape: ``(d, h, w)`` (volume or stack) or ``(h, w)`` (single image)."""
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Voxel size in Angstrom, ``(x, y, z)``; ``(0, 0, 0)`` when the header has none."""
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Header origin in Angstrom, ``(x, y, z)``."""
    start: tuple[int, int, int] = (0, 0, 0)
    """nxstart, nystart, nzstart."""
    mode: int = 2
    is_stack: bool = False
    """True for an image stack (ispg 0 with nz > 1), e.g. a tilt series or a movie."""
    labels: tuple[str, ...] = field(default_factory=tuple)
    data_offset: int = HEADER_BYTES
    dtype: str = "<f4"
    axes: tuple[int, int, int] = (0, 1, 2)
    """Transpose from the on-disk ``(sections, rows, columns)`` to ``(z, y, x)`` (``mapc, mapr, maps``)."""
    container: str = "mrc"
    """Where the data live: ``mrc``, ``tiff`` or ``zarr`` (:mod:`cryocare_torch.io.volumes` reads each)."""

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def has_voxel_size(self) -> bool:
        return all(v > 0 for v in self.voxel_size)

    @property
    def pixel_size(self) -> float:
        """Isotropic voxel size in Angstrom (x)."""
        return float(self.voxel_size[0])

    def with_shape(self, shape: tuple[int, ...]) -> VolumeMeta:
        """The same metadata for an array of ``shape`` in standard axis order (as written by us)."""
        return replace(self, shape=tuple(int(s) for s in shape), axes=(0, 1, 2), container="mrc")

    @property
    def disk_shape(self) -> tuple[int, ...]:
        """The array shape as stored: :attr:`shape` before the :attr:`axes` transpose."""
        if self.axes == (0, 1, 2):
            return self.shape
        full = (1, *self.shape) if len(self.shape) == 2 else self.shape
        disk = [0, 0, 0]
        for out_axis, disk_axis in enumerate(self.axes):
            disk[disk_axis] = full[out_axis]
        return tuple(disk[1:]) if len(self.shape) == 2 else tuple(disk)


def _finite_xyz(x: float, y: float, z: float) -> tuple[float, float, float]:
    """A header triple as floats, non-finite values (garbage headers) as 0."""
    fx, fy, fz = (float(v) if np.isfinite(v) else 0.0 for v in (x, y, z))
    return fx, fy, fz


def read_meta(path: str | Path) -> VolumeMeta:
    """Read and validate an MRC header. Raises :class:`InputFileError` with a one-line reason."""
    p = Path(path)
    if not p.exists():
        raise InputFileError("file not found; check the path", p)
    if p.is_dir():
        raise InputFileError("is a folder, expected an MRC file", p)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputFileError(f"cannot read file ({exc.strerror})", p) from None
    if size == 0:
        raise InputFileError("file is empty", p)
    if size < HEADER_BYTES:
        raise InputFileError(f"not an MRC file: {size} bytes is shorter than the 1024-byte header", p)
    h, voxel = open_header(p, size)
    mode = int(h.mode)
    if mode not in SUPPORTED_MODES:
        raise InputFileError(
            f"unsupported MRC mode {mode}; supported modes are 0, 1, 2, 6 and 12 (convert with IMOD newstack -mode 2)",
            p,
        )
    nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
    if min(nx, ny, nz) <= 0:
        raise InputFileError(f"header has non-positive dimensions nx={nx} ny={ny} nz={nz}", p)
    dtype = data_dtype(h, p)
    offset = HEADER_BYTES + int(h.nsymbt)
    need = offset + nx * ny * nz * dtype.itemsize
    if size < need:
        raise InputFileError(
            f"file is truncated: header announces {nx}x{ny}x{nz} mode {mode} ({need} bytes) "
            f"but the file has {size} bytes; re-copy or re-export it",
            p,
        )
    ispg = int(h.ispg)
    is_stack = nz > 1 and ispg == 0
    axes = axis_permutation(h, p)
    zyx = tuple((nz, ny, nx)[a] for a in axes)
    if nz == 1 and axes != (0, 1, 2) and (axes[0] != 0 or zyx[0] != 1):
        raise InputFileError("a single image with its sections along x or y (mapc, mapr, maps) cannot be read; "
                             "rewrite it with IMOD newstack", p)
    shape: tuple[int, ...] = zyx[1:] if nz == 1 else zyx
    labels = tuple(
        bytes(h.label[i]).decode("ascii", "replace").strip() for i in range(min(int(h.nlabl), 10))
    )
    return VolumeMeta(
        shape=shape,
        voxel_size=voxel,
        origin=_finite_xyz(*origin_xyz(h)),
        start=(int(h.nxstart), int(h.nystart), int(h.nzstart)),
        mode=mode,
        is_stack=is_stack,
        labels=labels,
        data_offset=offset,
        dtype=dtype.str,
        axes=axes,
    )


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
