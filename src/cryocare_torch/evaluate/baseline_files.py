"""``cryocare baseline`` on files: filter one tomogram, or the average of its two halves, with a classical
denoiser (:mod:`.baselines`, :mod:`.nad`) and write it with the input's voxel size and origin."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..io.atomic import check_output
from ..io.halves import validate_pairs
from ..io.mrc import write_volume
from ..io.volumes import read_volume_meta, read_whole_volume
from ..logs import Log, quiet
from .baselines import gaussian_filter, median_filter
from .nad import nad

Method = Literal["median", "gaussian", "nad"]
NadMode = Literal["hybrid", "eed", "ced"]


def baseline_sources(input: Path | None, even: Path | None, odd: Path | None, output: Path, *,
                     overwrite: bool) -> list[Path]:
    """``[input]`` or ``[even, odd]`` (checked to be a pair), after checking that ``output`` may be written."""
    if (even is None) != (odd is None):
        raise ConfigError("give both --even and --odd (their average is filtered), or one INPUT")
    if (input is None) == (even is None):
        raise ConfigError("give either one INPUT tomogram or --even and --odd, not both")
    if even is not None and odd is not None:
        validate_pairs([(even, odd)])  # readable, same shape and voxel size
        sources = [even, odd]
    elif input is not None:
        sources = [input]
    else:  # excluded by the two checks above
        raise ConfigError("give either one INPUT tomogram or --even and --odd")
    n_vox = 1
    for n in read_volume_meta(sources[0]).shape:
        n_vox *= n
    check_output(output, overwrite=overwrite, inputs=sources, nbytes=4 * n_vox + 1024)
    return sources


def _check(method: Method, size: int, sigma: float, iterations: int) -> None:
    if method == "median" and (size < 1 or size % 2 == 0):
        raise ConfigError(f"--size must be an odd number >= 1, got {size}")
    if method == "gaussian" and not sigma > 0:
        raise ConfigError(f"--sigma must be > 0 voxels, got {sigma}")
    if method == "nad" and iterations < 1:
        raise ConfigError(f"--iterations must be >= 1, got {iterations}")


def filter_files(sources: list[Path], output: Path, method: Method, *, size: int = 3, sigma: float = 1.0,
                 iterations: int = 10, lambda_: float | None = None, nad_mode: NadMode = "hybrid",
                 overwrite: bool = False, voxel_size: float | None = None, log: Log = quiet) -> Path:
    """Filter ``sources[0]`` (or the mean of the two ``sources``) and write ``output`` (float32 MRC)."""
    _check(method, size, sigma, iterations)
    volume, meta = read_whole_volume(sources[0], voxel_size)
    if len(sources) == 2:
        volume = 0.5 * (volume + read_whole_volume(sources[1])[0])
    if not np.isfinite(volume).all():
        bad = sources[0] if len(sources) == 1 else f"{sources[0]} or {sources[1]}"
        raise DataError(f"{bad}: data contain NaN or Inf values; fix or crop the input")
    log(f"{method} filter on {'x'.join(map(str, volume.shape))} voxels ...")
    if method == "median":
        out = median_filter(volume, size)
    elif method == "gaussian":
        out = gaussian_filter(volume, sigma)
    else:
        out = nad(volume, iterations=iterations, lambda_=lambda_, mode=nad_mode)
    return write_volume(output, np.asarray(out), meta, overwrite=overwrite,
                        label=f"cryocare-torch baseline {method}")
