"""Is it better? Resolution (FSC/FRC), quality scores against ground truth, classical baselines
(Gaussian, median, NAD, Perona-Malik) and report figures.

``from cryocare_torch.evaluate import fsc, psnr, ssim, ...``; figures live in
:mod:`cryocare_torch.evaluate.plots` (imported on demand: it loads matplotlib).
"""

from .baselines import (
    best_gaussian,
    best_median,
    best_nad,
    best_perona_malik,
    gaussian_filter,
    median_filter,
)
from .fsc import FSCResult, fsc
from .fsc_io import fsc_files
from .metrics import affine_fit, format_table, psnr, quality_table, ssim
from .nad import nad, perona_malik

__all__ = [
    "FSCResult",
    "affine_fit",
    "best_gaussian",
    "best_median",
    "best_nad",
    "best_perona_malik",
    "format_table",
    "fsc",
    "fsc_files",
    "gaussian_filter",
    "median_filter",
    "nad",
    "perona_malik",
    "psnr",
    "quality_table",
    "ssim",
]
