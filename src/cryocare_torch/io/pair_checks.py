"""Can two halves be a Noise2Noise pair? One cheap content check, run before any long work.

Noise2Noise needs the same object twice with independent noise. The check reads a central crop of each
half (at most ``CROP`` voxels along each axis of a volume, ``CROP_2D`` pixels of up to ``MAX_IMAGES``
images of a stack; a few MB even for a 4 GB tomogram) and a sparse strided sample of the whole file,
then decides:

* **no variance** (all zeros, a constant: a failed reconstruction): refused;
* **identical data** under two names: refused;
* **noise shared** between the halves: their correlation over the outer shells (``0.4 - 0.5``
  cycles/pixel) stays high, where independent halves fall to about 0 (there is little signal at
  Nyquist). Refused at ``>= SHARED_REFUSE`` (e.g. the same reconstruction filtered twice), a warning at
  ``>= SHARED_WARN`` (e.g. the full reconstruction paired with one of its halves gives ~0.71);
* **not the same object** (two different tomograms, a misregistered or contrast-inverted half): their
  correlation at low resolution (``0 < r <= LOW_BAND`` cycles/pixel, the shells that carry most signal)
  is indistinguishable from 0, or negative: refused below ``max(LOW_MIN, 3 sigma)`` with ``sigma`` the
  correlation's spread for independent data (``1 / sqrt(independent Fourier voxels in the band)``); not
  judged on crops too small for ``3 sigma <= LOW_JUDGE``.

Measured on synthetic halves (a smooth random structure of unit std, Gaussian-filtered white noise with
sigma 2.5 voxels, plus white noise of std 1, 3 or 10; 64x160x160): independent halves gave outer 0.00 and
low 0.99 / 0.95 / 0.63; shared noise outer 1.00; full reconstruction + half outer 0.71; two structures low
0.00; inverted contrast low -0.99 / -0.95 / -0.64; the refusal threshold there is 0.10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .mrc import VolumeMeta
from .mrc_header import warn_once
from .volumes import open_volume, read_volume_meta

CROP = 160
CROP_2D = 512
MAX_IMAGES = 4
SAMPLE_LINES = 64
OUTER_BAND = (0.4, 0.5)
LOW_BAND = 0.1
SHARED_REFUSE = 0.9
SHARED_WARN = 0.6
LOW_MIN = 0.1
LOW_JUDGE = 0.3
"""The low band is judged only when ``3 sigma <= LOW_JUDGE`` (at least 100 Fourier voxels; ~40^3 voxels)."""


@dataclass(frozen=True)
class PairEvidence:
    """The figures the decision rests on (see the module docstring)."""

    outer_fsc: float
    """Correlation over ``OUTER_BAND`` (cycles/pixel); NaN when the band holds no power."""
    low_fsc: float
    """Correlation over ``0 < r <= LOW_BAND`` cycles/pixel."""
    low_threshold: float
    """``max(LOW_MIN, 3 sigma)`` for this crop."""


def _tukey(n: int, frac: float = 0.2) -> np.ndarray:
    w = np.ones(n)
    m = int(frac * n / 2)
    if m > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
        w[:m], w[n - m :] = ramp, ramp[::-1]
    return w


def _spectrum(a: np.ndarray, nd: int) -> np.ndarray:
    """Windowed, mean-removed real FFT over the last ``nd`` axes."""
    x = a.astype(np.float64) - a.mean(axis=tuple(range(-nd, 0)), keepdims=True)
    for k in range(1, nd + 1):
        shape = [1] * x.ndim
        shape[-k] = x.shape[-k]
        x = x * _tukey(x.shape[-k]).reshape(shape)
    return np.fft.rfftn(x, axes=tuple(range(-nd, 0)))


def _radius(shape: tuple[int, ...]) -> np.ndarray:
    """Frequency radius (cycles/pixel) of each voxel of an ``rfftn`` of ``shape``."""
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def band_correlations(even: np.ndarray, odd: np.ndarray, nd: int) -> PairEvidence:
    """Outer- and low-band correlations of two crops (the last ``nd`` axes are spatial; leading axes pool)."""
    fe, fo = _spectrum(even, nd), _spectrum(odd, nd)
    r = _radius(even.shape[-nd:])
    cross = (fe * fo.conj()).real
    pe, po = np.abs(fe) ** 2, np.abs(fo) ** 2

    def corr(mask: np.ndarray) -> float:
        den = math.sqrt(float(pe[..., mask].sum()) * float(po[..., mask].sum()))
        return float(cross[..., mask].sum()) / den if den > 0 else float("nan")

    low = (r > 0) & (r <= LOW_BAND)
    n_images = int(np.prod(even.shape[:-nd])) if even.ndim > nd else 1
    sigma = 1.0 / math.sqrt(max(1.0, n_images * float(low.sum())))  # rfft keeps one of each Hermitian pair
    outer = (r >= OUTER_BAND[0]) & (r <= OUTER_BAND[1])
    return PairEvidence(corr(outer), corr(low), max(LOW_MIN, 3.0 * sigma))


def _central(n: int, size: int) -> slice:
    k = min(n, size)
    return slice((n - k) // 2, (n - k) // 2 + k)


def _spread(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def read_crops(path: Path, meta: VolumeMeta) -> tuple[np.ndarray, np.ndarray, int]:
    """``(central crop, strided sample of the whole file, spatial dims)``; reads a few MB at most."""
    arr, _ = open_volume(path)  # MRC/TIFF memmap or chunked Zarr: only the sampled parts are read
    if arr.ndim == 2:
        crop = np.asarray(arr[_central(arr.shape[0], CROP_2D), _central(arr.shape[1], CROP_2D)])
        nd = 2
    elif meta.is_stack:
        idx = _spread(arr.shape[0], MAX_IMAGES)
        crop = np.stack([np.asarray(arr[i, _central(arr.shape[1], CROP_2D), _central(arr.shape[2], CROP_2D)])
                         for i in idx])
        nd = 2
    else:
        crop = np.asarray(arr[tuple(_central(n, CROP) for n in arr.shape)])
        nd = 3
    step = max(1, arr.shape[-1] // 256)
    if arr.ndim == 2:
        sample = np.asarray(arr[_spread(arr.shape[0], SAMPLE_LINES), ::step])
    else:  # slice by slice: only the sampled rows are read
        rows = _spread(arr.shape[1], SAMPLE_LINES)
        sample = np.stack([np.asarray(arr[z][rows, ::step]) for z in _spread(arr.shape[0], SAMPLE_LINES // 4)])
    return crop.astype(np.float32), sample.astype(np.float32), nd


def check_pair_content(even: Path, odd: Path, log_warning: bool = True) -> PairEvidence | None:
    """Refuse (:class:`DataError`, one line naming the file) a pair that cannot be a Noise2Noise pair.

    Returns the evidence, or None when a half is too small to judge (under 8 pixels along an axis) or holds
    NaN/infinite values (refused where the data are read, naming the item). Warns (one ``warning:`` line,
    once per pair) when the outer-shell correlation suggests partly shared noise.
    """
    me, mo = read_volume_meta(even), read_volume_meta(odd)
    (ce, se, nd), (co, so, _) = read_crops(even, me), read_crops(odd, mo)
    if not all(np.isfinite(a).all() for a in (ce, se, co, so)):
        return None  # not judged here: reading the data reports NaN in the file and the item where it is
    for path, crop, sample in ((even, ce, se), (odd, co, so)):
        if float(crop.std()) == 0.0 and float(sample.std()) == 0.0:
            raise DataError(f"has no variance (constant: every sampled value is {float(crop.flat[0]):g}): a failed "
                            f"or empty reconstruction; this half cannot be used", path)
    if np.array_equal(ce, co) and np.array_equal(se, so):
        raise DataError(f"is identical to {even} (the same half under two names?); give the even and the odd "
                        f"half (independent noise)", odd)
    if min(ce.shape[-nd:]) < 8:
        return None
    ev = band_correlations(ce, co, nd)
    if ev.outer_fsc >= SHARED_REFUSE:
        raise DataError(f"and {even} share their noise: correlation {ev.outer_fsc:.2f} over the outer shells "
                        f"(0.4-0.5 cycles/pixel), where independent halves give ~0; Noise2Noise would learn the "
                        f"noise. Give halves reconstructed from disjoint frames or tilts", odd)
    if ev.low_threshold <= LOW_JUDGE and ev.low_fsc < ev.low_threshold:
        what = "opposite contrast" if ev.low_fsc <= -ev.low_threshold else "not the same object"
        raise DataError(f"and {even} look like {what}: correlation {ev.low_fsc:.2f} at low resolution "
                        f"(0-{LOW_BAND} cycles/pixel; halves of one tomogram give well above "
                        f"{ev.low_threshold:.2f}); pair the halves of the same reconstruction", odd)
    if log_warning and ev.outer_fsc >= SHARED_WARN:
        warn_once(f"warning: {even} and {odd} may share part of their noise: correlation {ev.outer_fsc:.2f} over "
                  f"the outer shells (0.4-0.5 cycles/pixel), where independent halves give ~0 (the full "
                  f"reconstruction and one half give ~0.71); the restoration will keep that noise",
                  "cryocare_torch.io.pairs")
    return ev
