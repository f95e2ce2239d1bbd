"""Past the reconstruction's CTF: ``cryocare deconvolve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cyclopts import Group, Parameter

from ..config_prepare import DeconvConfig
from ..errors import ConfigError
from ..logs import log_stderr as _log
from ..predict.deconvolve_files import deconvolve_file
from ..runtime import set_threads
from .app import app

G_DECONV = Group("CTF deconvolution", sort_key=15)

DeconvSettings = Annotated[DeconvConfig | None, Parameter(name="*", group=G_DECONV)]


@app.command
def deconvolve(
    input: Path,
    *,
    output: Path,
    defocus_file: Path | None = None,
    settings: DeconvSettings = None,
    voxel_size: float | None = None,
    overwrite: bool = False,
    threads: int | None = None,
) -> int:
    """Undo the CTF of a (restored) tomogram with a Wiener filter, as IsoNet's and Warp's deconvolution do.

    Best on a restored tomogram (cryocare denoise/predict output), whose noise the filter would otherwise
    amplify. The whole tomogram is held in memory (about 3x its float32 size). Example:
    cryocare deconvolve restored.mrc --output restored_deconv.mrc --defocus-file TS_01.mdoc

    Parameters
    ----------
    input
        Tomogram (MRC, TIFF z-stack or Zarr/OME-Zarr), not modified.
    output
        Output MRC (float32), with the input's voxel size and origin.
    defocus_file
        Defocus of the tilt series' views (CTFFIND4 .txt, AreTomo _CTF.txt, IMOD .defocus or .mdoc); the median
        is the tomogram's underfocus.
    voxel_size
        Voxel size in Angstrom, replacing the header's (TIFF/Zarr without one).
    overwrite
        Replace an existing output.
    threads
        CPU threads (default: all available cores).
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    set_threads(threads)
    out = deconvolve_file(input, output, settings or DeconvConfig(), defocus_file=defocus_file,
                          voxel_size=voxel_size, overwrite=overwrite, log=_log)
    print(f"wrote {out}")
    return 0
