"""Built-in simulator of a dose-fractionated cryo-ET acquisition with known ground truth.

``simulate(cfg)`` builds a cellular phantom (ice slab, lipid vesicles, decorated filaments, globular
complexes), projects it at every tilt, applies the CTF and the Grant & Grigorieff dose fading in the
configured acquisition order, counts electrons frame by frame (Poisson), splits the frames into even/odd
sums and reconstructs the even, odd, full and noise-free ("clean") tomograms by weighted
back-projection. ``write_dataset(cfg, folder)`` writes it all as MRC/.tlt/.mdoc/.csv/.json files.
"""

from .acquisition import (
    TiltSeries,
    acquisition_order,
    required_lateral_pad,
    simulate_tilt_series,
    tilt_angles,
    zero_loss_fraction,
)
from .ctf import (
    critical_exposure,
    ctf,
    ctf_1d,
    ctf_2d,
    electron_wavelength,
    exposure_filter,
    frequency_grid,
    interaction_constant,
)
from .dataset import SimulatedData, format_mdoc, format_tlt, simulate, write_dataset
from .phantom import LABEL_NAMES, Phantom, make_phantom

__all__ = [
    "LABEL_NAMES",
    "Phantom",
    "SimulatedData",
    "TiltSeries",
    "acquisition_order",
    "critical_exposure",
    "ctf",
    "ctf_1d",
    "ctf_2d",
    "electron_wavelength",
    "exposure_filter",
    "format_mdoc",
    "format_tlt",
    "frequency_grid",
    "interaction_constant",
    "make_phantom",
    "required_lateral_pad",
    "simulate",
    "simulate_tilt_series",
    "tilt_angles",
    "write_dataset",
    "zero_loss_fraction",
]
