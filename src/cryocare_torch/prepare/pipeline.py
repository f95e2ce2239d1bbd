"""From the microscope's files to training pairs: shared inputs, tilt-series stacks, alignment, pair lists.

The six cryo-CARE regimes of Buchholz et al. (2019) are built in :mod:`cryocare_torch.prepare.regimes`
on top of what this module provides:

* :class:`RawTiltSeries` -- the ``.mdoc`` with the movies (``SubFramePath``) or a SerialEM stack, gain,
  excluded views; :func:`tiltseries_stacks` turns it into angle-sorted stacks in ``<out>/tiltseries/``
  (motion-corrected even/odd/sum/first-half/second-half from movies, or the reordered stack) and reuses
  them on later calls with the same inputs (``<name>_tiltseries.json`` records what they were made from);
* :class:`Alignment` -- IMOD ``.xf`` (+ ``.tlt``) or an AreTomo ``.aln``; :func:`load_alignment` gives the
  angles and transforms of the kept views;
* :func:`write_pair_list` -- ``name even odd`` lines (paths relative to the list), read by
  :func:`cryocare_torch.io.pairs.find_pairs` and ``cryocare batch``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import MotionConfig
from ..errors import ConfigError, InputFileError
from ..io.aretomo import aln_to_xf, read_aln
from ..io.atomic import atomic_write_json, atomic_write_text
from ..io.imod import read_tlt, read_xf
from ..io.movie import Flip
from ..logs import Log
from .tiltseries import TiltSeriesViews, assemble_from_movies, assemble_from_stack, check_stack, views_from_mdoc
from .views import sibling

Regime = Literal["t2t-df", "t2t-eoa", "p2p-df", "p2p-ip", "p2p-tap"]
STACK_KINDS = ("even", "odd", "sum", "firsthalf", "secondhalf")


@dataclass(frozen=True)
class RawTiltSeries:
    """What the microscope left for one tilt series."""

    mdoc: Path
    movie_dir: Path | None = None
    """Folder of the movies (default: the ``.mdoc``'s folder, then its ``frames/``)."""
    stack: Path | None = None
    """SerialEM stack (ZValue order), used when there are no movies (T2T-eoa, P2P-tap)."""
    gain: Path | None = None
    gain_flip: Flip = "none"
    gain_rotation: int = 0
    exclude: tuple[int, ...] = ()
    """ZValues (0-based stack sections) to leave out."""
    pixel_size: float | None = None
    """Angstrom; default from the ``.mdoc``."""
    dose_per_tilt: float | None = None
    name: str | None = None
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Motion-correction settings of the movies."""

    def views(self) -> TiltSeriesViews:
        return views_from_mdoc(self.mdoc, exclude=self.exclude, movie_dir=self.movie_dir,
                               dose_per_tilt=self.dose_per_tilt, name=self.name)


@dataclass(frozen=True)
class Alignment:
    """Tilt-series alignment: IMOD ``xf`` (raw -> aligned) and ``tlt``, or an AreTomo ``aln``."""

    xf: Path | None = None
    tlt: Path | None = None
    aln: Path | None = None


@dataclass(frozen=True)
class PreparedPair:
    """A training pair made by one regime, and the list file naming it."""

    name: str
    regime: str
    even: Path
    odd: Path
    pair_list: Path
    extra: dict[str, Path] = field(default_factory=dict)


def _say(log: Log | None) -> Log:
    return log or (lambda _m: None)


def _record(raw: RawTiltSeries, views: TiltSeriesViews, kinds: tuple[str, ...]) -> dict[str, Any]:
    def stamp(p: Path | None) -> list[Any] | None:
        if p is None or not p.exists():
            return None
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]

    inputs = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else
                  v.model_dump(mode="json") if isinstance(v, MotionConfig) else v)
              for k, v in asdict(raw).items() if k not in ("mdoc", "movie_dir", "stack", "gain")}
    return {"kinds": list(kinds), "mdoc": stamp(raw.mdoc), "gain": stamp(raw.gain), "stack": stamp(raw.stack),
            "movies": [stamp(m) for m in views.movies] if "even" in kinds else None, "options": inputs}


def tiltseries_stacks(
    raw: RawTiltSeries,
    out_dir: str | Path,
    *,
    need_frames: bool,
    overwrite: bool = False,
    log: Log | None = None,
    alignment: Alignment | None = None,
) -> tuple[TiltSeriesViews, dict[str, Path]]:
    """Angle-sorted stacks of the kept views in ``<out_dir>/tiltseries/<name>_<kind>.mrc`` and their ``.tlt``.

    From movies (when the views have them, or ``need_frames``): all of :data:`STACK_KINDS`; from
    ``raw.stack``: ``sum`` only. Stacks made earlier from the same inputs are reused. ``alignment``
    (.xf/.tlt/.aln) is read and checked against the views first, so a bad side file stops before any work.
    """
    say = _say(log)
    views = raw.views()
    if alignment is not None:
        load_alignment(alignment, views)
    folder = Path(out_dir) / "tiltseries"
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / views.name
    has_movies = all(m is not None and m.is_file() for m in views.movies)
    use_movies = need_frames or raw.stack is None or has_movies
    if use_movies and not has_movies:
        views.movie_paths()  # names the missing movie
    kinds = STACK_KINDS if use_movies else ("sum",)
    record_path = sibling(prefix, "_tiltseries.json")
    record = _record(raw, views, kinds)
    paths = {k: sibling(prefix, f"_{k}.mrc") for k in kinds} | {"tlt": sibling(prefix, ".tlt")}
    if record_path.is_file() and all(p.is_file() for p in paths.values()):
        try:
            same = json.loads(record_path.read_text()) == json.loads(json.dumps(record))
        except (OSError, ValueError):
            same = False
        if same:
            say(f"reusing the tilt-series stacks in {folder} (same inputs)")
            return views, paths
        if not overwrite:
            say(f"the stacks in {folder} were made from other inputs; pass --overwrite to remake them")
    if use_movies:
        say(f"motion-correcting {views.n} movies of {views.name} ({len(views.excluded_z)} views excluded)")
        made = assemble_from_movies(views, prefix, gain=raw.gain, gain_flip=raw.gain_flip,
                                    gain_rotation=raw.gain_rotation, pixel_size=raw.pixel_size, overwrite=overwrite,
                                    motion=raw.motion)
    else:
        assert raw.stack is not None
        check_stack(raw.stack, views)
        say(f"sorting the {views.n} kept views of {raw.stack.name} by tilt angle")
        made = assemble_from_stack(raw.stack, views, prefix, overwrite=overwrite)
    atomic_write_json(record_path, record, overwrite=True)
    return views, {**paths, **{k: v for k, v in made.items() if k not in paths}}


def load_alignment(align: Alignment, views: TiltSeriesViews) -> tuple[np.ndarray, np.ndarray | None]:
    """``(angles, xf)`` of the kept views (angle order); ``xf`` is None without a transform file.

    Angles come from ``tlt``, else the ``aln``'s TILT column, else the ``.mdoc``. An ``.aln`` is read for
    the angle-sorted series of all views (its sections), so a view it dropped must be excluded here too.
    """
    if align.aln is not None and align.xf is not None:
        raise ConfigError("give either --xf (IMOD) or --aln (AreTomo), not both")
    angles = views.angles.copy()
    xf = None
    if align.aln is not None:

        aln = read_aln(align.aln)
        rows = {int(s): i for i, s in enumerate(aln.section)}
        missing = [int(views.z_value[k]) for k, s in enumerate(views.sorted_index) if int(s) not in rows]
        if missing:
            raise InputFileError(f"has no alignment for the view(s) with ZValue {missing[:5]} (dark or excluded in "
                                 f"AreTomo); exclude them with --exclude", align.aln)
        pick = np.array([rows[int(s)] for s in views.sorted_index])
        xf = aln_to_xf(aln)[pick]
        angles = aln.tilt[pick].astype(np.float64)
    if align.xf is not None:
        xf = views.pick(read_xf(align.xf), align.xf)
    if align.tlt is not None:
        angles = views.pick(read_tlt(align.tlt), align.tlt).astype(np.float64)
    return angles, xf


def write_pair_list(path: str | Path, pairs: list[tuple[str, Path, Path]], *, overwrite: bool = False) -> Path:
    """``name even odd`` per line, paths relative to the list file's folder where possible."""
    p = Path(path)
    lines = ["# name even odd (paths relative to this file); use with 'cryocare batch' or io.pairs.find_pairs"]
    for name, even, odd in pairs:
        rel = []
        for f in (even, odd):
            try:
                rel.append(str(Path(f).resolve().relative_to(p.parent.resolve())))
            except ValueError:
                rel.append(str(Path(f).resolve()))
        if any(any(c.isspace() for c in t) for t in (name, *rel)):
            lines.append("\t".join((name, *rel)))
        else:
            lines.append(" ".join((name, *rel)))
    return atomic_write_text(p, "\n".join(lines) + "\n", overwrite=overwrite)
