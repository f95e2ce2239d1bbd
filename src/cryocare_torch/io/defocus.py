"""Per-view defocus from the files that SerialEM and CTF programs write; underfocus positive, micrometres.

* **SerialEM ``.mdoc``** (:func:`read_mdoc_defocus`): ``Defocus`` of every ``[ZValue]`` section is the
  microscope's defocus readout in um, *negative for underfocus* (SerialEM's convention; its autofocus help,
  ``about_autofocus.htm``: "several microns for cryosamples (with negative numbers for underfocus)").
  The readout is relative to wherever the scope's defocus display was last reset (eucentric focus when set
  up that way): a series whose readouts are not all negative was not zeroed, and ``TargetDefocus`` (the
  autofocus target, same sign convention) is used instead, with one warning line. ``Voltage`` when given.
  The real EMPIAR-10164 TS_01 ``.mdoc`` is such a case: ``Defocus`` +1.2..+2.8, ``TargetDefocus`` -4.
* **CTFFIND4 diagnostic ``.txt``** and **AreTomo2/3 ``_CTF.txt``** (:func:`read_ctffind`): ``#`` comment
  lines, then one row per image: number (1-based), defocus 1 and defocus 2 in Angstrom (underfocus
  positive), astigmatism azimuth (deg), phase shift (rad), score, fit resolution (A) -- the ``# Columns``
  line CTFFIND writes and AreTomo3 copies (``CSaveCtfResults.cpp``: ``i+1, DfMax, DfMin, Azimuth,
  ExtPhase, Score, CtfRes[, dfHand]``). CTFFIND's ``# Pixel size: ... ; acceleration voltage: ... keV ;
  spherical aberration: ... mm ; amplitude contrast: ...`` header line gives the optics.
* **IMOD ``.defocus``** (:func:`read_imod_defocus`; ctfplotter/ctfphaseflip man pages): lines
  ``startView endView startAngle endAngle defocus_nm`` (views 1-based, underfocus positive, nm). Version 2
  files add the version number as a 6th entry of the first line; version 3 files start with a line
  ``flags 0 0. 0. 0 3`` whose flags (1 astigmatism, 4 phase shift, 32 cut-on frequency) add the columns
  ``defocus2_nm astigAngle``, ``phase``, ``cuton`` after ``defocus_nm``. As ``ctfphaseflip`` does
  (``ctfphaseflip.cpp``), a value belongs to the middle view of its range, ``(start + end) / 2``, views between
  those are interpolated linearly in view number and views outside them take the nearest value.

Images in CTFFIND, AreTomo and IMOD files are numbered in the stack they were measured on: the angle-sorted
series (before or after exclusion), as for ``.xf``/``.tlt``. Only the mean of defocus 1 and 2 is used.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputFileError
from .imod import read_text_lines
from .mdoc import _parse, _tilt_sections

log = logging.getLogger(__name__)
Order = Literal["zvalue", "angle"]
_HEADER = re.compile(r"acceleration voltage:\s*([-\d.eE+]+)\s*keV.*spherical aberration:\s*([-\d.eE+]+)\s*mm.*"
                     r"amplitude contrast:\s*([-\d.eE+]+)", re.IGNORECASE)


@dataclass(frozen=True)
class DefocusTable:
    """Underfocus (um, positive) of the images of one tilt series, in the file's order, and its optics."""

    path: Path
    defocus_um: np.ndarray
    order: Order
    """``zvalue``: indexed by ZValue (``.mdoc``); ``angle``: the angle-sorted series (CTF programs)."""
    source: str
    voltage_kv: float | None = None
    cs_mm: float | None = None
    amplitude_contrast: float | None = None


def _floats(line: str, path: Path, lineno: int) -> list[float]:
    try:
        return [float(t) for t in line.split()]
    except ValueError:
        raise InputFileError(f"line {lineno}: expected numbers, found {line.strip()[:60]!r}", path) from None


def _check(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    if values.size == 0:
        raise InputFileError(f"has no {what} rows", path)
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 50):
        bad = values[~(np.isfinite(values) & (values > 0) & (values <= 50))][0]
        raise InputFileError(f"has an underfocus of {bad:.4g} um ({what}); expected 0-50 um, underfocus "
                             "positive", path)
    return values


def read_ctffind(path: str | Path) -> DefocusTable:
    """CTFFIND4 diagnostic ``.txt`` or AreTomo ``_CTF.txt``: mean of defocus 1 and 2, in row-number order."""
    p = Path(path)
    rows: dict[int, float] = {}
    optics: tuple[float, ...] = ()
    for lineno, line in enumerate(read_text_lines(p, "CTFFIND/AreTomo CTF file"), start=1):
        if line.lstrip().startswith("#"):
            m = _HEADER.search(line)
            optics = tuple(float(g) for g in m.groups()) if m else optics
            continue
        if not line.strip():
            continue
        v = _floats(line, p, lineno)
        if len(v) < 3:
            raise InputFileError(f"line {lineno}: expected 'number defocus1 defocus2 ...' (A), found {len(v)} "
                                 "columns", p)
        number = int(round(v[0]))
        if number in rows:
            raise InputFileError(f"line {lineno}: image {number} appears twice", p)
        rows[number] = (v[1] + v[2]) / 2.0 * 1e-4
    if rows and sorted(rows) != list(range(min(rows), min(rows) + len(rows))):
        raise InputFileError(f"image numbers {min(rows)}..{max(rows)} have gaps ({len(rows)} rows)", p)
    values = _check(np.array([rows[k] for k in sorted(rows)]), p, "CTF")
    kv, cs, amp = optics if optics else (None, None, None)
    return DefocusTable(p, values, "angle", "CTFFIND/AreTomo", kv, cs, amp)


def read_imod_defocus(path: str | Path) -> DefocusTable:
    """IMOD ``.defocus`` (ctfplotter): one underfocus per view of the stack it was measured on."""
    p = Path(path)
    lines = [(i, ln) for i, ln in enumerate(read_text_lines(p, "IMOD defocus file"), start=1) if ln.strip()]
    if not lines:
        raise InputFileError("is empty; save the defocus values in ctfplotter first", p)
    first = _floats(lines[0][1], p, lines[0][0])
    flags, body = 0, lines
    if len(first) == 6 and int(first[5]) >= 3:  # "flags 0 0. 0. 0 3"
        flags, body = int(first[0]), lines[1:]
    ncol = 5 + (2 if flags & 1 else 0) + (1 if flags & 4 else 0) + (1 if flags & 32 else 0)
    centers, values = [], []
    for k, (lineno, line) in enumerate(body):
        v = _floats(line, p, lineno)
        want = (ncol, ncol + 1) if k == 0 and flags == 0 else (ncol,)  # version 2: the version number as 6th
        if len(v) not in want:
            raise InputFileError(f"line {lineno}: {len(v)} columns, expected {ncol} (flags {flags})", p)
        start, end = int(v[0]), int(v[1])
        if start < 1 or end < start:
            raise InputFileError(f"line {lineno}: view range {start}-{end} (views are numbered from 1)", p)
        centers.append((start - 1 + end - 1) // 2)
        values.append((v[4] + v[5]) / 2 * 1e-3 if flags & 1 else v[4] * 1e-3)
    order = np.argsort(centers, kind="stable")
    c, d = np.asarray(centers)[order], _check(np.asarray(values)[order], p, "defocus")
    n = max(int(c.max()) + 1, int(max(int(_floats(ln, p, i)[1]) for i, ln in body)))
    return DefocusTable(p, np.interp(np.arange(n), c, d), "angle", "IMOD .defocus")


def read_mdoc_defocus(path: str | Path) -> DefocusTable:
    """``Defocus`` (or ``TargetDefocus``) of every ``[ZValue]`` section of a SerialEM ``.mdoc``, as underfocus."""
    p = Path(path)
    sections, get = _tilt_sections(_parse(read_text_lines(p, "SerialEM metadata file (.mdoc)"), p), p)
    readout = [get(s, "Defocus") for s in sections]
    target = [get(s, "TargetDefocus") for s in sections]
    voltage = next((float(v) for s in sections if (v := get(s, "Voltage")) is not None), None)
    n = int(max(int(s.ZValue) for s in sections)) + 1
    values = np.full(n, np.nan)
    if all(r is not None for r in readout) and all(float(r) < 0 for r in readout):
        chosen, source = readout, "mdoc Defocus"
    elif all(t is not None for t in target) and all(float(t) < 0 for t in target):
        chosen, source = target, "mdoc TargetDefocus"
        if any(r is not None for r in readout):
            log.warning("warning: %s: the Defocus readouts are not all negative (SerialEM: negative = underfocus; "
                        "the scope's defocus was not zeroed at eucentric focus); using TargetDefocus %.2f um "
                        "instead; give --defocus-file (CTFFIND/IMOD/AreTomo) for measured values",
                        p.name, float(target[0]))
    else:
        raise InputFileError("has no usable defocus: Defocus/TargetDefocus missing or not negative (SerialEM "
                             "writes underfocus as negative um); give --defocus UM or --defocus-file", p)
    for s, v in zip(sections, chosen, strict=True):
        values[int(s.ZValue)] = -float(v)
    return DefocusTable(p, values, "zvalue", source, voltage)


def read_defocus_file(path: str | Path) -> DefocusTable:
    """A ``.mdoc``, an IMOD ``.defocus`` or a CTFFIND/AreTomo text file, told apart by name and content."""
    p = Path(path)
    if p.name.lower().endswith(".mdoc"):
        return read_mdoc_defocus(p)
    if p.suffix.lower() == ".defocus":
        return read_imod_defocus(p)
    return read_ctffind(p)
