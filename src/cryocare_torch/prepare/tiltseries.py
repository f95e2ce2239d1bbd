"""Assemble a tilt series from SerialEM metadata: per-tilt movies or an existing stack, plus its ``.mdoc``.

:func:`views_from_mdoc` reads the angles, acquisition order, doses, movies and excluded views of a tilt
series and orders the kept views by tilt angle (:class:`TiltSeriesViews`). From there:

* :func:`assemble_from_movies` motion-corrects one movie per view into angle-sorted even/odd/sum/
  first-half/second-half stacks (the inputs of T2T-df, P2P-df and P2P-ip) and writes their ``.tlt``;
* :func:`assemble_from_stack` reorders an existing SerialEM stack (ZValue order) by angle and drops the
  excluded views;
* :func:`acquisition_halves` splits the views by the parity of their acquisition number (T2T-eoa: with a
  dose-symmetric scheme both halves cover the whole angular range at twice the spacing, and each half
  holds every other exposure, so their doses match); :func:`write_acquisition_halves` writes the two
  stacks with their ``.tlt`` (and ``.xf``);
* :func:`adjacent_pairs` pairs every view with the next one in angle (P2P-tap).

Side files written for the whole angle-sorted series (``.xf``, ``.tlt``: one line per view *before*
exclusion) or for the kept views only are both accepted (:meth:`TiltSeriesViews.pick`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MotionConfig
from ..errors import DataError, InputFileError
from ..io.atomic import atomic_write_text
from ..io.imod import write_tlt, write_xf
from ..io.mdoc import read_mdoc
from ..io.movie import Flip
from ..io.mrc import VolumeMeta, read_meta
from .frames import motion_correct_tilt_series
from .views import copy_views, sibling


@dataclass(frozen=True)
class TiltSeriesViews:
    """The kept views of a tilt series in increasing tilt angle; every array has one entry per view."""

    name: str
    source: Path
    """The ``.mdoc`` they come from."""
    angles: np.ndarray
    acquisition_order: np.ndarray
    """0-based acquisition number among all views of the ``.mdoc`` (excluded ones included)."""
    dose: np.ndarray
    pre_exposure: np.ndarray
    z_value: np.ndarray
    """Section of each view in the SerialEM stack (its ZValue)."""
    sorted_index: np.ndarray
    """Position of each view in the angle-sorted series of all views (before exclusion)."""
    movies: tuple[Path | None, ...]
    pixel_size: float | None
    excluded_z: tuple[int, ...]
    n_total: int
    """Views in the ``.mdoc`` before exclusion."""

    @property
    def n(self) -> int:
        return int(self.angles.shape[0])

    def pick(self, values: Sequence[Any] | np.ndarray, path: str | Path) -> np.ndarray:
        """Per-view entries of a side file for the kept views: it may list the angle-sorted series before
        exclusion (``n_total`` entries) or after it (``n`` entries); anything else is an InputFileError."""
        arr = np.asarray(values)
        if len(arr) == self.n_total:
            return arr[self.sorted_index]
        if len(arr) == self.n:
            return arr
        kept = f" ({self.n} after excluding {len(self.excluded_z)})" if self.excluded_z else ""
        raise InputFileError(f"has {len(arr)} entries but the tilt series of {self.source.name} has "
                             f"{self.n_total} views{kept}; use the side file written for this tilt series", path)

    def movie_paths(self) -> list[Path]:
        """The movie of every view; InputFileError naming the first one that was not found."""
        for i, m in enumerate(self.movies):
            if m is None or not m.is_file():
                raise InputFileError(
                    f"movie of view ZValue {int(self.z_value[i])} ({float(self.angles[i]):+.1f} deg) not found"
                    f"{f' at {m}' if m is not None else ' (no SubFramePath)'}; pass --movie-dir with the folder "
                    "holding the frames", self.source)
        return [m for m in self.movies if m is not None]

    def table(self) -> str:
        """CSV: one row per kept view in angle order."""
        rows = ["index,angle,acquisition,z_value,dose,pre_exposure,movie"]
        for i in range(self.n):
            path = self.movies[i]
            movie = path.name if path is not None else ""
            rows.append(f"{i},{self.angles[i]:.2f},{int(self.acquisition_order[i])},{int(self.z_value[i])},"
                        f"{self.dose[i]:.4g},{self.pre_exposure[i]:.4g},{movie}")
        return "\n".join(rows) + "\n"


def _find_movie(name: str | None, mdoc: Path, movie_dir: Path | None) -> Path | None:
    if not name:
        return None
    folders = [movie_dir] if movie_dir is not None else [mdoc.parent, mdoc.parent / "frames"]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return folders[0] / name


def views_from_mdoc(
    mdoc: str | Path,
    *,
    exclude: Iterable[int] = (),
    movie_dir: str | Path | None = None,
    dose_per_tilt: float | None = None,
    name: str | None = None,
) -> TiltSeriesViews:
    """The kept views of the ``.mdoc``'s tilt series, sorted by angle.

    ``exclude``: ZValues (0-based stack sections) to drop. Movies are looked up by the file name of their
    ``SubFramePath`` in ``movie_dir`` (default: the ``.mdoc``'s folder, then its ``frames/`` sub-folder).
    """
    path = Path(mdoc)
    full = read_mdoc(path, dose_per_tilt=dose_per_tilt)
    drop = sorted({int(z) for z in exclude})
    kept = read_mdoc(path, exclude=drop, dose_per_tilt=dose_per_tilt) if drop else full
    if kept.n_tilts < 2:
        raise DataError(f"only {kept.n_tilts} view left after exclusion; a tilt series needs at least 2", path)
    sorted_all = full.z_value[np.argsort(full.tilt_angle, kind="stable")]
    position = {int(z): i for i, z in enumerate(sorted_all)}
    s = kept.sorted_by_angle()
    folder = Path(movie_dir) if movie_dir is not None else None
    stem = path.name[: -len(".mdoc")] if path.name.lower().endswith(".mdoc") else path.stem
    for ext in (".mrc", ".st", ".tif", ".tiff"):
        stem = stem[: -len(ext)] if stem.lower().endswith(ext) else stem
    return TiltSeriesViews(
        name=name or stem, source=path, angles=s.tilt_angle.astype(np.float64),
        acquisition_order=s.acquisition_order.astype(np.int64), dose=s.dose, pre_exposure=s.pre_exposure,
        z_value=s.z_value.astype(np.int64), sorted_index=np.array([position[int(z)] for z in s.z_value]),
        movies=tuple(_find_movie(s.sub_frame_name(i), path, folder) for i in range(s.n_tilts)),
        pixel_size=s.pixel_size, excluded_z=tuple(drop), n_total=full.n_tilts,
    )


def acquisition_halves(views: TiltSeriesViews) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the angle-sorted kept views) of even and odd acquisition numbers, each ascending."""
    parity = views.acquisition_order % 2
    even, odd = np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)
    if even.size < 2 or odd.size < 2:
        raise DataError(f"splitting {views.n} views by acquisition number leaves {even.size} and {odd.size}; "
                        "each half needs at least 2 views", views.source)
    return even, odd


def adjacent_pairs(angles: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(n - 1, 2)`` indices ``(i, j)`` of every view and its next neighbour in increasing angle."""
    a = np.asarray(angles, dtype=np.float64)
    if a.size < 2:
        raise DataError(f"adjacent-tilt pairs need at least 2 views, got {a.size}")
    order = np.argsort(a, kind="stable")
    return np.stack([order[:-1], order[1:]], axis=1)


def assemble_from_movies(
    views: TiltSeriesViews,
    output_prefix: str | Path,
    *,
    gain: str | Path | None = None,
    gain_flip: Flip = "none",
    gain_rotation: int = 0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    motion: MotionConfig | None = None,
) -> dict[str, Path]:
    """Motion-correct the views' movies in angle order: ``<prefix>_{even,odd,sum,firsthalf,secondhalf}.mrc``,
    ``<prefix>_shifts.csv``, ``<prefix>.tlt`` and ``<prefix>_views.csv``; returns the paths by kind."""
    prefix = Path(output_prefix)
    movies = views.movie_paths()
    px = pixel_size if pixel_size is not None else views.pixel_size
    paths = motion_correct_tilt_series(movies, output_prefix=prefix, gain=gain, gain_flip=gain_flip,
                                       gain_rotation=gain_rotation, pixel_size=px, overwrite=overwrite,
                                       motion=motion)
    paths["tlt"] = write_tlt(sibling(prefix, ".tlt"), views.angles, overwrite=overwrite)
    paths["views"] = atomic_write_text(sibling(prefix, "_views.csv"), views.table(),
                                       overwrite=overwrite)
    return paths


def check_stack(stack: str | Path, views: TiltSeriesViews) -> VolumeMeta:
    """The stack's header; InputFileError unless it has one section per view of the ``.mdoc``."""
    meta = read_meta(stack)
    n = meta.shape[0] if meta.ndim == 3 else 1
    if n != views.n_total:
        raise InputFileError(f"has {n} views but {views.source.name} describes {views.n_total}; give the stack "
                             "this .mdoc was written for", stack)
    if int(views.z_value.max()) >= n:
        raise InputFileError(f"{views.source.name} names ZValue {int(views.z_value.max())} but the stack has {n} "
                             "sections", stack)
    return meta


def assemble_from_stack(
    stack: str | Path, views: TiltSeriesViews, output_prefix: str | Path, *, overwrite: bool = False
) -> dict[str, Path]:
    """Reorder an existing SerialEM stack (one section per ZValue) by angle without the excluded views:
    ``<prefix>_sum.mrc``, ``<prefix>.tlt`` and ``<prefix>_views.csv``."""
    stack, prefix = Path(stack), Path(output_prefix)
    meta = check_stack(stack, views)
    px = views.pixel_size if not meta.has_voxel_size else None
    out = {"sum": copy_views(stack, sibling(prefix, "_sum.mrc"), views.z_value, pixel_size=px,
                             overwrite=overwrite, label="cryocare-torch: views sorted by tilt angle")}
    out["tlt"] = write_tlt(sibling(prefix, ".tlt"), views.angles, overwrite=overwrite)
    out["views"] = atomic_write_text(sibling(prefix, "_views.csv"), views.table(), overwrite=overwrite)
    return out


def write_acquisition_halves(
    sorted_stack: str | Path,
    views: TiltSeriesViews,
    output_prefix: str | Path,
    *,
    xf: np.ndarray | None = None,
    angles: np.ndarray | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """T2T-eoa inputs: ``<prefix>_eoa_{even,odd}.mrc`` (views of even/odd acquisition number from the
    angle-sorted stack) with their ``.tlt`` (``angles``, default the views') and, given ``xf`` for the kept
    views, ``.xf``."""
    prefix = Path(output_prefix)
    ang = views.angles if angles is None else np.asarray(angles, dtype=np.float64)
    out: dict[str, Path] = {}
    for half, idx in zip(("even", "odd"), acquisition_halves(views), strict=True):
        base = sibling(prefix, f"_eoa_{half}")
        out[half] = copy_views(sorted_stack, sibling(base, ".mrc"), idx, overwrite=overwrite,
                               label=f"cryocare-torch: {half} acquisition numbers")
        out[f"{half}_tlt"] = write_tlt(sibling(base, ".tlt"), ang[idx], overwrite=overwrite)
        if xf is not None:
            out[f"{half}_xf"] = write_xf(sibling(base, ".xf"), np.asarray(xf)[idx], overwrite=overwrite)
    return out
