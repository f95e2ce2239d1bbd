"""The objects of the synthetic specimen (:mod:`.phantom`): decorated filaments, lipid vesicles and globular
complexes, placed one after the other without overlap between the ice surfaces, and their label values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .shapes import BLOB_WEIGHT, SpherePacker, complex_templates, random_rotation, splat_gaussians, template_radius

BACKGROUND, MEMBRANE, FILAMENT, DECORATION, COMPLEX, ICE = 0, 1, 2, 3, 4, 5
LABEL_NAMES = {0: "background", 1: "membrane", 2: "filament", 3: "decoration", 4: "complex", 5: "ice"}

_TUBE_RADIUS_NM = 10.0  # centre of the tube wall; outer diameter ~25 nm
_WALL_SIGMA_NM = 1.6
_LEAFLET_SIGMA_NM = 0.9
_LEAFLET_HALF_GAP_NM = 2.0  # head groups ~4 nm apart
_DECORATION_OFFSET_NM = 16.5  # axis -> decoration centre (touching the outer wall)


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


class Scene:
    """Objects placed one after the other without overlap (:class:`SpherePacker`) between the ice surfaces.

    The order of the random draws is part of the dataset (the same seed gives the same specimen).
    """

    def __init__(self, shape: tuple[int, int, int], w0: int, nm: float, rng: np.random.Generator,
                 z_lo: torch.Tensor, z_hi: torch.Tensor) -> None:
        self.shape, self.w0, self.nm, self.rng, self.z_lo, self.z_hi = shape, w0, nm, rng, z_lo, z_hi
        self.packer = SpherePacker()
        self.fields = {k: torch.zeros(shape, dtype=torch.float32) for k in (MEMBRANE, FILAMENT, DECORATION, COMPLEX)}

    def mid(self, y: float, x: float) -> tuple[float, float]:
        _, h, w = self.shape
        iy, ix = min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)
        return float(self.z_lo[iy, ix]), float(self.z_hi[iy, ix])

    def lateral(self) -> tuple[float, float]:
        _, h, w = self.shape
        return self.rng.uniform(0, h - 1), self.rng.uniform(0, w - 1)

    def add_filaments(self, n_fil: int, period_nm: float) -> tuple[list[np.ndarray], list[int]]:
        """Filaments with periodic decorations on a fixed side; returns the decoration centres per filament."""
        rng, nm, (d, h, w) = self.rng, self.nm, self.shape
        dec_centres: list[np.ndarray] = []
        dec_fil: list[int] = []
        period = period_nm * nm
        tube_radius = (_TUBE_RADIUS_NM + 4.0) * nm  # outer wall plus a little clearance
        tube_reach = (_DECORATION_OFFSET_NM + 6.0) * nm  # decorations included
        slope_y, slope_x = (float(t.mean()) for t in torch.gradient((self.z_lo + self.z_hi) / 2))
        for _ in range(n_fil):
            for _try in range(30):
                y, x = self.lateral()
                lo_z, hi_z = self.mid(y, x)
                alpha = rng.uniform(0, math.pi)
                u, v, n = _frame(alpha, slope_y * math.sin(alpha) + slope_x * math.cos(alpha))
                fil = _Filament(rng, np.array([(lo_z + hi_z) / 2, y, x]), u, v, n,
                                rng.uniform(0.7, 1.3) * max(h, self.w0), nm)
                samples = fil.centreline(np.arange(-fil.length / 2, fil.length / 2, tube_radius))
                if self.packer.free_all(samples, tube_reach):
                    break
            else:
                continue  # no room left for a filament that crosses none of the others
            self.packer.add(samples, tube_radius)
            _render_filament(self.fields[FILAMENT], fil, nm)
            phi = rng.uniform(-0.7, 0.7) + (math.pi if rng.random() < 0.5 else 0.0)
            side = math.cos(phi) * fil.v + math.sin(phi) * fil.n
            s_k = np.arange(-fil.length / 2 + rng.uniform(0.5, 1.0) * period, fil.length / 2 - 0.5 * period, period)
            if len(s_k) == 0:
                continue
            centres = fil.centreline(s_k) + _DECORATION_OFFSET_NM * nm * side
            centres = centres[np.all((centres >= 0) & (centres <= np.array([d, h, w]) - 1), axis=1)]
            for c in centres:
                parts = np.stack([c, c + (3.5 * side + 3.0 * fil.u) * nm, c + (2.0 * side - 3.5 * fil.u) * nm])
                splat_gaussians(self.fields[DECORATION], parts, np.array([3.2, 2.4, 2.2]) * nm,
                                np.full(3, BLOB_WEIGHT))
            self.packer.add(centres, 7.0 * nm)
            dec_centres.append(centres)
            dec_fil += [len(dec_centres) - 1] * len(centres)
        return dec_centres, dec_fil

    def add_vesicles(self, count: int) -> None:
        """Lipid vesicles, flattened by the ice."""
        rng, nm = self.rng, self.nm
        for _ in range(count):
            for _try in range(30):
                y, x = self.lateral()
                lo_z, hi_z = self.mid(y, x)
                a = rng.uniform(18, 40) * nm
                b = a * rng.uniform(0.8, 1.0)
                c = max(min(b, (hi_z - lo_z) / 2 - 3.5 * nm), 6 * nm)
                centre = np.array([(lo_z + hi_z) / 2, y, x])
                if self.packer.free(centre, a + 3 * nm):
                    break
            else:
                continue
            self.packer.add(centre, a + 3 * nm)
            _render_vesicle(self.fields[MEMBRANE], centre, np.array([c, b, a]), rng.uniform(0, math.pi), nm)

    def add_complexes(self, count: int) -> tuple[list[np.ndarray], list[str]]:
        """Globular complexes of a few shapes and sizes, randomly oriented, inside the ice."""
        rng, nm = self.rng, self.nm
        templates = complex_templates()
        cx_centres: list[np.ndarray] = []
        cx_kinds: list[str] = []
        for _ in range(count):
            name, rows = templates[int(rng.integers(len(templates)))]
            scale = rng.uniform(0.85, 1.15)
            radius = template_radius(rows) * scale * nm
            for _try in range(60):
                y, x = self.lateral()
                lo_z, hi_z = self.mid(y, x)
                zmin, zmax = lo_z + 0.8 * radius, hi_z - 0.8 * radius
                z = rng.uniform(zmin, zmax) if zmax > zmin else (lo_z + hi_z) / 2
                centre = np.array([z, y, x])
                if self.packer.free(centre, radius):
                    break
            else:
                continue
            self.packer.add(centre, radius)
            rot = random_rotation(rng)
            pos = centre + (rows[:, :3] @ rot.T) * scale * nm
            splat_gaussians(self.fields[COMPLEX], pos, rows[:, 3] * scale * nm, np.full(len(rows), BLOB_WEIGHT))
            cx_centres.append(centre)
            cx_kinds.append(name)
        return cx_centres, cx_kinds
