"""RELION 5 ``tomograms.star`` (the ``global`` table of a Reconstruct/Denoise job) and the tilt angles of a
tilt-series STAR, via ``starfile``.

Columns used: ``rlnTomoName`` (required), ``rlnTomoReconstructedTomogramHalf1/Half2`` (the even/odd
halves written by Reconstruct tomograms with "Generate tomograms for denoising"),
``rlnTomoReconstructedTomogram``, ``rlnTomoTiltSeriesPixelSize``, ``rlnTomoTomogramBinning``,
``rlnTomoSizeX/Y/Z``. RELION writes paths relative to its project folder; a relative path is
resolved against ``project_dir`` when given, else the star file's folder and then each of its
parent folders, taking the first candidate that exists (the project-relative guess otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import starfile

from ..errors import InputFileError

_PATH_COLUMNS = ("rlnTomoReconstructedTomogramHalf1", "rlnTomoReconstructedTomogramHalf2",
                 "rlnTomoReconstructedTomogram", "rlnTomoTiltSeriesStarFile")
_STRING_COLUMNS = ["rlnTomoName", *_PATH_COLUMNS]


@dataclass(frozen=True)
class TomogramEntry:
    """One row of a RELION 5 tomograms.star."""

    name: str
    half1: Path | None
    half2: Path | None
    pixel_size: float | None
    """Tilt-series pixel size in Angstrom (``rlnTomoTiltSeriesPixelSize``)."""
    binning: float | None = None
    tomogram: Path | None = None
    size: tuple[int, int, int] | None = None
    """Unbinned tomogram size ``(x, y, z)`` from ``rlnTomoSizeX/Y/Z``."""
    tilt_series: Path | None = None
    """The tilt series' own STAR (``rlnTomoTiltSeriesStarFile``): its tilt angles."""

    @property
    def tomogram_pixel_size(self) -> float | None:
        """Voxel size of the reconstructed tomogram: pixel size x binning."""
        if self.pixel_size is None:
            return None
        return self.pixel_size * (self.binning or 1.0)


def _resolve(value: Any, star: Path, project_dir: Path | None) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text or text.lower() in ("none", "<na>", "nan"):
        return None
    rel = Path(text)
    if rel.is_absolute():
        return rel
    bases = [project_dir] if project_dir is not None else []
    bases += [star.parent, *star.parent.parents]
    for base in bases:
        if base is not None and (base / rel).exists():
            return base / rel
    # RELION star files live two levels below the project (Job/jobNNN/tomograms.star)
    guess = project_dir or (star.parent.parent.parent if len(star.parent.parents) >= 2 else star.parent)
    return guess / rel


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _read_blocks(p: Path, expected: str) -> dict[str, Any]:
    """All data blocks of the STAR file ``p``; one-line InputFileError when it is missing or unreadable."""
    if not p.exists():
        raise InputFileError("STAR file not found; check the path", p)
    if p.is_dir():
        raise InputFileError(f"is a folder, expected {expected}", p)
    try:
        return dict(starfile.read(p, always_dict=True, parse_as_string=_STRING_COLUMNS))
    except Exception as exc:  # starfile/pandas raise many types on malformed input
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputFileError(f"is not a readable STAR file ({reason})", p) from None


def read_tomograms_star(path: str | Path, *, project_dir: str | Path | None = None) -> list[TomogramEntry]:
    """Entries of a RELION 5 ``tomograms.star``; raises InputFileError if it is not one."""
    p = Path(path)
    blocks = _read_blocks(p, "a RELION tomograms.star file")
    table = None
    for block in blocks.values():
        if hasattr(block, "columns") and "rlnTomoName" in block.columns:
            table = block
            break
    if table is None:
        raise InputFileError("has no table with an rlnTomoName column; pass the tomograms.star of a RELION 5 "
                             "Reconstruct tomograms job", p)
    proj = Path(project_dir) if project_dir is not None else None
    entries: list[TomogramEntry] = []
    seen: set[str] = set()
    for i, row in enumerate(table.to_dict("records")):
        name = str(row["rlnTomoName"]).strip()
        if not name or name in seen:
            raise InputFileError(f"row {i + 1}: rlnTomoName {name!r} is empty or repeated; names must be unique", p)
        seen.add(name)
        sx, sy, sz = (_float(row.get(f"rlnTomoSize{a}")) for a in "XYZ")
        entries.append(TomogramEntry(
            name=name,
            half1=_resolve(row.get("rlnTomoReconstructedTomogramHalf1"), p, proj),
            half2=_resolve(row.get("rlnTomoReconstructedTomogramHalf2"), p, proj),
            pixel_size=_float(row.get("rlnTomoTiltSeriesPixelSize")),
            binning=_float(row.get("rlnTomoTomogramBinning")),
            tomogram=_resolve(row.get("rlnTomoReconstructedTomogram"), p, proj),
            size=(int(sx), int(sy), int(sz)) if sx is not None and sy is not None and sz is not None else None,
            tilt_series=_resolve(row.get("rlnTomoTiltSeriesStarFile"), p, proj),
        ))
    return entries


_TILT_COLUMNS = ("rlnTomoYTilt", "rlnTomoNominalStageTiltAngle")
"""Per-tilt angle columns of a RELION 5 tilt-series STAR, preferred first. RELION 5 sets ``rlnTomoYTilt`` from
the aligner's refined angles (IMOD's ``.tlt`` less the tilt offset, AreTomo's ``.aln`` TILT column:
``src/align_tiltseries_runner.cpp``, ``readIMODResults``/``readAreTomoResults``): the angles the tomogram was
reconstructed with. ``rlnTomoNominalStageTiltAngle`` is the stage's (what the aligner was given as ``.rawtlt``)."""


def read_tilt_angles_star(path: str | Path, *, project_dir: str | Path | None = None) -> tuple[list[float], str]:
    """Tilt angles (degrees) of a RELION 5 tilt-series STAR (``tilt_series/<name>.star``) and the column read.

    A ``tomograms.star`` with a single tomogram is followed to its ``rlnTomoTiltSeriesStarFile``; with several,
    the message names them (pass one tilt series' STAR)."""
    p = Path(path)
    blocks = _read_blocks(p, "a RELION tilt-series STAR file")
    for column in _TILT_COLUMNS:
        for block in blocks.values():
            if hasattr(block, "columns") and column in block.columns:
                angles = [_float(v) for v in block[column]]
                if not angles or any(a is None for a in angles):
                    raise InputFileError(f"column {column} has missing or non-numeric tilt angles", p)
                return [float(a) for a in angles if a is not None], column
    listed = any(hasattr(b, "columns") and "rlnTomoName" in b.columns for b in blocks.values())
    series = [e for e in read_tomograms_star(p, project_dir=project_dir) if e.tilt_series is not None] if listed else []
    if len(series) == 1 and series[0].tilt_series is not None:
        return read_tilt_angles_star(series[0].tilt_series, project_dir=project_dir)
    if series:
        names = ", ".join(e.name for e in series[:4]) + (", ..." if len(series) > 4 else "")
        raise InputFileError(f"lists {len(series)} tilt series ({names}); pass the STAR of the one the pair came "
                             "from (its rlnTomoTiltSeriesStarFile)", p)
    raise InputFileError(f"has no tilt angles (columns {' or '.join(_TILT_COLUMNS)}); pass a RELION 5 tilt-series "
                         "STAR, a .tlt or an .mdoc", p)
