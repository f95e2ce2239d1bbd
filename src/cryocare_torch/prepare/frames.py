"""Frame sums of dose-fractionated movies: the independent halves every cryo-CARE regime trains on.

* :func:`frame_sums` -> :class:`FrameSums` from a ``(t, h, w)`` movie and optional drift:
  ``even`` = aligned sum of frames 0, 2, 4, ...; ``odd`` = aligned sum of frames 1, 3, 5, ...;
  ``full`` = ``even + odd``; ``first_half`` / ``second_half`` = sums of frames ``[0, t//2)`` and
  ``[t//2, t)`` **without alignment** (the P2P-ip regime of Buchholz et al. 2019, where the two
  halves of the exposure are summed as recorded; with an odd ``t`` the middle frame goes to the second
  half). With an odd ``t`` ``even`` holds one frame more than ``odd``.
* Alignment applies ``-drift`` (see :mod:`cryocare_torch.prepare.motion`) by Fourier shifting, which is
  circular: within ``max |drift|`` pixels of a border the aligned sums contain wrapped-around content.
* :func:`shift_frames` (re-exported by :mod:`~cryocare_torch.prepare.motion`) moves frame content by
  sub-pixel shifts in Fourier space.
* :func:`motion_correct_file` (one movie -> five MRC images + shifts CSV) and
  :func:`motion_correct_tilt_series` (one movie per tilt -> five ``(n, h, w)`` stacks + CSV, the input of
  T2T-df) are the thin file wrappers; every output is checked before any work and written atomically.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..io.atomic import atomic_write_text, check_output
from ..io.mrc import VolumeMeta, VolumeWriter, write_volume

SUM_KINDS = ("even", "odd", "sum", "firsthalf", "secondhalf")


def validate_frames(frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
    """Check the shape of a ``(t, h, w)`` movie; raises :class:`DataError` with a one-line reason.

    Finiteness is checked frame by frame where the frames are read anyway (a full pass costs seconds on 4k).
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 3:
        raise DataError(f"{name} must be a (t, h, w) movie, got shape {tuple(frames.shape)}")
    t, h, w = frames.shape
    if t < 2 or h < 16 or w < 16:
        raise DataError(f"{name} has {t} frame(s) of {h}x{w} pixels; at least 2 frames of 16x16 are needed")
    return frames


def check_finite(value: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` when ``value`` (e.g. a frame's sum: NaN/inf propagate) is not finite."""
    if not bool(torch.isfinite(value).all()):
        raise DataError(f"{what} contains NaN or infinite values; fix or mask the movie first")


def _freqs(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rFFT frequency grids (cycles per pixel), shapes ``(h, 1)`` and ``(1, w//2+1)``, float64."""
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64)[None, :]
    return fy, fx


def _phase(shifts: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """``exp(-2 pi i k.s)``: multiplying a spectrum by it moves the content by ``+s``; ``(t, h, w//2+1)``.

    Built as the outer product of a column and a row phase (separable), so only ``t (h + w)`` sines.
    """
    s = shifts.to(torch.float64)
    one = torch.ones((), dtype=torch.float64, device=s.device)
    py = torch.polar(one, -2.0 * math.pi * s[:, 0, None, None] * fy).to(torch.complex64)  # (t, h, 1)
    px = torch.polar(one, -2.0 * math.pi * s[:, 1, None, None] * fx).to(torch.complex64)  # (t, 1, w')
    return py * px


def _good_size(n: int) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3 and 5 (fast FFT size)."""
    n = max(2, int(math.ceil(n)))
    n += n % 2
    while not any(n == 2**a * 3**b * 5**c for a in range(1, 16) for b in range(10) for c in range(7)):
        n += 2
    return n


def _crop_spectrum(spec: torch.Tensor, h2: int, w2: int) -> torch.Tensor:
    """Keep the lowest ``h2 x (w2//2+1)`` frequencies of an rFFT spectrum (Fourier binning)."""
    top = spec[..., : h2 // 2, : w2 // 2 + 1]
    bottom = spec[..., spec.shape[-2] - h2 // 2 :, : w2 // 2 + 1]
    return torch.cat([top, bottom], dim=-2)


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move the content of each frame by ``shifts[i] = (dy, dx)`` pixels (Fourier shift, circular).

    ``out[i](r) = frames[i](r - shifts[i])``; content leaving one border re-enters at the opposite one.
    Integer shifts are exact (a circular roll up to float32 rounding); sub-pixel shifts are band-limited
    interpolation, the Nyquist row/column of even sizes is attenuated by ``cos(pi * frac)``.
    Accepts ``(h, w)`` with ``shifts`` of shape ``(2,)``, or ``(t, h, w)`` with ``(t, 2)``. Returns float32.
    """
    single = frames.ndim == 2
    x = frames[None] if single else frames
    s = torch.as_tensor(shifts, dtype=torch.float64, device=x.device).reshape(-1, 2)
    if x.ndim != 3 or s.shape[0] != x.shape[0]:
        raise DataError(f"shift_frames needs (t, h, w) frames and (t, 2) shifts, got {tuple(frames.shape)} "
                        f"and {tuple(torch.as_tensor(shifts).shape)}")
    h, w = x.shape[-2:]
    fy, fx = _freqs(h, w, x.device)
    spec = torch.fft.rfft2(x.to(torch.float32)) * _phase(s, fy, fx)
    out = torch.fft.irfft2(spec, s=(h, w))
    return out[0] if single else out


@dataclass(frozen=True)
class FrameSums:
    """Float32 ``(h, w)`` sums of one movie (see module docs for what each holds)."""

    even: torch.Tensor
    odd: torch.Tensor
    full: torch.Tensor
    first_half: torch.Tensor
    second_half: torch.Tensor
    n_frames: int

    def by_kind(self) -> dict[str, torch.Tensor]:
        """The sums keyed by output-file suffix: even, odd, sum, firsthalf, secondhalf."""
        return {"even": self.even, "odd": self.odd, "sum": self.full,
                "firsthalf": self.first_half, "secondhalf": self.second_half}


def frame_sums(frames: torch.Tensor, shifts: torch.Tensor | None = None) -> FrameSums:
    """Even/odd/full aligned sums and unaligned first/second-half sums of a ``(t, h, w)`` movie.

    ``shifts`` is the ``(t, 2)`` drift from :func:`~cryocare_torch.prepare.motion.estimate_drift`
    (pixels; each frame is moved by ``-shifts[i]``); ``None`` sums without alignment.
    Frames are converted to float32 one at a time, so integer movies need no float copy.
    """
    frames = validate_frames(torch.as_tensor(frames))
    t, h, w = frames.shape
    dev = frames.device
    if shifts is not None:
        shifts = torch.as_tensor(shifts, dtype=torch.float64, device=dev)
        if shifts.shape != (t, 2):
            raise DataError(f"shifts must have shape ({t}, 2) for a {t}-frame movie, got {tuple(shifts.shape)}")
        if not bool(torch.isfinite(shifts).all()):
            raise DataError("shifts contain NaN or infinite values")
    half = t // 2
    first = torch.zeros((h, w), dtype=torch.float32, device=dev)
    second = torch.zeros_like(first)
    if shifts is None:
        acc = [torch.zeros_like(first), torch.zeros_like(first)]
    else:
        fy, fx = _freqs(h, w, dev)
        acc = [torch.zeros((h, w // 2 + 1), dtype=torch.complex64, device=dev) for _ in range(2)]
    for i in range(t):
        frame = frames[i].to(torch.float32)
        (first if i < half else second).add_(frame)
        acc[i % 2].add_(frame if shifts is None else torch.fft.rfft2(frame) * _phase(-shifts[i : i + 1], fy, fx)[0])
    if shifts is not None:
        acc = [torch.fft.irfft2(a, s=(h, w)) for a in acc]
    even, odd = acc
    check_finite(first.sum() + second.sum(), "the movie")
    return FrameSums(even=even, odd=odd, full=even + odd, first_half=first, second_half=second, n_frames=t)


def _output_paths(prefix: Path, kinds: tuple[str, ...] = SUM_KINDS) -> dict[str, Path]:
    paths = {k: prefix.with_name(f"{prefix.name}_{k}.mrc") for k in kinds}
    paths["shifts"] = prefix.with_name(f"{prefix.name}_shifts.csv")
    return paths


def _load_movie(path: Path, gain: np.ndarray | None, gain_flip: str,
                gain_rotation: int) -> tuple[torch.Tensor, float | None]:
    from ..io.movie import apply_gain, read_movie

    frames, meta = read_movie(path)
    if gain is not None:
        frames = apply_gain(frames, gain, flip=gain_flip, rotation_k=gain_rotation)  # type: ignore[arg-type]
    if frames.dtype.kind not in "fiu" or frames.dtype == np.uint32:
        frames = frames.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(frames)), meta.pixel_size


def _read_gain(gain: str | Path | None) -> np.ndarray | None:
    from ..io.movie import read_gain

    return None if gain is None else read_gain(gain)


_CSV_COLUMNS = "dy_px,dx_px,group_size,peak_z,reliable"


def _estimate(frames: torch.Tensor, pixel_size: float | None, options: dict[str, Any]) -> Any:
    from .motion import estimate_drift_detailed  # motion imports this module

    return estimate_drift_detailed(frames, pixel_size=pixel_size, **options)


def _rows(est: Any) -> list[tuple[Any, ...]]:
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
    gain_flip: str = "none",
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
    movies: list[str | Path],
    *,
    output_prefix: str | Path,
    gain: str | Path | None = None,
    gain_flip: str = "none",
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
