"""Multi-page TIFF stacks (movies and gain references as SerialEM writes them), via tifffile + imagecodecs.

Rows are returned in file order (the first TIFF row is ``array[0]``); no implicit flip is applied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from ..errors import InputFileError
from .atomic import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float16)


def read_tiff_stack(path: str | Path) -> np.ndarray:
    """All pages of a grey-scale TIFF as ``(n_pages, h, w)`` in the stored dtype.

    LZW/Deflate/ZSTD/packed compressions are decoded by imagecodecs. Raises InputFileError for a
    missing, non-TIFF, corrupt, colour or ragged (pages of different sizes) file.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError("TIFF file not found; check the path", p)
    if p.is_dir():
        raise InputFileError("is a folder, expected a TIFF file", p)
    try:
        with tifffile.TiffFile(p) as tif:
            pages = tif.pages
            if len(pages) == 0:
                raise InputFileError("TIFF file has no readable images (empty or corrupt); re-copy it", p)
            first = pages.first
            shape, dtype = tuple(first.shape), first.dtype
            if len(shape) != 2:
                raise InputFileError(
                    f"TIFF pages have shape {shape}; only single-channel (grey-scale) images are supported", p
                )
            out = np.empty((len(pages), *shape), dtype=dtype)
            for i, page in enumerate(pages):
                page_shape = tuple(page.shape)
                if page_shape != shape:
                    raise InputFileError(f"TIFF page {i} has shape {page_shape}, page 0 has {shape}; "
                                         f"all frames must have the same size", p)
                out[i] = page.asarray()
    except InputFileError:
        raise
    except PermissionError:
        raise InputFileError("permission denied; make the file readable", p) from None
    except MemoryError:
        raise InputFileError("TIFF stack does not fit in memory", p) from None
    except Exception as exc:  # tifffile/imagecodecs raise many types for corrupt or exotic files
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read TIFF ({reason}); check the file is complete or convert it "
                             f"with IMOD tif2mrc", p) from None
    return out


def write_tiff_movie(
    path: str | Path, frames: np.ndarray, compression: str | None = "lzw", *, overwrite: bool = False
) -> Path:
    """Write ``(n, h, w)`` frames (or one ``(h, w)`` image) as a multi-page TIFF, one page per frame, atomically.

    ``compression``: ``"lzw"`` (as SerialEM writes), ``"zlib"``, ``"zstd"`` or ``None``.
    """
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"frames must have shape (n, h, w), got {arr.shape}")
    if arr.dtype not in _DTYPES:
        raise ValueError(f"unsupported TIFF dtype {arr.dtype}; use one of {[np.dtype(d).name for d in _DTYPES]}")
    codec = None if compression in (None, "none") else compression
    with atomic_path(path, overwrite=overwrite, nbytes=arr.nbytes + 4096) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=arr.nbytes > 2**31) as tw:
            for frame in arr:
                tw.write(np.ascontiguousarray(frame), compression=codec, photometric="minisblack",
                         metadata=None, contiguous=False)
    return Path(path)


# ---- TIFF tomograms (z-stacks) as ImageJ, napari, cylindra and tifffile write them ---------------------------
# Voxel size: ImageJ keeps the unit and the z spacing in the image description ("unit=micron", "spacing=0.5") and
# the x/y pixel size as XResolution/YResolution = pixels per unit with ResolutionUnit NONE (ImageJ's TiffEncoder);
# other writers use ResolutionUnit INCH or CENTIMETER (TIFF 6.0, tags 282, 283, 296).
_UNIT_ANGSTROM = {"a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0, "angstroms": 1.0, "nm": 10.0,
                  "nanometer": 10.0, "nanometers": 10.0, "micron": 1e4, "microns": 1e4, "um": 1e4, "µm": 1e4,
                  "\u03bcm": 1e4, "micrometer": 1e4, "mm": 1e7, "cm": 1e8, "m": 1e10}
_RESUNIT_ANGSTROM = {2: 2.54e8, 3: 1e8}  # inch, centimetre


def _pixels_per_unit(page: tifffile.TiffPage, code: int) -> float | None:
    tag = page.tags.get(code)
    if tag is None:
        return None
    num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
    return float(num) / float(den) if num and den else None


def tiff_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float]:
    """``(x, y, z)`` in Angstrom from the resolution tags and ImageJ's unit/spacing; zeros when unknown."""
    page = tif.pages.first
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).encode().decode("unicode_escape", "ignore").strip().lower()
    if unit in _UNIT_ANGSTROM:
        factor = _UNIT_ANGSTROM[unit]
    else:
        resunit = page.tags.get(296)
        factor = _RESUNIT_ANGSTROM.get(int(resunit.value) if resunit is not None else 2, 0.0)
    xres, yres = _pixels_per_unit(page, 282), _pixels_per_unit(page, 283)
    if not factor or not xres or (xres == 1.0 and unit not in _UNIT_ANGSTROM):
        return (0.0, 0.0, 0.0)
    x = factor / xres
    y = factor / yres if yres else x
    z = float(ij["spacing"]) * factor if ij.get("spacing") else x
    return (x, y, z)


def _tiff_shape(series: tifffile.TiffPageSeries, p: Path) -> tuple[int, ...]:
    shape = tuple(int(n) for n, a in zip(series.shape, series.axes, strict=True) if n > 1 or a in "YX")
    axes = "".join(a for n, a in zip(series.shape, series.axes, strict=True) if n > 1 or a in "YX")
    if "S" in axes or len(shape) not in (2, 3):
        raise InputFileError(f"TIFF holds {series.axes} data of shape {series.shape}; expected one grey-scale "
                             "z-stack (no colour, channels or time points)", p)
    return shape


def open_tiff_volume(path: str | Path) -> tuple[np.ndarray, tuple[int, ...], tuple[float, float, float]]:
    """The stack as a read-only memmap (uncompressed files) or in memory, its shape and voxel size (Angstrom)."""
    p = Path(path)
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, voxel = _tiff_shape(series, p), tiff_voxel_size(tif)
            try:
                arr = tifffile.memmap(p, mode="r").reshape(shape)
            except ValueError:  # compressed or not contiguous: decode into memory
                arr = series.asarray().reshape(shape)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt/exotic files become one line
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read TIFF ({reason})", p) from None
    return arr, shape, voxel


def read_tiff_slab(path: str | Path, shape: tuple[int, ...], z0: int, z1: int) -> np.ndarray:
    """Sections ``z0:z1`` of a z-stack as float32, decoding only those pages (a 2D image: the image)."""
    p = Path(path)
    try:
        with tifffile.TiffFile(p) as tif:
            if len(shape) == 2:
                return tif.series[0].asarray().reshape(shape).astype(np.float32)[None]
            out = tif.asarray(key=range(int(z0), int(z1)), series=0)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputFileError(f"cannot read TIFF sections {z0}-{z1 - 1} ({reason})", p) from None
    return np.asarray(out, dtype=np.float32).reshape((z1 - z0, *shape[1:]))
