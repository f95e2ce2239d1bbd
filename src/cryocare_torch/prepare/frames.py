"""Motion correction of movie files: drift, frame sums, MRC outputs (the file wrappers).

* The sums themselves are :func:`cryocare_torch.tomo.frames.frame_sums` (pure tensors), the drift
  :func:`cryocare_torch.prepare.motion.estimate_drift_detailed`.
* :func:`motion_correct_file` (one movie -> five MRC images + shifts CSV) and
  :func:`motion_correct_tilt_series` (one movie per tilt -> five ``(n, h, w)`` stacks + CSV, the input of
  T2T-df) are the thin file wrappers; every output is checked before any work and written atomically.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..io.atomic import atomic_write_text, check_output
from ..io.movie import Flip, apply_gain, read_gain, read_movie
from ..io.mrc import VolumeMeta, VolumeWriter, write_volume
from ..tomo.frames import frame_sums
from .motion import DriftEstimate, estimate_drift_detailed

SUM_KINDS = ("even", "odd", "sum", "firsthalf", "secondhalf")


def _output_paths(prefix: Path, kinds: tuple[str, ...] = SUM_KINDS) -> dict[str, Path]:
    paths = {k: prefix.with_name(f"{prefix.name}_{k}.mrc") for k in kinds}
    paths["shifts"] = prefix.with_name(f"{prefix.name}_shifts.csv")
    return paths


def _load_movie(path: Path, gain: np.ndarray | None, gain_flip: Flip,
                gain_rotation: int) -> tuple[torch.Tensor, float | None]:
    frames, meta = read_movie(path)
    if gain is not None:
        frames = apply_gain(frames, gain, flip=gain_flip, rotation_k=gain_rotation)
    if frames.dtype.kind not in "fiu" or frames.dtype == np.uint32:
        frames = frames.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(frames)), meta.pixel_size


def _read_gain(gain: str | Path | None) -> np.ndarray | None:
    return None if gain is None else read_gain(gain)


_CSV_COLUMNS = "dy_px,dx_px,group_size,peak_z,reliable"


def _estimate(frames: torch.Tensor, pixel_size: float | None, options: dict[str, Any]) -> DriftEstimate:
    return estimate_drift_detailed(frames, pixel_size=pixel_size, **options)


def _rows(est: DriftEstimate) -> list[tuple[Any, ...]]:
    """Per-frame CSV rows: frame, dy, dx, frames per aligned group, that group's peak z-score, reliable."""
    g = est.group_size
    return [(i, float(dy), float(dx), g, float(est.peak_z[min(i // g, len(est.peak_z) - 1)]), int(est.reliable))
            for i, (dy, dx) in enumerate(est.shifts.tolist())]


def _shifts_csv(rows: list[tuple[Any, ...]], header: str) -> str:
    return header + "\n" + "".join(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + "\n"
                                   for r in rows)


def motion_correct_file(
    movie_path: str | Path,
    *,
    output_prefix: str | Path,
    gain: str | Path | None = None,
    gain_flip: Flip = "none",
    gain_rotation: int = 0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    **drift_options: Any,
) -> dict[str, Path]:
    """Motion-correct one movie; write ``<prefix>_{even,odd,sum,firsthalf,secondhalf}.mrc`` and ``_shifts.csv``.

    ``gain`` (MRC/TIFF) is oriented by ``gain_flip`` ("none", "x", "y") and ``gain_rotation`` (quarter
    turns) as in :func:`cryocare_torch.io.movie.apply_gain`. ``pixel_size`` (A) overrides the movie's
    (header or ``.mdoc``); unknown pixel sizes are written as 0. ``drift_options`` go to
    :func:`~cryocare_torch.prepare.motion.estimate_drift_detailed`. The CSV has one row per frame: frame,
    dy_px, dx_px (drift; the frame was moved by minus it), group_size, peak_z, reliable (0: too weak to
    measure, no correction applied). Returns the written paths by kind.
    """
    movie_path, prefix = Path(movie_path), Path(output_prefix)
    paths = _output_paths(prefix)
    inputs = [movie_path] + ([Path(gain)] if gain is not None else [])
    for p in paths.values():
        check_output(p, overwrite=overwrite, inputs=inputs)
    frames, meta_px = _load_movie(movie_path, _read_gain(gain), gain_flip, gain_rotation)
    px = pixel_size if pixel_size is not None else meta_px
    est = _estimate(frames, px, drift_options)
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
    **drift_options: Any,
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
    gain_img = _read_gain(gain)
    n = len(movie_paths)
    rows: list[tuple[Any, ...]] = []
    with contextlib.ExitStack() as stack:
        writers: dict[str, VolumeWriter] = {}
        shape: tuple[int, int] | None = None
        px = pixel_size
        for k, mpath in enumerate(movie_paths):
            frames, meta_px = _load_movie(mpath, gain_img, gain_flip, gain_rotation)
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
            est = _estimate(frames, px, drift_options)
            sums = frame_sums(frames, est.shifts)
            for kind, image in sums.by_kind().items():
                writers[kind].write_slab(k, image.cpu().numpy()[None])
            rows.extend((k, *r) for r in _rows(est))
        atomic_write_text(paths["shifts"], _shifts_csv(rows, "tilt,frame," + _CSV_COLUMNS), overwrite=overwrite)
    return paths
