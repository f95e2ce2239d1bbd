"""Where the missing-wedge restoration still falls short of the object: an oracle diagnosis, not a method.

Reads a restoration and the simulated object and splits the restoration's spectrum, with the tilt range's
measured region ``M`` (the product's merge, :func:`cryocare_torch.predict.wedge_merge.merge_measured`,
with a zero volume as the wedge's source), into

* the measured region ``F^-1[M F(v)]``,
* the missing wedge less the line ``kx = ky = 0`` (everything the network had to fill),
* that line itself, the volume's mean over each z section (``z_profile``: for a lamella the ice slab against the
  vacuum, a plane whose normal is z, so no rotation of the training pairs ever puts it where a target measured it).

It then prints the correlation with the object when one part is multiplied by a gain ``g`` (``g = 1`` is the
restoration as written). A best gain near 1 says the network filled that part at the right strength; a best gain
far from 1 says it did not. The gains are fitted against the object, so they are a diagnosis only: nothing in
the product uses them. With ``--defocus`` it also sweeps ``cryocare deconvolve``'s strength and falloff on the
volume (the same oracle caveat), to show how far its defaults are from the best Wiener filter of that family.

    python bench/wedge_fill_gain.py /tmp/e2e7171/restored_wedge.mrc /tmp/e2e7171/sim/object.mrc --defocus 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cryocare_torch.evaluate.object_scores import correlation, z_profile
from cryocare_torch.io.mrc import read_volume
from cryocare_torch.predict.deconvolve import ctf_deconvolve
from cryocare_torch.predict.wedge_merge import merge_measured

GAINS = (0.5, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0)


def parts(v: np.ndarray, tilt_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``v`` as measured region + wedge less the z line + z line (the three sum to ``v``)."""
    vt = torch.from_numpy(v)
    measured = merge_measured(vt, torch.zeros_like(vt), tilt_range).numpy().astype(np.float64)  # wedge set to 0
    wedge = v - measured
    line = z_profile(wedge)
    return measured, wedge - line, np.broadcast_to(line, v.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("volume", type=Path)
    ap.add_argument("object", type=Path)
    ap.add_argument("--tilt-range", type=float, nargs=2, default=(-60.0, 60.0))
    ap.add_argument("--defocus", type=float, default=None, help="underfocus (um): also sweep the deconvolution")
    a = ap.parse_args()
    torch.set_num_threads(1)
    v, meta = read_volume(a.volume)
    obj = read_volume(a.object)[0].astype(np.float64)
    v = v.astype(np.float64)
    measured, fill, line = parts(v, tuple(a.tilt_range))
    print(f"{a.volume}: correlation with the object {correlation(v, obj):.4f}")
    print("| part multiplied by g | " + " | ".join(f"g={g:g}" for g in GAINS) + " |")
    print("|---" * (len(GAINS) + 1) + "|")
    for name, scaled, rest in (("whole missing wedge", fill + line, measured),
                               ("wedge less the z line", fill, measured + line),
                               ("z line (mean of each z section)", line, measured + fill)):
        print(f"| {name} | " + " | ".join(f"{correlation(rest + g * scaled, obj):.4f}" for g in GAINS) + " |")
    if a.defocus is not None:
        px = float(meta.voxel_size[0])
        vt = torch.from_numpy(v.astype(np.float32))
        print("\n| deconvolution strength \\ falloff | 0.5 | 1 | 2 |\n|---|---|---|---|")
        for s in (0.5, 1.0, 1.5, 2.0):
            row = [correlation(ctf_deconvolve(vt, px, a.defocus, strength=s, snr_falloff=f).numpy(), obj)
                   for f in (0.5, 1.0, 2.0)]
            print(f"| {s:g} | " + " | ".join(f"{c:.4f}" for c in row) + " |")


if __name__ == "__main__":
    main()
