"""Which Fourier regions each rotation of the missing-wedge mode trains, and how often per draw.

For a pair rotated by ``R`` the network input holds data where both the wedge ``W`` and the rotated wedge
``R W`` were measured (``W R W``: there it learns to denoise) and the loss also counts ``R W (1 - W)`` (there it
learns to fill). This prints, per class of cube rotations (the 24 grouped by their axis permutation), the share of
the frequencies in 30-degree cones around x, y and z (``|k|`` > 0.1 cycles/voxel) that fall in each region, and
the same averaged over a draw (``train.wedge_upright_fraction``: ``None`` draws all 24 alike, 0 only the rotations
that move the wedge). Pure geometry on a 33-voxel grid, a few seconds:

    python bench/wedge_rotation_coverage.py --tilt-range -60 60
"""

from __future__ import annotations

import argparse
import math

import torch

from cryocare_torch.tomo.wedge import CUBE_ROTATIONS, rotate_spectrum, wedge_mask
from cryocare_torch.train.wedge import WedgeObjective


def cones(n: int) -> dict[str, torch.Tensor]:
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    k = torch.stack(torch.meshgrid(f, f, f, indexing="ij"))  # (z, y, x)
    norm = k.square().sum(0).sqrt()
    far = norm > 0.1
    cos30 = math.cos(math.radians(30))
    return {a: far & (k[i].abs() >= norm * cos30) for i, a in enumerate("zyx")} | {"all": far}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tilt-range", type=float, nargs=2, default=(-60.0, 60.0))
    ap.add_argument("--size", type=int, default=33, help="odd grid size")
    a = ap.parse_args()
    n, (lo, hi) = a.size, a.tilt_range
    w = wedge_mask(n, lo, hi).to(torch.float64)
    c = cones(n)
    rows = []
    for r in CUBE_ROTATIONS:
        rw = rotate_spectrum(w, r)
        both, fill = w * rw, (1 - w) * rw
        rows.append([float(both[c[x]].mean()) for x in "xyz"]
                    + [float(fill[c["z"]].mean()), float(fill[c["all"]].mean())])
    print(f"tilt range {lo:g}..{hi:g}, {n}-voxel grid; shares of each cone's frequencies beyond 0.1 cycles/voxel\n")
    print("| rotations (axis permutation of (z, y, x)) | n | denoised x | denoised y | denoised z | filled z cone "
          "| filled, all |")
    print("|---|---|---|---|---|---|---|")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(CUBE_ROTATIONS):
        groups.setdefault(tuple(r.perm), []).append(i)
    for perm, idx in groups.items():
        m = torch.tensor([rows[i] for i in idx]).mean(0)
        print(f"| {perm} | {len(idx)} | " + " | ".join(f"{v:.2f}" for v in m.tolist()) + " |")
    obj = WedgeObjective((lo, hi), 9)
    for label, idx in (("draw None (all 24 alike)", list(range(24))), ("draw 0 (wedge moved)", obj.turned.tolist())):
        m = torch.tensor([rows[i] for i in idx]).mean(0)
        print(f"| {label} | {len(idx)} | " + " | ".join(f"{v:.2f}" for v in m.tolist()) + " |")
    print("| plain Noise2Noise (for comparison: input = target = W) | - | "
          + " | ".join(f"{float(w[c[x]].mean()):.2f}" for x in "xyz") + " | 0.00 | 0.00 |")


if __name__ == "__main__":
    main()
