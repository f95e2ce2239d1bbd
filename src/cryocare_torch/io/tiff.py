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
