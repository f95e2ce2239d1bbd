"""SerialEM ``.mdoc`` tilt-series metadata, read through the ``mdocfile`` package.

Per-tilt arrays are in stack (ZValue) order; :meth:`TiltSeriesMdoc.sorted_by_angle` reorders them.

* acquisition order: by ``DateTime`` (ties and missing times fall back to ZValue order);
* dose per tilt (e/A^2): ``ExposureDose`` if any is non-zero, else the sum of ``FrameDosesAndNumber``,
  else the ``dose_per_tilt`` you pass (it always wins when given), else unknown (zeros);
* pre-exposure: ``PriorRecordDose`` where SerialEM wrote it, else the dose accumulated over the tilts
  acquired earlier;
* ``exclude``: ZValues to drop (e.g. views removed before reconstruction); pre-exposure still counts them.

Montage ``.mdoc`` files are refused; a single-movie ``.mdoc`` (only ``[FrameSet = 0]``) reads as one tilt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import numpy as np
from mdocfile.data_models import Mdoc

from ..errors import InputFileError
from .atomic import atomic_write_text
from .imod import read_text_lines

DoseSource = Literal["ExposureDose", "FrameDosesAndNumber", "dose_per_tilt", "unknown"]
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATETIME = re.compile(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{2}|\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})\s*$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NUMERIC_KEYS = ("TiltAngle", "ExposureDose", "PixelSpacing", "ExposureTime", "NumSubFrames", "PriorRecordDose")
_PER_TILT = ("z_value", "tilt_angle", "acquisition_order", "dose", "pre_exposure", "exposure_time",
             "num_sub_frames", "sub_frame_path", "datetime")


@dataclass(frozen=True)
class TiltSeriesMdoc:
    """Tilt-series metadata; every per-tilt field has one entry per (kept) view."""

    path: Path
    z_value: np.ndarray
    """Section of the image in the stack (0-based ZValue)."""
    tilt_angle: np.ndarray
    acquisition_order: np.ndarray
    """0-based rank of each view in acquisition time."""
    dose: np.ndarray
    """Exposure dose of each view in e/A^2 (zeros when unknown, see ``dose_source``)."""
    pre_exposure: np.ndarray
    """Dose received before each view, in e/A^2."""
    exposure_time: np.ndarray
    """Seconds; NaN where absent."""
    num_sub_frames: np.ndarray
    """Number of movie frames; 0 where absent."""
    sub_frame_path: tuple[str | None, ...]
    """Movie path as SerialEM wrote it (often a Windows path); see :meth:`sub_frame_name`."""
    datetime: tuple[datetime | None, ...]
    dose_source: DoseSource
    pixel_size: float | None
    """Angstrom per pixel of the stack images (``PixelSpacing``)."""
    tilt_axis_angle: float | None = None
    image_size: tuple[int, int] | None = None
    excluded_z: tuple[int, ...] = ()

    @property
    def n_tilts(self) -> int:
        return int(self.tilt_angle.shape[0])

    def sub_frame_name(self, i: int) -> str | None:
        """File name of view ``i``'s movie, without SerialEM's (Windows) folder."""
        raw = self.sub_frame_path[i]
        return PureWindowsPath(raw).name if raw else None

    def sorted_by_angle(self) -> TiltSeriesMdoc:
        """The same metadata with views ordered by increasing tilt angle."""
        return self._take(np.argsort(self.tilt_angle, kind="stable"))

    def _take(self, idx: np.ndarray) -> TiltSeriesMdoc:
        changes: dict[str, Any] = {}
        for name in _PER_TILT:
            value = getattr(self, name)
            changes[name] = value[idx] if isinstance(value, np.ndarray) else tuple(value[i] for i in idx)
        return replace(self, **changes)


def parse_serialem_datetime(text: str) -> datetime | None:
    """``"30-Nov-15  15:21:38"`` (or a 4-digit year) -> datetime; None if not in that form."""
    m = _DATETIME.match(text or "")
    if m is None or m.group(2).title() not in _MONTHS:
        return None
    day, mon, year, hh, mm, ss = m.groups()
    y = int(year) + (2000 if len(year) == 2 and int(year) < 69 else 1900 if len(year) == 2 else 0)
    try:
        return datetime(y, _MONTHS.index(mon.title()) + 1, int(day), int(hh), int(mm), int(ss))
    except ValueError:
        return None


def format_serialem_datetime(dt: datetime) -> str:
    """SerialEM's ``DD-Mon-YY  HH:MM:SS`` (English month names whatever the locale)."""
    return f"{dt.day:02d}-{_MONTHS[dt.month - 1]}-{dt.year % 100:02d}  {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"


def _lint(lines: list[str], path: Path) -> dict[int, int]:
    """Check the autodoc syntax with line numbers; returns ``{ZValue: line number}``."""
    z_lines: dict[int, int] = {}
    for lineno, raw in enumerate(lines, start=1):
        s = raw.strip()
        if not s:
            continue
        if s.startswith("["):
            if not s.endswith("]") or "=" not in s:
                raise InputFileError(f"line {lineno}: section header {s[:50]!r} must look like [ZValue = 0]", path)
            kind, _, value = s[1:-1].partition("=")
            if kind.strip() in ("ZValue", "FrameSet", "MontSection"):
                if not re.fullmatch(r"\s*\d{1,9}\s*", value):
                    raise InputFileError(f"line {lineno}: {kind.strip()} {value.strip()[:20]!r} is not a "
                                         f"non-negative integer", path)
                if kind.strip() == "ZValue":
                    z = int(value)
                    if z in z_lines:
                        raise InputFileError(f"line {lineno}: ZValue {z} appears twice (first on line "
                                             f"{z_lines[z]}); remove the duplicate section", path)
                    z_lines[z] = lineno
            continue
        key, eq, value = s.partition("=")
        if not eq or not _KEY.match(key.strip()):
            raise InputFileError(f"line {lineno}: expected 'Key = value', found {s[:50]!r}", path)
        if key.strip() == "NumSubFrames" and not re.fullmatch(r"\s*\d{1,9}\s*", value):
            raise InputFileError(f"line {lineno}: NumSubFrames {value.strip()[:30]!r} is not a frame count", path)
        if key.strip() in _NUMERIC_KEYS:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not np.isfinite(number):
                raise InputFileError(f"line {lineno}: {key.strip()} {value.strip()[:30]!r} is not a finite number",
                                     path)
    return z_lines


def _parse(lines: list[str], path: Path) -> Mdoc:
    # SerialEM frame-set files write their title without brackets ("T = SerialEM: ..."); mdocfile
    # expects bracketed titles, so give it that form (the text is unchanged otherwise).
    fixed = [f"[{ln.strip()}]" if ln.lstrip().startswith("T =") else ln for ln in lines]
    log = logging.getLogger("mdocfile")  # it warns about every unknown or aliased key
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return Mdoc.from_lines(fixed)
    except Exception as exc:  # mdocfile raises ValueError/pydantic errors/IndexError on bad input
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            why = f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg', exc)}"
        else:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(f"is not a valid SerialEM .mdoc ({why[:160]}); check the file", path) from None
    finally:
        log.setLevel(level)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _tilt_sections(mdoc: Mdoc, p: Path) -> tuple[list[Any], Callable[[Any, str], Any]]:
    """The ``[ZValue]`` sections sorted by ZValue (a lone ``[FrameSet]`` as ZValue 0) and a getter that falls
    back to the first FrameSet's value."""
    if mdoc.global_data.Montage or any(s.MontSection is not None for s in mdoc.section_data):
        raise InputFileError("is a montage .mdoc (Montage = 1); cryocare needs the .mdoc of a tilt series", p)
    frame_sets = [s for s in mdoc.section_data if s.FrameSet is not None]
    sections = [s for s in mdoc.section_data if s.ZValue is not None]
    if not sections and frame_sets:
        sections = [frame_sets[0].model_copy(update={"ZValue": 0})]
    if not sections:
        raise InputFileError("has no [ZValue = ...] sections; is it a SerialEM tilt-series .mdoc?", p)
    default = frame_sets[0] if frame_sets else None

    def get(s: Any, name: str) -> Any:
        value = getattr(s, name, None)
        return getattr(default, name, None) if value is None and default is not None else value

    return sorted(sections, key=lambda s: s.ZValue), get


def _doses(sections: list[Any], get: Callable[[Any, str], Any], dose_per_tilt: float | None,
           order: list[int]) -> tuple[np.ndarray, np.ndarray, DoseSource]:
    """Dose of each tilt and the dose before it, and where the dose came from."""
    n = len(sections)
    exposure = [_num(get(s, "ExposureDose")) for s in sections]
    frames = [get(s, "FrameDosesAndNumbers") for s in sections]
    source: DoseSource
    if dose_per_tilt is not None:
        dose, source = np.full(n, float(dose_per_tilt)), "dose_per_tilt"
    elif any(e for e in exposure):
        dose, source = np.array([e or 0.0 for e in exposure]), "ExposureDose"
    elif all(f for f in frames):
        dose, source = np.array([sum(float(d) * int(k) for d, k in f) for f in frames]), "FrameDosesAndNumber"
    else:
        dose, source = np.zeros(n), "unknown"
    prior = [_num(get(s, "PriorRecordDose")) for s in sections]
    if source != "dose_per_tilt" and all(v is not None for v in prior) and n > 1:
        return dose, np.array(prior, dtype=np.float64), source
    pre = np.zeros(n)
    pre[order] = np.concatenate([[0.0], np.cumsum(dose[order])[:-1]])
    return dose, pre, source


def _tilt_axis(titles: Iterable[str]) -> float | None:
    for title in titles:
        m = re.search(r"Tilt axis angle\s*=\s*([-+]?\d+\.?\d*)", title)
        if m:
            return float(m.group(1))
    return None


def _exclude(result: TiltSeriesMdoc, exclude: Iterable[int], p: Path) -> TiltSeriesMdoc:
    z, drop = result.z_value, sorted({int(e) for e in exclude})
    unknown = [e for e in drop if e not in set(z.tolist())]
    if unknown:
        raise InputFileError(f"exclude list names ZValue(s) {unknown[:5]} but the file has ZValues "
                             f"{int(z.min())}..{int(z.max())}; exclude values are 0-based stack sections", p)
    if not drop:
        return result
    keep = np.flatnonzero(~np.isin(z, drop))
    if keep.size == 0:
        raise InputFileError("the exclude list removes every view", p)
    return replace(result._take(keep), excluded_z=tuple(drop))


def read_mdoc(
    path: str | Path, *, exclude: Iterable[int] = (), dose_per_tilt: float | None = None
) -> TiltSeriesMdoc:
    """Read a SerialEM tilt-series ``.mdoc``; ``exclude`` lists ZValues to drop (0-based stack sections)."""
    p = Path(path)
    lines = read_text_lines(p, "SerialEM metadata file (.mdoc)")
    z_lines = _lint(lines, p)
    mdoc = _parse(lines, p)
    sections, get = _tilt_sections(mdoc, p)
    z = np.array([int(s.ZValue) for s in sections], dtype=np.int64)
    for s in sections:
        if get(s, "TiltAngle") is None:
            raise InputFileError(f"line {z_lines.get(int(s.ZValue), 0)}: ZValue {s.ZValue} has no TiltAngle", p)
    times = tuple(parse_serialem_datetime(get(s, "DateTime") or "") for s in sections)
    timed = all(t is not None for t in times)
    order = sorted(range(len(z)), key=lambda i: (times[i], z[i])) if timed else list(range(len(z)))
    acq = np.empty(len(z), dtype=np.int64)
    acq[order] = np.arange(len(z))
    dose, pre, source = _doses(sections, get, dose_per_tilt, order)
    size = mdoc.global_data.ImageSize
    result = TiltSeriesMdoc(
        path=p, z_value=z, tilt_angle=np.array([float(get(s, "TiltAngle")) for s in sections]),
        acquisition_order=acq, dose=dose, pre_exposure=pre,
        exposure_time=np.array([_num(get(s, "ExposureTime")) or np.nan for s in sections]),
        num_sub_frames=np.array([int(get(s, "NumSubFrames") or 0) for s in sections], dtype=np.int64),
        sub_frame_path=tuple(str(get(s, "SubFramePath")) if get(s, "SubFramePath") else None for s in sections),
        datetime=times, dose_source=source, tilt_axis_angle=_tilt_axis(mdoc.titles),
        pixel_size=_num(mdoc.global_data.PixelSpacing) or _num(get(sections[0], "PixelSpacing")),
        image_size=(int(size[0]), int(size[1])) if size else None,
    )
    return _exclude(result, exclude, p)


def write_mdoc(path: str | Path, angles: Sequence[float] | np.ndarray, z_values: Sequence[int] | np.ndarray,
               doses: Sequence[float] | np.ndarray, pixel_size: float, datetimes: Sequence[datetime] | None,
               sub_frame_paths: Sequence[str] | None = None, *, tilt_axis_angle: float | None = None,
               image_file: str | None = None, overwrite: bool = False,
               extra: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Write a SerialEM-style tilt-series ``.mdoc`` (readable by :func:`read_mdoc`, ``mdocfile`` and IMOD);
    ``extra``: more numeric keys per section, e.g. ``{"Defocus": [...]}`` (SerialEM: negative = underfocus)."""
    n = len(angles)
    for name, seq in (("z_values", z_values), ("doses", doses), ("datetimes", datetimes),
                      ("sub_frame_paths", sub_frame_paths)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries, expected {n} (one per angle)")
    head = [f"PixelSpacing = {float(pixel_size)!r}"]
    if image_file:
        head.append(f"ImageFile = {image_file}")
    head += ["", "[T = SerialEM: written by cryocare-torch]", ""]
    if tilt_axis_angle is not None:
        head += [f"[T =     Tilt axis angle = {float(tilt_axis_angle)!r}, binning = 1  spot = 1  camera = 0]", ""]
    body: list[str] = []
    for i in range(n):
        body += [f"[ZValue = {int(z_values[i])}]", f"TiltAngle = {float(angles[i])!r}",
                 f"ExposureDose = {float(doses[i])!r}", f"PixelSpacing = {float(pixel_size)!r}"]
        if sub_frame_paths is not None:
            if any(c in sub_frame_paths[i] for c in "\r\n"):
                raise ValueError("sub-frame paths must be single-line strings")
            body.append(f"SubFramePath = {sub_frame_paths[i]}")
        if datetimes is not None:
            body.append(f"DateTime = {format_serialem_datetime(datetimes[i])}")
        body += [f"{key} = {float(values[i])!r}" for key, values in (extra or {}).items()]
        body.append("")
    return atomic_write_text(path, "\n".join(head + body), overwrite=overwrite)
