"""Movies (MRC stack, TIFF, EER) and gain references, with SerialEM/MotionCor2 gain orientation.

Gain orientation (:func:`orient_gain`): first rotate by ``rotation_k`` quarter turns
counter-clockwise, then flip (``"y"``: upside down, reversing rows; ``"x"``: left-right, reversing
columns). This is the order and numbering of MotionCor2 ``-RotGain``/``-FlipGain`` and RELION
``--gain_rot``/``--gain_flip`` (``-FlipGain 1`` = ``"y"``, ``2`` = ``"x"``). Counter-clockwise is as
seen with the y axis pointing up (row 0 at the bottom, as IMOD/3dmod display MRC data), which is
clockwise in a top-down display; RELION documents ``--gain_rot`` that way. In array terms the
rotation is ``np.rot90(gain, -rotation_k)``.

SerialEM/IMOD number a rotation+flip as one operation 0-7 (IMOD ``rotateflip.c``: 0-3 counter-clockwise
quarter turns, plus 4 for a flip around the Y axis done *before* the rotation);
:func:`serialem_orientation` converts it to ``(flip, rotation_k)`` in the order above.
Whether the gain or its inverse operation is needed depends on how frames were saved, so check the
corrected sum for a residual gain pattern.

Gain references hold multiplicative normalisation factors (SerialEM, MotionCor2): corrected = frames * gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError, InputFileError
from .mdoc import read_mdoc
from .mrc import open_memmap, read_meta
from .tiff import TIFF_SUFFIXES, read_tiff_stack

Flip = Literal["none", "x", "y"]
MovieFormat = Literal["mrc", "tiff", "eer"]
MRC_SUFFIXES = (".mrc", ".mrcs", ".st", ".ali", ".rec", ".map")


@dataclass(frozen=True)
class MovieMeta:
    """What we know about a movie besides its pixels."""

    path: Path
    format: MovieFormat
    n_frames: int
    shape: tuple[int, int]
    """Frame shape ``(h, w)``."""
    dtype: str
    """Stored dtype of the returned frames."""
    pixel_size: float | None = None
    """Angstrom per pixel: MRC header, else the SerialEM ``<movie>.mdoc`` beside it, else None."""
    dose_per_frame: float | None = None
    """e/A^2 per frame from the ``.mdoc`` beside the movie, if any."""


def _sidecar(path: Path) -> tuple[float | None, float | None]:
    mdoc_path = path.with_name(path.name + ".mdoc")
    if not mdoc_path.is_file():
        return None, None
    m = read_mdoc(mdoc_path)
    frames = int(m.num_sub_frames[0]) if m.n_tilts else 0
    dose = float(m.dose[0]) / frames if frames > 0 and m.dose_source != "unknown" else None
    return m.pixel_size, dose


def read_movie(path: str | Path, *, use_mdoc: bool = True) -> tuple[np.ndarray, MovieMeta]:
    """Frames ``(n_frames, h, w)`` in their stored dtype, and :class:`MovieMeta`.

    MRC stacks (via :mod:`cryocare_torch.io.mrc`), TIFF (LZW etc.), and EER when the optional
    ``eerfile`` package is installed. ``use_mdoc`` reads pixel size and dose from ``<movie>.mdoc``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    pixel: float | None = None
    if suffix in MRC_SUFFIXES:
        mm, meta = open_memmap(p, read_meta(p))
        frames = np.array(mm, copy=True)
        del mm
        fmt: MovieFormat = "mrc"
        pixel = meta.pixel_size if meta.has_voxel_size else None
    elif suffix in TIFF_SUFFIXES:
        frames, fmt = read_tiff_stack(p), "tiff"
    elif suffix == ".eer":
        frames, fmt = _read_eer(p), "eer"
    elif not p.exists():
        raise InputFileError("movie not found; check the path", p)
    else:
        raise InputFileError(f"unsupported movie format {p.suffix!r}; use .mrc, .tif/.tiff or .eer", p)
    if frames.ndim == 2:
        frames = frames[None]
    side_pixel, dose = _sidecar(p) if use_mdoc else (None, None)
    meta_out = MovieMeta(path=p, format=fmt, n_frames=int(frames.shape[0]), shape=tuple(frames.shape[1:]),
                         dtype=frames.dtype.str, pixel_size=pixel or side_pixel, dose_per_frame=dose)
    return frames, meta_out


def _read_eer(path: Path) -> np.ndarray:
    try:
        import eerfile
    except ImportError:
        raise InputFileError(
            "EER movies need the optional 'eerfile' package: pip install 'cryocare-torch[eer]' "
            "(or convert to TIFF/MRC first, e.g. with RELION relion_convert_to_tiff)", path
        ) from None
    if not path.exists():
        raise InputFileError("movie not found; check the path", path)
    try:
        frames = np.asarray(eerfile.read(path))
    except Exception as exc:
        raise InputFileError(f"cannot read EER movie ({str(exc)[:160] or type(exc).__name__})", path) from None
    return frames


def read_gain(path: str | Path) -> np.ndarray:
    """A gain reference (MRC or TIFF, one image) as float32 ``(h, w)``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".dm4", ".dm3"):
        raise InputFileError("DigitalMicrograph gain references are not read directly; convert with IMOD "
                             "'dm2mrc gain.dm4 gain.mrc'", p)
    if suffix in TIFF_SUFFIXES:
        data = read_tiff_stack(p)
    elif suffix in MRC_SUFFIXES:
        mm, _ = open_memmap(p)
        data = np.array(mm, dtype=np.float32)
        del mm
    elif not p.exists():
        raise InputFileError("gain reference not found; check the path", p)
    else:
        raise InputFileError(f"unsupported gain reference format {p.suffix!r}; use .mrc or .tif", p)
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise InputFileError(f"gain reference has {data.shape[0]} images; expected one", p)
        data = data[0]
    gain = data.astype(np.float32)
    if not np.all(np.isfinite(gain)):
        raise DataError("gain reference contains NaN or infinite values; regenerate it", p)
    return gain


def serialem_orientation(operation: int) -> tuple[Flip, int]:
    """SerialEM/IMOD rotation-and-flip operation 0-7 -> ``(flip, rotation_k)`` for :func:`orient_gain`."""
    if not 0 <= int(operation) <= 7:
        raise ValueError(f"rotation/flip operation must be 0-7, got {operation}")
    k = int(operation) % 4
    if operation < 4:
        return "none", k
    return "x", (-k) % 4  # flip-then-rotate(k) == rotate(-k)-then-flip for a mirror about Y


def orient_gain(gain: np.ndarray, *, flip: Flip = "none", rotation_k: int = 0) -> np.ndarray:
    """Rotate ``gain`` by ``rotation_k`` counter-clockwise quarter turns (y up), then flip (see module docs)."""
    if flip not in ("none", "x", "y"):
        raise ValueError(f"flip must be 'none', 'x' or 'y', got {flip!r}")
    g = np.rot90(np.asarray(gain), k=-(int(rotation_k) % 4))
    if flip == "x":
        g = g[:, ::-1]
    elif flip == "y":
        g = g[::-1, :]
    return np.ascontiguousarray(g)


def apply_gain(frames: np.ndarray, gain: np.ndarray, *, flip: Flip = "none", rotation_k: int = 0) -> np.ndarray:
    """Gain-correct frames ``(..., h, w)``: ``frames * orient_gain(gain)`` as float32."""
    g = orient_gain(gain, flip=flip, rotation_k=rotation_k).astype(np.float32)
    if g.shape != tuple(frames.shape[-2:]):
        hint = " (a 90-degree rotation would match: try rotation_k=1 or 3)" if g.shape[::-1] == tuple(
            frames.shape[-2:]) else ""
        raise DataError(f"gain reference shape {g.shape} (after orientation) does not match frame shape "
                        f"{tuple(frames.shape[-2:])}{hint}")
    return np.asarray(frames, dtype=np.float32) * g
