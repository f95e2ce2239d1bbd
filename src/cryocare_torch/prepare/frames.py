"""Motion correction of movie files: drift, frame sums, MRC outputs (the file wrappers).

* The sums themselves are :func:`cryocare_torch.tomo.frames.frame_sums` (pure tensors), the drift
  :func:`cryocare_torch.prepare.motion.estimate_drift_detailed`.
* :func:`motion_correct_file` (one movie -> five MRC images + shifts CSV) and
  :func:`motion_correct_tilt_series` (one movie per tilt -> five ``(n, h, w)`` stacks + CSV, the input of
  T2T-df); every output is checked before any work and written atomically.
* Before the drift is estimated, each movie is gain-corrected (the orientation given is checked against
  the 8 possible on the first movie, :func:`~cryocare_torch.prepare.defects.check_gain_orientation`) and its
  hot/dead pixels are replaced (:func:`~cryocare_torch.prepare.defects.find_defect_pixels`). Problems are
  printed as one ``warning:`` line each.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import MotionConfig
from ..errors import DataError
from ..io.atomic import atomic_write_text, check_output
from ..io.movie import Flip, apply_gain, read_gain, read_movie
from ..io.mrc import VolumeMeta, VolumeWriter, write_volume
from ..tomo.frames import frame_sums
from .defects import check_gain_orientation, fill_defect_pixels, find_defect_pixels
from .motion import DriftEstimate, estimate_drift_detailed

SUM_KINDS = ("even", "odd", "sum", "firsthalf", "secondhalf")
_CSV_COLUMNS = "dy_px,dx_px,group_size,peak_z,error_px,reliable"


def _warn(line: str) -> None:
    if line:
        print(line, file=sys.stderr)


def _output_paths(prefix: Path, kinds: tuple[str, ...] = SUM_KINDS) -> dict[str, Path]:
    paths = {k: prefix.with_name(f"{prefix.name}_{k}.mrc") for k in kinds}
    paths["shifts"] = prefix.with_name(f"{prefix.name}_shifts.csv")
    return paths


def _load_movie(path: Path, gain: np.ndarray | None, gain_flip: Flip, gain_rotation: int, *, check_gain: bool,
                defects: bool, defect_z: float) -> tuple[torch.Tensor, float | None]:
    """Frames (gain-corrected, defects filled) and the pixel size; warnings go to stderr."""
    frames, meta = read_movie(path)
    if gain is not None:
        if check_gain:
            raw_sum = np.asarray(frames, dtype=np.float64).sum(axis=0)
            _warn(check_gain_orientation(raw_sum, gain, gain_flip, gain_rotation, name=path.name))
        frames = apply_gain(frames, gain, flip=gain_flip, rotation_k=gain_rotation)
    if frames.dtype.kind not in "fiu" or frames.dtype == np.uint32:
        frames = frames.astype(np.float32)
    movie = torch.from_numpy(np.ascontiguousarray(frames))
    if defects:
        found = find_defect_pixels(movie, z=defect_z)
        if found.n_hot + found.n_dead:
            movie = fill_defect_pixels(movie, found.mask)
            frac = (found.n_hot + found.n_dead) / found.mask.numel()
            if frac > 1e-3:
                _warn(f"warning: {path.name}: {found.n_hot} hot and {found.n_dead} dead pixels "
                      f"({100 * frac:.2f}% of the frame) replaced by their neighbours' mean; check the gain reference")
    return movie, meta.pixel_size


def _rows(est: DriftEstimate) -> list[tuple[Any, ...]]:
    """Per-frame rows: frame, dy, dx, frames per window, that window's peak z, estimated error, reliable."""
    z = est.peak_z
    return [(i, float(dy), float(dx), est.group_size, float(z[min(i, len(z) - 1)]), float(est.frame_error[i]),
             int(est.frame_reliable[i])) for i, (dy, dx) in enumerate(est.shifts.tolist())]


def _shifts_csv(rows: list[tuple[Any, ...]], header: str) -> str:
    return header + "\n" + "".join(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + "\n"
                                   for r in rows)


def _estimate(frames: torch.Tensor, px: float | None, m: MotionConfig, name: str) -> DriftEstimate:
    est = estimate_drift_detailed(frames, pixel_size=px, bfactor=m.bfactor, group=m.group, max_error=m.max_error,
                                  error_fraction=m.error_fraction)
    _warn(f"{est.message.replace('warning: ', f'warning: {name}: ', 1)}" if est.message else "")
    return est


def _loader(gain: str | Path | None, gain_flip: Flip, gain_rotation: int,
            m: MotionConfig) -> Callable[[Path, bool], tuple[torch.Tensor, float | None]]:
    gain_img = None if gain is None else read_gain(gain)

    def load(path: Path, first: bool) -> tuple[torch.Tensor, float | None]:
        return _load_movie(path, gain_img, gain_flip, gain_rotation, check_gain=m.check_gain and first,
                           defects=m.defects, defect_z=m.defect_z)

    return load


def motion_correct_file(
    movie_path: str | Path,
    *,
    output_prefix: str | Path,
    gain: str | Path | None = None,
    gain_flip: Flip = "none",
    gain_rotation: int = 0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    motion: MotionConfig | None = None,
) -> dict[str, Path]:
    """Motion-correct one movie; write ``<prefix>_{even,odd,sum,firsthalf,secondhalf}.mrc`` and ``_shifts.csv``.

    ``gain`` (MRC/TIFF) is oriented by ``gain_flip`` ("none", "x", "y") and ``gain_rotation`` (quarter
    turns) as in :func:`cryocare_torch.io.movie.apply_gain` and checked against the other 7 orientations
    (``motion.check_gain``); hot/dead pixels beyond ``motion.defect_z`` spreads are replaced before anything else
    (``motion.defects``). ``pixel_size`` (A) overrides the movie's (header or ``.mdoc``); unknown pixel sizes are
    written as 0. The drift settings of ``motion`` (:class:`~cryocare_torch.config.MotionConfig`, default: its
    defaults) go to :func:`~cryocare_torch.prepare.motion.estimate_drift_detailed`. The CSV has one row per frame:
    frame, dy_px, dx_px (drift; the frame was moved by minus it), group_size, peak_z (of the window starting at that
    frame), error_px (estimated error of that frame's drift), reliable (0: the frame's error exceeds the limit,
    or the movie was left unshifted). Returns the written paths by kind.
    """
    movie_path, prefix = Path(movie_path), Path(output_prefix)
    paths = _output_paths(prefix)
    inputs = [movie_path] + ([Path(gain)] if gain is not None else [])
    for p in paths.values():
        check_output(p, overwrite=overwrite, inputs=inputs)
    motion = motion or MotionConfig()
    load = _loader(gain, gain_flip, gain_rotation, motion)
    frames, meta_px = load(movie_path, True)
    px = pixel_size if pixel_size is not None else meta_px
    est = _estimate(frames, px, motion, movie_path.name)
    sums = frame_sums(frames, est.shifts)
    label = f"cryocare-torch motion-corrected {sums.n_frames} frames of {movie_path.name}"[:80]
    for kind, image in sums.by_kind().items():
        write_volume(paths[kind], image.cpu().numpy(), voxel_size=px or 0.0, overwrite=overwrite, inputs=inputs,
                     label=label)
    atomic_write_text(paths["shifts"], _shifts_csv(_rows(est), "frame," + _CSV_COLUMNS), overwrite=overwrite)
    return paths


def motion_correct_tilt_series(
    movies: Sequence[str | Path],
    *,
    output_prefix: str | Path,
    gain: str | Path | None = None,
    gain_flip: Flip = "none",
    gain_rotation: int = 0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    motion: MotionConfig | None = None,
) -> dict[str, Path]:
    """Motion-correct one movie per tilt into ``(n, h, w)`` stacks, one slice per movie in the order given.

    Writes ``<prefix>_{even,odd,sum,firsthalf,secondhalf}.mrc`` (MRC image stacks) slice by slice, so memory
    holds one movie at a time, and ``<prefix>_shifts.csv`` (tilt, frame, then as for one movie). Options as for
    :func:`motion_correct_file`; the pixel size is taken from the first movie unless given.
    """
    movie_paths = [Path(m) for m in movies]
    if not movie_paths:
        raise DataError("no movies given; pass one movie per tilt, in tilt-series order")
    prefix = Path(output_prefix)
    paths = _output_paths(prefix)
    inputs = movie_paths + ([Path(gain)] if gain is not None else [])
    for p in paths.values():
        check_output(p, overwrite=overwrite, inputs=inputs)
    motion = motion or MotionConfig()
    load = _loader(gain, gain_flip, gain_rotation, motion)
    n = len(movie_paths)
    rows: list[tuple[Any, ...]] = []
    with contextlib.ExitStack() as stack:
        writers: dict[str, VolumeWriter] = {}
        shape: tuple[int, int] | None = None
        px = pixel_size
        for k, mpath in enumerate(movie_paths):
            frames, meta_px = load(mpath, k == 0)
            if shape is None:
                shape = (int(frames.shape[1]), int(frames.shape[2]))
                px = px if px is not None else meta_px
                meta = VolumeMeta(shape=(n, *shape), voxel_size=(px or 0.0,) * 3, is_stack=True)
                for kind in SUM_KINDS:
                    writers[kind] = stack.enter_context(VolumeWriter(
                        paths[kind], (n, *shape), meta, overwrite=overwrite, inputs=inputs,
                        label=f"cryocare-torch motion-corrected {kind} tilt series"))
            elif tuple(frames.shape[1:]) != shape:
                raise DataError(f"frames are {tuple(frames.shape[1:])} but the first movie's are {shape}; "
                                "all movies of a tilt series must have the same frame size", mpath)
            est = _estimate(frames, px, motion, mpath.name)
            sums = frame_sums(frames, est.shifts)
            for kind, image in sums.by_kind().items():
                writers[kind].write_slab(k, image.cpu().numpy()[None])
            rows.extend((k, *r) for r in _rows(est))
        atomic_write_text(paths["shifts"], _shifts_csv(rows, "tilt,frame," + _CSV_COLUMNS), overwrite=overwrite)
    return paths
