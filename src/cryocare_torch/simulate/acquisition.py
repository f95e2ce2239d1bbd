"""Tilt-series acquisition: tilt scheme, dose bookkeeping, image formation and dose-fractionated counting.

For each tilt ``theta`` and frame ``f`` (exposure ``N_f`` accumulated before the middle of the frame)::

    phi      = sigma * contrast_scale * (projected potential)            phase, rad (mean removed)
    g_f      = 2 * F^-1[ CTF(k) * exp(-N_f / (2 Ne(k))) * F[phi] ]       CTF + Grant & Grigorieff fading
    lambda_f = dose / n_frames * pixel_size^2 * T(theta) * exp(-g_f)     expected electrons per pixel
    frame_f  ~ Poisson(lambda_f)

``T(theta) = exp(-t / (cos(theta) * mfp))`` is the zero-loss (energy-filtered) fraction for ice thickness
``t``. Frames are split into even (0, 2, 4, ...) and odd (1, 3, 5, ...) sums, as for cryo-CARE.
Each tilt has its own defocus (``defocus_um`` plus a uniform offset within ``defocus_spread_um``; recorded in
:attr:`TiltSeries.defocus_um`), and with ``defocus_gradient`` it changes across the tilted image
(:func:`~cryocare_torch.simulate.ctf.column_defocus`, tilt axis along y).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SimulateConfig
from ..errors import ConfigError
from ..fourier import fourier_shift
from ..tomo.projector import project
from .ctf import (
    column_defocus,
    column_weights,
    ctf_2d,
    defocus_samples,
    exposure_filter,
    frequency_grid,
    interaction_constant,
)
from .detector import Detector
from .phantom import Phantom

FILTER_MARGIN = 16
"""Extra detector pixels (x) and reflected rows (y) around the field of view for CTF delocalisation."""

Projector = Callable[..., torch.Tensor]


def tilt_angles(cfg: SimulateConfig) -> torch.Tensor:
    """Tilt angles from ``tilt_min`` to ``tilt_max`` in steps of ``tilt_step`` (degrees, ascending)."""
    n = int(math.floor((cfg.tilt_max - cfg.tilt_min) / cfg.tilt_step + 1e-6)) + 1
    if n < 2:
        raise ConfigError(
            f"simulate: tilt range {cfg.tilt_min}..{cfg.tilt_max} with step {cfg.tilt_step} gives fewer than 2 tilts"
        )
    return torch.tensor([round(cfg.tilt_min + i * cfg.tilt_step, 6) for i in range(n)], dtype=torch.float32)


def acquisition_order(angles: torch.Tensor, scheme: str = "dose_symmetric", group: int = 2) -> torch.Tensor:
    """Rank (0 = first exposed) of each tilt of ``angles`` (ascending) under an acquisition ``scheme``.

    * ``dose_symmetric`` (Hagen et al. 2017, as SerialEM does it with a group size): start at the tilt
      nearest 0, take one step to the positive side, then alternate sides taking ``group`` tilts at a
      time: group 2 gives 0, +3, -3, -6, +6, +9, -9, -12, ...; group 1 gives 0, +3, -3, +6, -6, ...
    * ``bidirectional``: from the tilt nearest 0 to the positive end, then from there to the negative end.
    * ``sequential``: from the most negative tilt to the most positive one.
    """
    a = angles.tolist()
    n = len(a)
    start = int(np.argmin(np.abs(np.asarray(a))))
    pos, neg = list(range(start + 1, n)), list(range(start - 1, -1, -1))
    if scheme == "sequential":
        seq = list(range(n))
    elif scheme == "bidirectional":
        seq = [start] + pos + neg
    elif scheme == "dose_symmetric":
        seq = [start] + pos[:1]
        pos = pos[1:]
        side = 0
        while pos or neg:
            take = neg if side == 0 else pos
            other = pos if side == 0 else neg
            chunk = (take or other)[:group]
            del (take or other)[:group]
            seq += chunk
            side ^= 1
    else:
        raise ConfigError(f"unknown tilt order '{scheme}'; use dose_symmetric, bidirectional or sequential")
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.tensor(seq)] = torch.arange(n)
    return rank


def required_lateral_pad(shape: tuple[int, int, int], max_tilt_deg: float, margin: int = FILTER_MARGIN) -> int:
    """Padding in x so that rays reaching a ``w + 2 * margin`` detector stay inside the phantom at every tilt."""
    d, _, w = shape
    t = math.radians(min(abs(max_tilt_deg), 85.0))
    reach = (w / 2 + margin) / math.cos(t) + d / 2 * math.tan(t)
    return int(math.ceil(reach - w / 2)) + 2


def zero_loss_fraction(angles_deg: torch.Tensor, thickness_nm: float, voltage_kv: float) -> torch.Tensor:
    """Fraction of electrons that pass the energy filter, ``exp(-t / (cos(theta) mfp))``.

    Inelastic mean free path in ice ~350 nm at 300 kV (scaled roughly with voltage^0.7).
    """
    mfp = 350.0 * (voltage_kv / 300.0) ** 0.7
    return torch.exp(-thickness_nm / (torch.cos(torch.deg2rad(angles_deg.double())) * mfp)).float()


@dataclass
class TiltSeries:
    """A simulated tilt series, tilts sorted by angle; images are electron counts ``(n, h, w)``."""

    angles: torch.Tensor
    order: torch.Tensor
    """(n,) acquisition rank of each tilt (0 = first exposed)."""
    prior_dose: torch.Tensor
    """(n,) e-/A^2 received before each tilt."""
    dose_per_tilt: float
    pixel_size: float
    mean_counts: torch.Tensor
    """(n,) expected electrons per pixel of the full exposure over vacuum-phase ice (dose * px^2 * T)."""
    clean: torch.Tensor
    """Noise-free expected counts of the full exposure (all frames)."""
    even: torch.Tensor
    odd: torch.Tensor
    full: torch.Tensor
    n_frames: int
    frame_drift: torch.Tensor
    """(n, n_frames, 2) drift (dy, dx) in pixels applied to each frame."""
    frames: torch.Tensor | None = None
    """(n, n_frames, h, w) Poisson counts per frame, when ``keep_frames`` was set."""
    defocus_um: torch.Tensor | None = None
    """(n,) underfocus of each tilt at the image centre (um); None without a CTF."""

    def normalised(self, which: str) -> torch.Tensor:
        """``counts / expected_mean - 1`` (contrast, dense matter negative) of ``clean/even/odd/full``.

        Dividing by the known expected mean (not the data) keeps every half an unbiased estimate of the
        clean contrast: E[normalised('even')] = E[normalised('odd')] ~ normalised('clean').
        """
        n_even = (self.n_frames + 1) // 2
        frac = {"clean": 1.0, "full": 1.0, "even": n_even / self.n_frames, "odd": 1 - n_even / self.n_frames}
        if which not in frac:
            raise ValueError(f"unknown image set '{which}'")
        return getattr(self, which) / (self.mean_counts[:, None, None] * frac[which]) - 1.0


def _default_projector() -> Projector:
    return project


def simulate_tilt_series(
    phantom: Phantom,
    cfg: SimulateConfig,
    *,
    keep_frames: bool = False,
    frame_drift: torch.Tensor | None = None,
    projector: Projector | None = None,
    detector: Detector | None = None,
) -> TiltSeries:
    """Project ``phantom``, form CTF-modulated, dose-faded images and count electrons frame by frame.

    ``frame_drift`` (n, n_frames, 2) shifts each frame by (dy, dx) pixels (specimen motion); the default
    is none. Images are cropped to the un-padded field of view ``(h, w)`` of ``cfg.shape``. ``detector``
    (MTF, gain, hot/dead pixels; :mod:`~cryocare_torch.simulate.detector`) replaces ideal Poisson counting.
    """
    d, h, w = (int(s) for s in cfg.shape)
    angles = tilt_angles(cfg)
    n, nf = len(angles), int(cfg.n_frames)
    frame_drift = _checked_drift(frame_drift, n, nf)
    max_drift = int(math.ceil(float(frame_drift.abs().max()))) if frame_drift.numel() else 0
    mx = FILTER_MARGIN + max_drift
    py = min(FILTER_MARGIN + max_drift, h - 1)
    phase = _phase(phantom, cfg, angles, w + 2 * mx, py, projector)

    image_hw = (int(phase.shape[-2]), int(phase.shape[-1]))
    k = frequency_grid(image_hw, cfg.pixel_size)
    defocus = tilt_defocus(cfg, n)
    rank = acquisition_order(angles, cfg.tilt_order, cfg.dose_symmetric_group)
    prior = rank.double() * cfg.dose_per_tilt
    frame_dose = cfg.dose_per_tilt / nf
    n0 = frame_dose * cfg.pixel_size**2
    thickness_nm = phantom.ice_thickness * cfg.pixel_size / 10.0
    t_zl = zero_loss_fraction(angles, thickness_nm, cfg.voltage_kv)

    seed = int(np.random.SeedSequence([cfg.seed, 2]).generate_state(1)[0])
    gen = torch.Generator().manual_seed(seed)
    clean = torch.empty((n, h, w), dtype=torch.float32)
    even, odd = torch.zeros_like(clean), torch.zeros_like(clean)
    frames = torch.empty((n, nf, h, w), dtype=torch.float32) if keep_frames else None
    x0 = mx  # the detector is centred on the field of view: keep its central w pixels
    for i in range(n):
        spec = torch.fft.rfft2(phase[i].double())
        exposures = prior[i] + (torch.arange(nf, dtype=torch.float64) + 0.5) * frame_dose
        g = _ctf_images(spec, exposure_filter(k, exposures), cfg, image_hw, defocus, float(angles[i]), i)
        if bool(frame_drift[i].any()):
            g = fourier_shift(g, frame_drift[i], precision=torch.float64).to(g.dtype)
        lam = (n0 * float(t_zl[i])) * torch.exp(-g[:, py : py + h, x0 : x0 + w])
        counts = torch.poisson(lam, generator=gen) if detector is None else detector.count(lam, gen)
        clean[i] = lam.sum(0)
        even[i] = counts[0::2].sum(0)
        odd[i] = counts[1::2].sum(0)
        if frames is not None:
            frames[i] = counts
    return TiltSeries(
        angles=angles, order=rank, prior_dose=prior.float(), dose_per_tilt=float(cfg.dose_per_tilt),
        pixel_size=float(cfg.pixel_size), mean_counts=(cfg.dose_per_tilt * cfg.pixel_size**2) * t_zl,
        clean=clean, even=even, odd=odd, full=even + odd, n_frames=nf, frame_drift=frame_drift, frames=frames,
        defocus_um=torch.from_numpy(defocus) if defocus is not None else None,
    )


def _checked_drift(frame_drift: torch.Tensor | None, n: int, nf: int) -> torch.Tensor:
    if frame_drift is None:
        return torch.zeros((n, nf, 2), dtype=torch.float32)
    frame_drift = torch.as_tensor(frame_drift, dtype=torch.float32)
    if frame_drift.shape != (n, nf, 2):
        raise ConfigError(f"frame_drift must have shape ({n}, {nf}, 2), got {tuple(frame_drift.shape)}")
    return frame_drift


def _phase(phantom: Phantom, cfg: SimulateConfig, angles: torch.Tensor, width: int, py: int,
           projector: Projector | None) -> torch.Tensor:
    """Phase shift of each view (projected potential, zero mean), padded by ``py`` rows (reflected) in y."""
    d, h, w = (int(v) for v in cfg.shape)
    if (phantom.density.shape[-1] - w) // 2 < 0 or phantom.density.shape[:2] != (d, h):
        raise ConfigError(f"phantom of shape {tuple(phantom.density.shape)} does not match simulate.shape {cfg.shape}")
    proj = (projector or _default_projector())(phantom.density, angles, detector_width=width)
    sigma = interaction_constant(cfg.voltage_kv) * cfg.contrast_scale * cfg.pixel_size
    phase = sigma * proj.to(torch.float32)
    phase = phase - phase.mean(dim=(-2, -1), keepdim=True)  # a constant phase is invisible
    return F.pad(phase[:, None], (0, 0, py, py), mode="reflect")[:, 0]


def tilt_defocus(cfg: SimulateConfig, n: int) -> np.ndarray | None:
    """Underfocus (um) of each of ``n`` tilts: ``defocus_um`` plus a seeded uniform offset in
    ``+-defocus_spread_um``; None when ``defocus_um`` is 0 (no CTF)."""
    if cfg.defocus_um <= 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3]))
    spread = rng.uniform(-1.0, 1.0, n) * cfg.defocus_spread_um if cfg.defocus_spread_um > 0 else np.zeros(n)
    return np.maximum(cfg.defocus_um + spread, 0.05)


def _ctf_images(spec: torch.Tensor, fading: torch.Tensor, cfg: SimulateConfig, shape: tuple[int, int],
                defocus: np.ndarray | None, angle: float, i: int) -> torch.Tensor:
    """``2 F^-1[CTF * fading * spec]`` for every exposure of ``fading``; with ``defocus_gradient`` a blend of
    images at defocus values 20 nm apart, column by column. No CTF (an ideal in-focus phase-contrast image,
    phase -> intensity) when ``defocus`` is None."""
    if defocus is None:
        return torch.fft.irfft2(spec[None] * 2.0 * fading, s=shape).float()
    dz = float(defocus[i])
    cols = column_defocus(shape[1], cfg.pixel_size, dz, angle) if cfg.defocus_gradient else torch.tensor([dz])
    samples = defocus_samples(cols, 0.02)
    weights = column_weights(cols, samples)
    out = torch.zeros((fading.shape[0], *shape), dtype=torch.float64)
    for j, d in enumerate(samples.tolist()):
        ctf = ctf_2d(shape, cfg.pixel_size, defocus_um=d, voltage_kv=cfg.voltage_kv,
                     cs_mm=cfg.spherical_aberration_mm, amplitude_contrast=cfg.amplitude_contrast)
        g = torch.fft.irfft2(spec[None] * (2.0 * ctf[None] * fading), s=shape)
        if samples.numel() == 1:
            return g.float()
        out += g * weights[j]
    return out.float()
