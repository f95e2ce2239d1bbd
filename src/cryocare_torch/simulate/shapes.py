"""Building blocks of the phantom: Gaussian splatting, complex templates, overlap bookkeeping.

All coordinates are voxels ``(z, y, x)`` of the phantom grid; sizes given in nm are converted by the
callers with ``10 / pixel_size``. Fields are "occupancy-like": they are clipped to [0, 1] later, so a
Gaussian of weight 1.6 gives a flat-topped blob whose 0.5-level radius is ~1.5 sigma.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BLOB_WEIGHT = 1.6
"""Peak of one Gaussian before clipping: the 0.5 level sits at ~1.52 sigma, a solid-looking edge."""


def splat_gaussians(field: torch.Tensor, centres: np.ndarray, sigmas: np.ndarray, weights: np.ndarray) -> None:
    """Add ``sum_k weights[k] * exp(-|r - centres[k]|^2 / (2 sigmas[k]^2))`` to ``field`` in place.

    Each Gaussian is evaluated separably in its own +-3 sigma box, so the cost is proportional to the
    boxes, not to the volume. ``centres`` is ``(K, 3)`` zyx in voxels.
    """
    shape = field.shape
    rows = zip(np.asarray(centres, float), np.asarray(sigmas, float), np.asarray(weights, float), strict=True)
    for c, s, w in rows:
        r = 3.0 * s
        lo = [max(0, math.floor(c[i] - r)) for i in range(3)]
        hi = [min(shape[i], math.ceil(c[i] + r) + 1) for i in range(3)]
        if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
            continue
        axes = [
            torch.exp(-((torch.arange(lo[i], hi[i], dtype=torch.float32) - c[i]) ** 2) / (2.0 * s * s))
            for i in range(3)
        ]
        block = (w * axes[0])[:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
        field[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += block


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def _ring(n: int, radius: float, height: float, sigma: float, phase: float = 0.0) -> list[tuple[float, ...]]:
    return [
        (height, radius * math.sin(2 * math.pi * k / n + phase), radius * math.cos(2 * math.pi * k / n + phase), sigma)
        for k in range(n)
    ]


def complex_templates() -> list[tuple[str, np.ndarray]]:
    """Globular complexes as Gaussian sums: rows ``(z, y, x, sigma)`` in nm about the centre of mass.

    Sizes span ~10-25 nm: a ribosome-like two-subunit particle, a proteasome-like barrel, a ring
    (chaperonin-like, seen from any side) and a small tetramer.
    """
    ribosome = [(0, 0, 0, 5.2), (2.5, 3.0, 1.5, 3.8), (-1.5, -3.0, 2.5, 3.8), (0, 1, -3.5, 3.5),
                (7.5, -1.0, -1.5, 3.2), (7.0, 3.5, 0.5, 2.6), (8.5, -4.0, 1.0, 2.4)]
    barrel = []
    for zz in (-6.0, -2.0, 2.0, 6.0):
        barrel += _ring(7, 3.6, zz, 1.7, phase=0.3 * zz)
    barrel += [(-9.5, 0, 0, 2.4), (9.5, 0, 0, 2.4)]
    ring = _ring(7, 5.5, 0.0, 1.9) + _ring(7, 5.5, 3.2, 1.9, phase=0.45)
    tetramer = [(1.8, 1.8, 1.8, 2.2), (1.8, -1.8, -1.8, 2.2), (-1.8, 1.8, -1.8, 2.2), (-1.8, -1.8, 1.8, 2.2)]
    out = []
    for name, rows in (("ribosome", ribosome), ("barrel", barrel), ("ring", ring), ("tetramer", tetramer)):
        arr = np.array(rows, dtype=float)
        arr[:, :3] -= arr[:, :3].mean(axis=0)
        out.append((name, arr))
    return out


def template_radius(rows: np.ndarray) -> float:
    """Radius (nm) of a sphere enclosing the template's 0.5-level surface."""
    return float(np.max(np.linalg.norm(rows[:, :3], axis=1) + 1.6 * rows[:, 3]))


class SpherePacker:
    """Rejection sampling against spheres already placed (so objects do not interpenetrate)."""

    def __init__(self) -> None:
        self.centres = np.zeros((0, 3))
        self.radii = np.zeros(0)

    def free(self, centre: np.ndarray, radius: float, *, anisotropy: float = 1.0) -> bool:
        """True when a sphere at ``centre`` with ``radius`` overlaps none placed so far.

        ``anisotropy`` < 1 shrinks z distances' weight (objects in a thin slab may overlap in z less).
        """
        if len(self.radii) == 0:
            return True
        d = self.centres - np.asarray(centre, float)[None, :]
        d[:, 0] *= anisotropy
        return bool(np.all(np.linalg.norm(d, axis=1) >= self.radii + radius))

    def free_all(self, centres: np.ndarray, radius: float) -> bool:
        return all(self.free(c, radius) for c in centres)

    def add(self, centres: np.ndarray, radius: float) -> None:
        centres = np.atleast_2d(np.asarray(centres, float))
        self.centres = np.concatenate([self.centres, centres])
        self.radii = np.concatenate([self.radii, np.full(len(centres), float(radius))])
