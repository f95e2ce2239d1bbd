"""The metadata of an MRC file: :class:`VolumeMeta` and :func:`read_meta`, which validates a header (and that
the file holds all the data it announces). Re-exported by :mod:`cryocare_torch.io.mrc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .mrc_header import HEADER_BYTES, axis_permutation, data_dtype, open_header, origin_xyz

SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}


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
