"""AreTomo ``.aln`` alignment files (AreTomo 1.2, 1.3+, AreTomo2/AreTomo3) and their IMOD ``.xf`` equivalent.

Layout (read from AreTomo3's ``CSaveAlignFile``/``CLoadAlignFile`` sources and real files):

* ``#`` header lines: ``# AreTomo Alignment / Priims bprmMn``; AreTomo 1.2 writes ``# <n_views> <n_patches>``;
  1.3+ writes ``# RawSize = nx ny nz`` and ``# NumPatches = k``; AreTomo2/3 add
  ``# DarkFrame = frame section tilt`` (one per removed view), ``# AlphaOffset``, ``# BetaOffset``,
  ``# Thickness``.
* ``# SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT`` then one line per kept view. SEC is 0-based
  in AreTomo 1.x and 1-based in AreTomo3 (AreTomo3 itself converts when any SEC or dark section is
  0, and so do we: :attr:`AretomoAlignment.section` is always 0-based). ROT is the tilt-axis angle
  in degrees, TX/TY the shift in pixels of the input stack, about the image centre.
* DarkFrame: ``frame`` is the 0-based index in the tilt-sorted raw series, ``section`` the 1-based
  section of the raw stack (older files wrote 0 there; then section = frame + 1, as AreTomo3 does).
* ``# Local Alignment`` then ``NumPatches * n_views`` patch lines: not used here (cryo-CARE works on
  reconstructed tomograms); their count is kept in :attr:`AretomoAlignment.n_local_lines`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InputFileError
from .imod import read_text_lines

AlnFormat = Literal["1.2", "1.3", "3"]
_COLUMNS = ("SEC", "ROT", "GMAG", "TX", "TY", "SMEAN", "SFIT", "SCALE", "BASE", "TILT")


@dataclass(frozen=True)
class DarkFrame:
    """A view AreTomo removed before alignment (too dark or excluded)."""

    frame: int
    """0-based position in the raw series sorted by tilt angle."""
    section: int
    """1-based section number in the raw input stack (IMOD EXCLUDELIST numbering)."""
    tilt: float


@dataclass(frozen=True)
class AretomoAlignment:
    """Global alignment of the kept views, one array entry per view, in file order."""

    path: Path
    format: AlnFormat
    """"1.2" (``# n 0`` header), "1.3" (RawSize/NumPatches), "3" (AreTomo2/3: offsets, thickness)."""
    sec: np.ndarray
    """SEC column as written."""
    section: np.ndarray
    """0-based section index derived from SEC (see module docs)."""
    rot: np.ndarray
    """Tilt-axis angle in degrees."""
    gmag: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    smean: np.ndarray
    sfit: np.ndarray
    scale: np.ndarray
    base: np.ndarray
    tilt: np.ndarray
    raw_size: tuple[int, int, int] | None = None
    n_patches: int = 0
    dark_frames: tuple[DarkFrame, ...] = ()
    alpha_offset: float = 0.0
    beta_offset: float = 0.0
    thickness: int | None = None
    n_local_lines: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_views(self) -> int:
        return int(self.tilt.shape[0])

    @property
    def excluded_sections(self) -> list[int]:
        """0-based raw-stack sections of the dark (removed) views, sorted."""
        return sorted(d.section - 1 for d in self.dark_frames)


def _header_value(line: str, path: Path, lineno: int) -> str:
    return line.split("=", 1)[1].strip() if "=" in line else _bad(path, lineno, line, "expected 'Name = value'")


def _bad(path: Path, lineno: int, line: str, why: str) -> str:
    raise InputFileError(f"line {lineno}: {why} ({line.strip()[:60]!r}); the .aln file is corrupt", path)


def _ints(text: str, n: int, path: Path, lineno: int, line: str) -> list[int]:
    parts = text.split()
    if len(parts) != n or not all(re.fullmatch(r"[+-]?\d+", t) for t in parts):
        _bad(path, lineno, line, f"expected {n} integer(s)")
    return [int(t) for t in parts]


def _number(token: str, path: Path, lineno: int, line: str) -> float:
    try:
        v = float(token)
    except ValueError:
        _bad(path, lineno, line, f"{token[:20]!r} is not a number")
    if not np.isfinite(v):
        _bad(path, lineno, line, "value is not finite")
    return v


@dataclass
class _AlnParse:
    """What the lines of one ``.aln`` said so far (the header values, the global rows, the local count)."""

    path: Path
    fmt: AlnFormat = "1.2"
    raw_size: tuple[int, int, int] | None = None
    n_patches: int = 0
    thickness: int | None = None
    alpha: float = 0.0
    beta: float = 0.0
    darks: list[tuple[int, int, float]] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    n_local: int = 0
    n_views_12: int | None = None
    section: str = "header"

    def comment(self, body: str, lineno: int, line: str) -> None:
        p = self.path
        if body.startswith("SEC"):
            if body.split() != list(_COLUMNS):
                _bad(p, lineno, line, "unexpected column header")
            self.section = "global"
        elif body.startswith("Local Alignment"):
            self.section = "local"
        elif body.startswith("RawSize"):
            nx, ny, nz = _ints(_header_value(body, p, lineno), 3, p, lineno, line)
            self.raw_size = (nx, ny, nz)
            self.fmt = "1.3" if self.fmt == "1.2" else self.fmt
        elif body.startswith("NumPatches"):
            self.n_patches = _ints(_header_value(body, p, lineno), 1, p, lineno, line)[0]
        elif body.startswith("DarkFrame"):
            parts = _header_value(body, p, lineno).split()
            if len(parts) != 3:
                _bad(p, lineno, line, "expected 'DarkFrame = frame section tilt'")
            frame, sec = _ints(" ".join(parts[:2]), 2, p, lineno, line)
            self.darks.append((frame, sec, _number(parts[2], p, lineno, line)))
        elif body.startswith(("AlphaOffset", "BetaOffset", "Thickness")):
            self.fmt = "3"
            value = _number(_header_value(body, p, lineno), p, lineno, line)
            if body.startswith("AlphaOffset"):
                self.alpha = value
            elif body.startswith("BetaOffset"):
                self.beta = value
            else:
                self.thickness = int(value)
        elif self.section == "header" and re.fullmatch(r"\d+\s+\d+", body):  # AreTomo 1.2: "# n_views n_patches"
            self.n_views_12, self.n_patches = (int(t) for t in body.split())

    def data(self, line: str, lineno: int) -> None:
        p = self.path
        if self.section == "global":
            tokens = line.split()
            if len(tokens) != 10:
                _bad(p, lineno, line, f"expected 10 columns {' '.join(_COLUMNS)}, found {len(tokens)}")
            if not re.fullmatch(r"\d{1,6}", tokens[0]):
                _bad(p, lineno, line, f"SEC {tokens[0][:20]!r} is not a section number")
            self.rows.append([_number(t, p, lineno, line) for t in tokens])
        elif self.section == "local":
            if len(line.split()) != 7:
                _bad(p, lineno, line, "expected 7 columns in a local alignment line")
            self.n_local += 1
        else:
            _bad(p, lineno, line, "data line before the '# SEC ROT ...' column header")

    def problems(self, kept: np.ndarray, dark_frames: tuple[DarkFrame, ...]) -> list[str]:
        """Counts that disagree with the header: a truncated or edited file."""
        out: list[str] = []
        n, raw = len(self.rows), self.raw_size
        expected = raw[2] - len(self.darks) if raw is not None else self.n_views_12
        if expected is not None and expected != n:
            out.append(f"has {n} global alignment lines but its header announces {expected} views"
                       + (f" (RawSize {raw[2]} minus {len(self.darks)} dark frames)" if raw else ""))
        if self.n_local and self.n_local != self.n_patches * n:
            out.append(f"has {self.n_local} local alignment lines, expected NumPatches {self.n_patches} x {n} views")
        both = sorted(set(kept.tolist()) & {d.section - 1 for d in dark_frames})
        if both:
            out.append(f"0-based section(s) {both[:5]} are listed both as aligned and as DarkFrame")
        return out


def read_aln(path: str | Path, *, strict: bool = True) -> AretomoAlignment:
    """Read an AreTomo ``.aln`` file.

    With ``strict`` (default) the number of global lines must equal RawSize z minus the dark frames
    (a shorter file is truncated); ``strict=False`` accepts it and records a note.
    """
    p = Path(path)
    lines = read_text_lines(p, "AreTomo alignment file (.aln)")
    if not lines or not lines[0].lstrip().startswith("# AreTomo Alignment"):
        raise InputFileError("is not an AreTomo .aln file (first line is not '# AreTomo Alignment ...')", p)
    s = _AlnParse(p)
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if lineno == 1 or not line:
            continue
        if line.startswith("#"):
            s.comment(line[1:].strip(), lineno, line)
        else:
            s.data(line, lineno)
    if not s.rows:
        raise InputFileError("has no global alignment lines (after '# SEC ROT GMAG ...'); re-run AreTomo", p)
    arr = np.asarray(s.rows, dtype=np.float64)
    sec = arr[:, 0].astype(np.int64)
    zero_based = bool((sec == 0).any() or any(sc == 0 or sc == f for f, sc, _ in s.darks))
    dark_frames = tuple(DarkFrame(f, f + 1 if zero_based else sc, tilt) for f, sc, tilt in s.darks)
    notes = [f"{s.n_local} local-alignment lines ignored (patch alignment is not used)"] if s.n_local else []
    kept = sec if zero_based else sec - 1
    problems = s.problems(kept, dark_frames)
    if strict and problems:
        raise InputFileError(f"{problems[0]}; the file is truncated or edited, re-run AreTomo "
                             f"(or read it with strict=False)", p)
    return AretomoAlignment(
        path=p, format=s.fmt, sec=sec, section=kept,
        rot=arr[:, 1], gmag=arr[:, 2], tx=arr[:, 3], ty=arr[:, 4], smean=arr[:, 5], sfit=arr[:, 6],
        scale=arr[:, 7], base=arr[:, 8], tilt=arr[:, 9], raw_size=s.raw_size, n_patches=s.n_patches,
        dark_frames=dark_frames, alpha_offset=s.alpha, beta_offset=s.beta, thickness=s.thickness,
        n_local_lines=s.n_local, notes=tuple(notes + problems),
    )


def aln_to_xf(aln: AretomoAlignment, *, include_dark: bool = False) -> np.ndarray:
    """IMOD ``.xf`` transforms ``(n, 2, 3)`` equivalent to the global alignment.

    Convention (AreTomo3 ``ImodUtil/CSaveXF.cpp``, the ``.xf`` it writes with ``-OutImod``): remove
    the shift, then rotate by minus the tilt-axis angle, both about the image centre::

        A = [[cos ROT, sin ROT], [-sin ROT, cos ROT]]   (rotation by -ROT),   D = A @ (-TX, -TY)

    so a raw point ``X`` goes to ``A @ (X - T)`` and the tilt axis (ROT counter-clockwise from +Y, as
    IMOD's tilt-axis angle) becomes the +Y axis. GMAG (1.0 in files AreTomo writes) is not applied.

    One row per kept view in file order; with ``include_dark`` one row per raw-stack section
    (RawSize z), the dark sections getting the identity, as AreTomo3 does for RELION.
    """
    theta = np.deg2rad(aln.rot)
    c, s = np.cos(theta), np.sin(theta)
    xf = np.zeros((aln.n_views, 2, 3), dtype=np.float64)
    xf[:, 0, 0], xf[:, 0, 1], xf[:, 1, 0], xf[:, 1, 1] = c, s, -s, c
    xf[:, 0, 2] = -(c * aln.tx + s * aln.ty)
    xf[:, 1, 2] = -(-s * aln.tx + c * aln.ty)
    if not include_dark:
        return xf
    n_raw = aln.raw_size[2] if aln.raw_size is not None else aln.n_views + len(aln.dark_frames)
    full = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (n_raw, 1, 1))
    if aln.section.size and (aln.section.min() < 0 or aln.section.max() >= n_raw):
        raise InputFileError(f"section numbers {int(aln.section.min())}..{int(aln.section.max())} do not fit "
                             f"the raw stack of {n_raw} views", aln.path)
    full[aln.section] = xf
    return full
