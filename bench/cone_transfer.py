"""Blur or noise? Per-shell transfer of restorations against the object, in cones around x and z.

For each volume ``v`` (scaled onto the object ``o`` by least squares, central region without a 10% border,
Hann-tapered, zero-mean) and each frequency shell within 30 degrees of an axis::

    gain = sum Re(V O*) / sum |O|^2        rest = (sum |V|^2 - gain^2 sum |O|^2) / sum |O|^2

``gain`` below 1 is signal lost (blur); ``rest`` is power that is not the object (noise left or structure made
up), in units of the object's power in that shell. The conical FSC mixes both into one number; this separates
them. Seconds per volume:

    python bench/cone_transfer.py sim/object.mrc restored_wedge.mrc restored_plain.mrc sim/tomo_clean.mrc
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from cryocare_torch.io.mrc import read_volume

EDGES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def central(v: np.ndarray) -> np.ndarray:
    sl = tuple(slice(n // 10, n - n // 10) for n in v.shape)
    c = np.asarray(v[sl], dtype=np.float64)
    return c - c.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("object", type=Path)
    ap.add_argument("volumes", type=Path, nargs="+")
    a = ap.parse_args()
    o = central(read_volume(a.object)[0])
    win = np.ones(o.shape)
    for ax, n in enumerate(o.shape):
        shape = [1, 1, 1]
        shape[ax] = n
        win = win * np.hanning(n).reshape(shape)
    spec_o = np.fft.rfftn(o * win)
    f = np.meshgrid(np.fft.fftfreq(o.shape[0]), np.fft.fftfreq(o.shape[1]), np.fft.rfftfreq(o.shape[2]),
                    indexing="ij")
    k = np.sqrt(f[0] ** 2 + f[1] ** 2 + f[2] ** 2)
    for axis, name in ((2, "x"), (0, "z")):
        cone = np.abs(f[axis]) >= k * math.cos(math.radians(30))
        print(f"\ncone around {name}; shells up to (cycles/voxel): " + " ".join(f"{e:5.2f}" for e in EDGES[1:]))
        for p in a.volumes:
            v = central(read_volume(p)[0])
            spec_v = np.fft.rfftn((v * o).sum() / (v * v).sum() * v * win)
            gains, rests = [], []
            for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
                m = cone & (k >= lo) & (k < hi)
                po = float((np.abs(spec_o[m]) ** 2).sum())
                g = float((spec_v[m] * spec_o[m].conj()).real.sum()) / po
                gains.append(g)
                rests.append((float((np.abs(spec_v[m]) ** 2).sum()) - g * g * po) / po)
            label = f"{p.parent.name}/{p.name}"[-44:]
            print(f"  {label:44s} gain " + " ".join(f"{g:5.2f}" for g in gains))
            print(f"  {'':44s} rest " + " ".join(f"{r:5.2f}" for r in rests))


if __name__ == "__main__":
    main()
