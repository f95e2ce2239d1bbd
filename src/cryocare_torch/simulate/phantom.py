"""Synthetic cellular specimen: ice slab, lipid vesicles, decorated filaments and globular complexes.

``density`` is the electrostatic mean inner potential in volts on a grid of ``pixel_size`` Angstrom:
vacuum 0, vitreous ice ~4.5 V, protein and lipid head groups ~7.2 V (macromolecules displace ice).
The grid is padded laterally in x (perpendicular to the tilt axis y) by ``lateral_pad`` voxels on each
side so that tilted projections of the central field of view see specimen everywhere, as in a real
slab, and show no volume-edge artefacts. Everything is deterministic given ``cfg.seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SimulateConfig
from ..errors import ConfigError
from .shapes import BLOB_WEIGHT, SpherePacker, complex_templates, random_rotation, splat_gaussians, template_radius

ICE_POTENTIAL = 4.5
"""Mean inner potential of vitreous ice (V)."""
PROTEIN_POTENTIAL = 7.2
"""Mean inner potential of protein / lipid head groups (V)."""

BACKGROUND, MEMBRANE, FILAMENT, DECORATION, COMPLEX, ICE = 0, 1, 2, 3, 4, 5
LABEL_NAMES = {0: "background", 1: "membrane", 2: "filament", 3: "decoration", 4: "complex", 5: "ice"}

_TUBE_RADIUS_NM = 10.0  # centre of the tube wall; outer diameter ~25 nm
_WALL_SIGMA_NM = 1.6
_LEAFLET_SIGMA_NM = 0.9
_LEAFLET_HALF_GAP_NM = 2.0  # head groups ~4 nm apart
_DECORATION_OFFSET_NM = 16.5  # axis -> decoration centre (touching the outer wall)


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


def _frame(alpha: float, slope: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (u, v, n) in zyx: u along the filament (in-plane angle alpha, z slope), v in-plane."""
    u = np.array([slope, math.sin(alpha), math.cos(alpha)])
    u /= np.linalg.norm(u)
    v = np.array([0.0, math.cos(alpha), -math.sin(alpha)])
    n = np.cross(u, v)
    return u, v, n / np.linalg.norm(n)


class _Filament:
    """A gently curved tube: centre(s) = c0 + s u + f(s) v + g(s) n, |f'|, |g'| small."""

    def __init__(self, rng: np.random.Generator, c0: np.ndarray, u: np.ndarray, v: np.ndarray, n: np.ndarray,
                 length: float, nm: float) -> None:
        self.c0, self.u, self.v, self.n, self.length = c0, u, v, n, length
        lam = rng.uniform(150, 450, size=2) * nm
        self.f = [(rng.uniform(0.02, 0.07) * lk / (2 * math.pi), lk, rng.uniform(0, 2 * math.pi)) for lk in lam]
        self.g = [(min(1.0 * nm, 0.03 * lam[0] / (2 * math.pi)), lam[0] * 1.3, rng.uniform(0, 2 * math.pi))]

    @staticmethod
    def _wave(s: torch.Tensor, terms: Sequence[tuple[float, float, float]]) -> torch.Tensor:
        out = torch.zeros_like(s)
        for a, lam, ph in terms:
            out = out + a * torch.sin(2 * math.pi * s / lam + ph)
        return out

    def centreline(self, s: np.ndarray) -> np.ndarray:
        st = torch.as_tensor(s, dtype=torch.float64)
        f, g = self._wave(st, self.f).numpy(), self._wave(st, self.g).numpy()
        return self.c0 + s[:, None] * self.u + f[:, None] * self.v + g[:, None] * self.n


def _render_filament(field: torch.Tensor, fil: _Filament, nm: float) -> None:
    """Hollow tube wall (Gaussian radial profile) with an 8 nm axial (tubulin-dimer-like) modulation."""
    s_line = np.arange(-fil.length / 2, fil.length / 2 + 1.0, 2.0)
    pts = fil.centreline(s_line)
    reach = (_TUBE_RADIUS_NM + 4 * _WALL_SIGMA_NM) * nm
    lo = np.maximum(np.floor(pts.min(0) - reach), 0).astype(int)
    hi = np.minimum(np.ceil(pts.max(0) + reach) + 1, field.shape).astype(int)
    if np.any(hi <= lo):
        return
    z, y, x = (torch.arange(lo[i], hi[i], dtype=torch.float32) - float(fil.c0[i]) for i in range(3))

    def dot(e: np.ndarray) -> torch.Tensor:
        return float(e[0]) * z[:, None, None] + float(e[1]) * y[None, :, None] + float(e[2]) * x[None, None, :]

    s = dot(fil.u)
    a = dot(fil.v) - fil._wave(s, fil.f)
    b = dot(fil.n) - fil._wave(s, fil.g)
    rho = torch.sqrt(a * a + b * b)
    sig = _WALL_SIGMA_NM * nm
    wall = torch.exp(-((rho - _TUBE_RADIUS_NM * nm) ** 2) / (2 * sig * sig))
    wall *= 1.0 + 0.12 * torch.cos(2 * math.pi * s / (8.0 * nm))
    wall *= torch.sigmoid((fil.length / 2 - s.abs()) / 1.5)
    field[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += BLOB_WEIGHT * wall


def _render_vesicle(field: torch.Tensor, centre: np.ndarray, axes: np.ndarray, beta: float, nm: float) -> None:
    """Lipid bilayer on an oblate ellipsoid: two Gaussian shells (head groups) ~4 nm apart."""
    c, b, a = axes
    reach = max(a, b) + 4 * nm
    lo = np.maximum(np.floor(centre - np.array([c + 4 * nm, reach, reach])), 0).astype(int)
    hi = np.minimum(np.ceil(centre + np.array([c + 4 * nm, reach, reach])) + 1, field.shape).astype(int)
    if np.any(hi <= lo):
        return
    z, y, x = (torch.arange(lo[i], hi[i], dtype=torch.float32) - float(centre[i]) for i in range(3))
    Z = z[:, None, None]
    X = math.cos(beta) * x[None, None, :] + math.sin(beta) * y[None, :, None]
    Y = -math.sin(beta) * x[None, None, :] + math.cos(beta) * y[None, :, None]
    q = (X / a) ** 2 + (Y / b) ** 2 + (Z / c) ** 2
    grad = 2 * torch.sqrt((X / a**2) ** 2 + (Y / b**2) ** 2 + (Z / c**2) ** 2).clamp_min(1e-6)
    dist = (q - 1) / grad  # first-order signed distance to the surface (voxels)
    sig2 = 2 * (_LEAFLET_SIGMA_NM * nm) ** 2
    g = _LEAFLET_HALF_GAP_NM * nm
    shell = torch.exp(-((dist - g) ** 2) / sig2) + torch.exp(-((dist + g) ** 2) / sig2)
    field[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += 1.3 * shell


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
    nm = 10.0 / cfg.pixel_size  # voxels per nm
    rng = np.random.default_rng([cfg.seed, 1])
    area = w / w0

    thickness = cfg.ice_fraction * d
    z_lo, z_hi = _ice_surfaces(d, h, w, thickness, cfg.pixel_size, rng)
    zz = torch.arange(d, dtype=torch.float32)[:, None, None]
    ice = torch.sigmoid((zz - z_lo) / 0.6) * torch.sigmoid((z_hi - zz) / 0.6)

    def mid(y: float, x: float) -> tuple[float, float]:
        iy, ix = min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)
        return float(z_lo[iy, ix]), float(z_hi[iy, ix])

    def lateral() -> tuple[float, float]:
        return rng.uniform(0, h - 1), rng.uniform(0, w - 1)

    packer = SpherePacker()
    fields = {k: torch.zeros((d, h, w), dtype=torch.float32) for k in (MEMBRANE, FILAMENT, DECORATION, COMPLEX)}

    # Filaments with periodic decorations on a fixed side.
    dec_centres, dec_fil = [], []
    period = cfg.decoration_period_nm * nm
    tube_radius = (_TUBE_RADIUS_NM + 4.0) * nm  # outer wall plus a little clearance
    tube_reach = (_DECORATION_OFFSET_NM + 6.0) * nm  # decorations included
    slope_y, slope_x = (float(t.mean()) for t in torch.gradient((z_lo + z_hi) / 2))
    n_fil = int(round(cfg.n_filaments * area))
    for _ in range(n_fil):
        for _try in range(30):
            y, x = lateral()
            lo_z, hi_z = mid(y, x)
            alpha = rng.uniform(0, math.pi)
            u, v, n = _frame(alpha, slope_y * math.sin(alpha) + slope_x * math.cos(alpha))
            fil = _Filament(rng, np.array([(lo_z + hi_z) / 2, y, x]), u, v, n, rng.uniform(0.7, 1.3) * max(h, w0), nm)
            samples = fil.centreline(np.arange(-fil.length / 2, fil.length / 2, tube_radius))
            if packer.free_all(samples, tube_reach):
                break
        else:
            continue  # no room left for a filament that crosses none of the others
        packer.add(samples, tube_radius)
        _render_filament(fields[FILAMENT], fil, nm)
        phi = rng.uniform(-0.7, 0.7) + (math.pi if rng.random() < 0.5 else 0.0)
        side = math.cos(phi) * fil.v + math.sin(phi) * fil.n
        s_k = np.arange(-fil.length / 2 + rng.uniform(0.5, 1.0) * period, fil.length / 2 - 0.5 * period, period)
        if len(s_k) == 0:
            continue
        centres = fil.centreline(s_k) + _DECORATION_OFFSET_NM * nm * side
        centres = centres[np.all((centres >= 0) & (centres <= np.array([d, h, w]) - 1), axis=1)]
        for c in centres:
            parts = np.stack([c, c + (3.5 * side + 3.0 * fil.u) * nm, c + (2.0 * side - 3.5 * fil.u) * nm])
            splat_gaussians(fields[DECORATION], parts, np.array([3.2, 2.4, 2.2]) * nm, np.full(3, BLOB_WEIGHT))
        packer.add(centres, 7.0 * nm)
        dec_centres.append(centres)
        dec_fil += [len(dec_centres) - 1] * len(centres)

    # Lipid vesicles, flattened by the ice.
    for _ in range(int(round(cfg.n_membranes * area))):
        for _try in range(30):
            y, x = lateral()
            lo_z, hi_z = mid(y, x)
            a = rng.uniform(18, 40) * nm
            b = a * rng.uniform(0.8, 1.0)
            c = max(min(b, (hi_z - lo_z) / 2 - 3.5 * nm), 6 * nm)
            centre = np.array([(lo_z + hi_z) / 2, y, x])
            if packer.free(centre, a + 3 * nm):
                break
        else:
            continue
        packer.add(centre, a + 3 * nm)
        _render_vesicle(fields[MEMBRANE], centre, np.array([c, b, a]), rng.uniform(0, math.pi), nm)

    # Globular complexes of a few shapes and sizes, randomly oriented, inside the ice.
    templates = complex_templates()
    cx_centres, cx_kinds = [], []
    for _ in range(int(round(cfg.n_complexes * area))):
        name, rows = templates[int(rng.integers(len(templates)))]
        scale = rng.uniform(0.85, 1.15)
        radius = template_radius(rows) * scale * nm
        for _try in range(60):
            y, x = lateral()
            lo_z, hi_z = mid(y, x)
            zmin, zmax = lo_z + 0.8 * radius, hi_z - 0.8 * radius
            z = rng.uniform(zmin, zmax) if zmax > zmin else (lo_z + hi_z) / 2
            centre = np.array([z, y, x])
            if packer.free(centre, radius):
                break
        else:
            continue
        packer.add(centre, radius)
        rot = random_rotation(rng)
        pos = centre + (rows[:, :3] @ rot.T) * scale * nm
        splat_gaussians(fields[COMPLEX], pos, rows[:, 3] * scale * nm, np.full(len(rows), BLOB_WEIGHT))
        cx_centres.append(centre)
        cx_kinds.append(name)

    occ = torch.zeros((d, h, w), dtype=torch.float32)
    best = torch.full((d, h, w), 0.5, dtype=torch.float32)
    labels = torch.where(ice > 0.5, ICE, BACKGROUND).to(torch.uint8)
    for cls, f in fields.items():
        f.clamp_(0.0, 1.0)
        occ += f
        better = f > best
        labels[better] = cls
        best = torch.maximum(best, f)
    occ.clamp_(0.0, 1.0)
    density = ICE_POTENTIAL * ice * (1.0 - occ) + PROTEIN_POTENTIAL * occ
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
