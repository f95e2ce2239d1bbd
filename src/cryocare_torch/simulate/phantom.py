"""Synthetic cellular specimen: ice slab, lipid vesicles, decorated filaments and globular complexes.

``density`` is the electrostatic mean inner potential in volts on a grid of ``pixel_size`` Angstrom:
vacuum 0, vitreous ice ~4.5 V, protein and lipid head groups ~7.2 V (macromolecules displace ice).
The grid is padded laterally in x (perpendicular to the tilt axis y) by ``lateral_pad`` voxels on each
side so that tilted projections of the central field of view see specimen everywhere, as in a real
slab, and show no volume-edge artefacts. Everything is deterministic given ``cfg.seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SimulateConfig
from ..errors import ConfigError
from .file_phantom import phantom_potential, read_phantom_volume
from .scene import BACKGROUND, COMPLEX, DECORATION, FILAMENT, ICE, LABEL_NAMES, MEMBRANE, Scene

ICE_POTENTIAL = 4.5
"""Mean inner potential of vitreous ice (V)."""
PROTEIN_POTENTIAL = 7.2
"""Mean inner potential of protein / lipid head groups (V)."""

__all__ = ["BACKGROUND", "COMPLEX", "DECORATION", "FILAMENT", "ICE", "ICE_POTENTIAL", "LABEL_NAMES", "MEMBRANE",
           "PROTEIN_POTENTIAL", "Phantom", "make_phantom"]

@dataclass
class Phantom:
    """Ground-truth specimen on the laterally padded grid ``(d, h, w + 2 * lateral_pad)``."""

    density: torch.Tensor
    """float32 mean inner potential (V)."""
    labels: torch.Tensor
    """uint8 classes, see :data:`LABEL_NAMES`."""
    decoration_centres: torch.Tensor
    """(N, 3) float32 zyx voxel centres of the periodic filament decorations."""
    decoration_filament: torch.Tensor
    """(N,) int64 index of the filament each decoration sits on (consecutive ones are one period apart)."""
    complex_centres: torch.Tensor
    """(M, 3) float32 zyx voxel centres of the globular complexes."""
    complex_kinds: list[str]
    lateral_pad: int
    pixel_size: float
    ice_thickness: float
    """Mean ice thickness in voxels."""


def _ice_surfaces(
    d: int, h: int, w: int, thickness: float, px: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower/upper ice surfaces z(y, x): a slightly tilted slab with smooth roughness (~1 nm)."""
    slack = max(0.0, (d - thickness) / 2.0 - 1.5)
    direction = rng.uniform(0, 2 * math.pi)
    tilt = rng.uniform(0.3, 0.6) * slack / max(h, w) * 2.0
    yy = torch.arange(h, dtype=torch.float32)[:, None] - (h - 1) / 2
    xx = torch.arange(w, dtype=torch.float32)[None, :] - (w - 1) / 2
    plane = tilt * (math.sin(direction) * yy + math.cos(direction) * xx)
    rough_amp = min(10.0 / px, 0.3 * slack)
    surfaces = []
    for _ in range(2):
        coarse = torch.from_numpy(rng.normal(size=(1, 1, 3 + h // 40, 3 + w // 40))).float()
        rough = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
        surfaces.append(rough * rough_amp / max(float(rough.std()), 1e-6))
    zc = (d - 1) / 2
    return zc - thickness / 2 + plane + surfaces[0], zc + thickness / 2 + plane + surfaces[1]


def make_phantom(cfg: SimulateConfig, *, lateral_pad: int) -> Phantom:
    """Build the specimen for ``cfg`` on a ``(d, h, w + 2 * lateral_pad)`` grid.

    Object counts in ``cfg`` are per field of view; the padded margins are filled at the same density.
    """
    if lateral_pad < 0:
        raise ConfigError(f"lateral_pad must be >= 0, got {lateral_pad}")
    d, h, w0 = (int(s) for s in cfg.shape)
    if min(d, h, w0) < 8:
        raise ConfigError(f"simulate.shape must be at least 8 voxels along each axis, got {cfg.shape}")
    w = w0 + 2 * int(lateral_pad)
    rng = np.random.default_rng([cfg.seed, 1])
    area = w / w0
    z_lo, z_hi = _ice_surfaces(d, h, w, cfg.ice_fraction * d, cfg.pixel_size, rng)
    zz = torch.arange(d, dtype=torch.float32)[:, None, None]
    ice = torch.sigmoid((zz - z_lo) / 0.6) * torch.sigmoid((z_hi - zz) / 0.6)
    if cfg.phantom_file is not None:
        return _file_phantom(cfg, ice, int(lateral_pad), float((z_hi - z_lo).mean()))
    scene = Scene((d, h, w), w0, 10.0 / cfg.pixel_size, rng, z_lo, z_hi)
    dec_centres, dec_fil = scene.add_filaments(int(round(cfg.n_filaments * area)), cfg.decoration_period_nm)
    scene.add_vesicles(int(round(cfg.n_membranes * area)))
    cx_centres, cx_kinds = scene.add_complexes(int(round(cfg.n_complexes * area)))
    density, labels = _compose(scene.fields, ice)
    dec = np.concatenate(dec_centres) if dec_centres else np.zeros((0, 3))
    return Phantom(
        density=density.float(),
        labels=labels,
        decoration_centres=torch.as_tensor(dec, dtype=torch.float32).reshape(-1, 3),
        decoration_filament=torch.as_tensor(dec_fil, dtype=torch.int64),
        complex_centres=torch.as_tensor(np.array(cx_centres), dtype=torch.float32).reshape(-1, 3),
        complex_kinds=cx_kinds,
        lateral_pad=int(lateral_pad),
        pixel_size=float(cfg.pixel_size),
        ice_thickness=float((z_hi - z_lo).mean()),
    )


def _file_phantom(cfg: SimulateConfig, ice: torch.Tensor, lateral_pad: int, thickness: float) -> Phantom:
    """The specimen of ``cfg.phantom_file`` (:mod:`.file_phantom`) in this slab; no labelled objects."""
    assert cfg.phantom_file is not None
    volume = read_phantom_volume(cfg.phantom_file, cfg.phantom_axes)
    density = phantom_potential(volume, ice, ice_potential=ICE_POTENTIAL, contrast_v=cfg.phantom_contrast_v,
                                invert=cfg.phantom_invert)
    empty = torch.zeros((0, 3), dtype=torch.float32)
    return Phantom(density=density.float(), labels=torch.where(ice > 0.5, ICE, BACKGROUND).to(torch.uint8),
                   decoration_centres=empty, decoration_filament=torch.zeros(0, dtype=torch.int64),
                   complex_centres=empty.clone(), complex_kinds=[], lateral_pad=lateral_pad,
                   pixel_size=float(cfg.pixel_size), ice_thickness=thickness)


def _compose(fields: dict[int, torch.Tensor], ice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Potential (ice where no object, protein where objects) and the label of the strongest field per voxel."""
    occ = torch.zeros(ice.shape, dtype=torch.float32)
    best = torch.full(ice.shape, 0.5, dtype=torch.float32)
    labels = torch.where(ice > 0.5, ICE, BACKGROUND).to(torch.uint8)
    for cls, f in fields.items():
        f.clamp_(0.0, 1.0)
        occ += f
        better = f > best
        labels[better] = cls
        best = torch.maximum(best, f)
    occ.clamp_(0.0, 1.0)
    return ICE_POTENTIAL * ice * (1.0 - occ) + PROTEIN_POTENTIAL * occ, labels
