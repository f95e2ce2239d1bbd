"""IMOD side files: ``.tlt``/``.rawtlt``/``.xtilt`` angles, ``.xf`` transforms, ``tilt.com``/``newst.com``.

Formats (IMOD man pages for ``tilt``, ``newstack``, ``xftoxg``):

* ``.tlt``, ``.rawtlt``, ``.xtilt``: one angle in degrees per line, in stack (z) order.
* ``.xf``: one line per view, ``A11 A12 A21 A22 DX DY``. A point ``(X, Y)`` of the raw view, measured
  from the image centre, goes to ``X' = A11*X + A12*Y + DX``, ``Y' = A21*X + A22*Y + DY`` in the
  aligned view. :func:`read_xf` returns it as ``(n, 2, 3)`` arrays ``[[A11, A12, DX], [A21, A22, DY]]``,
  i.e. ``xf[i] @ (X, Y, 1)``.
* ``.com``: a ``$program -StandardInput`` line, then ``Option value`` lines (``#`` comments, other
  ``$`` shell lines). :func:`read_com` returns ``{option: value}`` with numbers parsed.

Every malformed input raises :class:`~cryocare_torch.errors.InputFileError` naming the file and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .atomic import atomic_write_text

ComValue = str | int | float | bool | tuple[int | float, ...]

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def read_text_lines(path: str | Path, what: str = "text file") -> list[str]:
    """The lines of a small text side file; raises InputFileError for missing, binary or unreadable files."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} not found; check the path", p)
    if p.is_dir():
        raise InputFileError(f"is a folder, expected a {what}", p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {what} ({exc.strerror or exc})", p) from None
    if b"\x00" in data:
        raise InputFileError(f"is a binary file, expected a {what}; check that you passed the right file", p)
    try:
        text = data.decode("utf-8-sig")  # tolerate a byte-order mark from Windows editors
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


def _float(token: str, path: Path, lineno: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise InputFileError(f"line {lineno}: {what} {token[:40]!r} is not a number; fix or remove the line",
                             path) from None
    if not math.isfinite(value):
        raise InputFileError(f"line {lineno}: {what} is {token[:40]!r}; give a finite number", path)
    return value


def _read_angles(path: str | Path, what: str, limit: float) -> np.ndarray:
    p = Path(path)
    out: list[float] = []
    for lineno, raw in enumerate(read_text_lines(p, what), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) != 1:
            raise InputFileError(
                f"line {lineno}: expected one angle per line, found {len(tokens)} values ({line[:60]!r})", p
            )
        angle = _float(tokens[0], p, lineno, "angle")
        if abs(angle) > limit:
            raise InputFileError(f"line {lineno}: angle {angle:g} is outside [-{limit:g}, {limit:g}] degrees", p)
        out.append(angle)
    if not out:
        raise InputFileError(f"{what} contains no angles; it should have one angle per line", p)
    return np.asarray(out, dtype=np.float64)


def read_tlt(path: str | Path) -> np.ndarray:
    """Tilt angles in degrees from a ``.tlt`` or ``.rawtlt`` file, in stack order, shape ``(n,)``."""
    return _read_angles(path, "tilt-angle file (.tlt)", 90.0)


def read_xtilt(path: str | Path) -> np.ndarray:
    """Per-view X-axis tilt angles in degrees from an ``.xtilt`` file, shape ``(n,)``."""
    return _read_angles(path, "x-axis tilt file (.xtilt)", 90.0)


def write_tlt(path: str | Path, angles: Sequence[float] | np.ndarray, *, overwrite: bool = False) -> Path:
    """Write one angle per line (4 decimals, as IMOD reads free-format numbers), atomically."""
    values = np.asarray(angles, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ValueError("tilt angles must be finite")
    text = "".join(f"{v:10.4f}\n" for v in values)
    return atomic_write_text(path, text, overwrite=overwrite)


def _split_xf_line(line: str) -> list[str]:
    tokens = line.split()
    if len(tokens) != 6 and len(line.rstrip()) == 72:  # Fortran fixed width (6 x 12) with merged fields
        tokens = [line[i : i + 12].strip() for i in range(0, 72, 12)]
    return tokens


def read_xf(path: str | Path) -> np.ndarray:
    """Linear transforms from an IMOD ``.xf`` file as ``(n, 2, 3)`` float64 ``[[A11, A12, DX], [A21, A22, DY]]``."""
    p = Path(path)
    rows: list[list[float]] = []
    for lineno, raw in enumerate(read_text_lines(p, "transform file (.xf)"), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        tokens = _split_xf_line(raw)
        if len(tokens) != 6:
            raise InputFileError(
                f"line {lineno}: expected 6 numbers 'A11 A12 A21 A22 DX DY', found {len(tokens)} "
                f"({raw.strip()[:60]!r})",
                p,
            )
        a11, a12, a21, a22, dx, dy = (_float(t, p, lineno, "value") for t in tokens)
        if abs(a11 * a22 - a12 * a21) < 1e-12:
            raise InputFileError(f"line {lineno}: the 2x2 matrix is singular (determinant 0)", p)
        rows.append([a11, a12, dx, a21, a22, dy])
    if not rows:
        raise InputFileError("transform file (.xf) contains no transforms", p)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2, 3)


def write_xf(path: str | Path, xf: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``(n, 2, 3)`` transforms as IMOD ``.xf`` lines (``%12.7f`` matrix, ``%12.4f`` shifts), atomically."""
    arr = np.asarray(xf, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (2, 3):
        raise ValueError(f"xf must have shape (n, 2, 3), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("xf values must be finite")
    lines = []
    for m in arr:
        lines.append(
            f" {m[0, 0]:11.7f} {m[0, 1]:11.7f} {m[1, 0]:11.7f} {m[1, 1]:11.7f} {m[0, 2]:11.4f} {m[1, 2]:11.4f}\n"
        )
    return atomic_write_text(path, "".join(lines), overwrite=overwrite)


def check_count(values: Sequence[object] | np.ndarray, n_views: int, path: str | Path) -> None:
    """Raise InputFileError unless ``path`` provided exactly one entry per view of the tilt series."""
    n = len(values)
    if n != int(n_views):
        raise InputFileError(
            f"has {n} entries but the tilt series has {int(n_views)} views; use the side file written for "
            f"this stack (after any views were excluded or removed)",
            path,
        )


def parse_exclude_list(text: str) -> list[int]:
    """IMOD list syntax ``"1-3,7"`` -> ``[1, 2, 3, 7]`` (numbers as written: IMOD view numbers are 1-based)."""
    out: list[int] = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if m is None:
            raise ValueError(f"not an IMOD list entry: {part!r} (expected e.g. 1-3,7)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def _com_value(text: str) -> ComValue:
    if not text:
        return True
    parts = [t for t in re.split(r"[,\s]+", text) if t]
    if parts and all(_NUMBER.match(t) for t in parts):
        nums = tuple(int(t) if re.fullmatch(r"[+-]?\d+", t) else float(t) for t in parts)
        return nums[0] if len(nums) == 1 else nums
    return text


def read_com(path: str | Path) -> dict[str, ComValue]:
    """Options of an IMOD ``.com`` file: ``{"THICKNESS": 2000, "SHIFT": (0.0, 0.0), "PERPENDICULAR": True, ...}``.

    Keys are kept as written (IMOD option names are case-sensitive); a value of several numbers
    (space- or comma-separated) becomes a tuple, a flag without value becomes ``True``, file names
    stay strings. The program name is stored under ``"$program"``.
    """
    p = Path(path)
    params: dict[str, ComValue] = {}
    for lineno, raw in enumerate(read_text_lines(p, "IMOD command file (.com)"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("$"):
            m = re.match(r"^\$\s*([A-Za-z0-9_]+)\s+-StandardInput", line)
            if m and "$program" not in params:
                params["$program"] = m.group(1)
            continue
        key, _, value = line.replace("\t", " ").partition(" ")
        value = value.strip()
        if not _KEY.match(key):
            raise InputFileError(
                f"line {lineno}: {line[:60]!r} is not an 'Option value' line; fix or comment it out with #", p
            )
        params[key] = _com_value(value)
    return params


def _read_program_com(path: str | Path, program: str) -> dict[str, ComValue]:
    params = read_com(path)
    found = params.get("$program")
    if found is not None and found != program:
        raise InputFileError(f"is a command file for {found!r}, expected {program!r}; pass {program}.com", path)
    return params


def read_tilt_com(path: str | Path) -> dict[str, ComValue]:
    """``tilt.com`` options (THICKNESS, XAXISTILT, IMAGEBINNED, OFFSET, SHIFT, RADIAL, FULLIMAGE, ...)."""
    return _read_program_com(path, "tilt")


def read_newst_com(path: str | Path) -> dict[str, ComValue]:
    """``newst.com`` options (InputFile, TransformFile, BinByFactor, SizeToOutputInXandY, OffsetsInXandY, ...)."""
    return _read_program_com(path, "newstack")
