"""FSC between two MRC files (the file wrapper of :func:`cryocare_torch.evaluate.fsc.fsc`): voxel size from
the headers, a central crop read from disk, the curve written as JSON/CSV and plotted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write_json, atomic_write_text, check_output
from ..io.volumes import open_volume, read_volume_meta
from .fsc import Binning, FSCResult, central_box, fsc
from .plots import plot_fsc


def _header_voxel_size(paths: Sequence[Path], metas: Sequence[Any]) -> float:
    """The common isotropic voxel size (Angstrom) of the files, or a user-facing error."""
    sizes = [m.voxel_size[: len(m.shape)] for m in metas]
    for p, v in zip(paths, sizes, strict=True):
        if not all(x > 0 for x in v):
            raise ConfigError(f"{p} has no voxel size in its header (0); the resolution in nm needs it: pass "
                              "--voxel-size (Angstrom; voxel_size= in Python)")
        if not np.allclose(v, v[0], rtol=1e-2):
            raise DataError(f"{p} has anisotropic voxels {v} A; resample it or pass voxel_size to override")
    if not np.allclose(sizes[0], sizes[1], rtol=1e-3):
        raise DataError(f"voxel sizes differ: {paths[0]} has {sizes[0]} A, {paths[1]} has {sizes[1]} A; "
                        "FSC needs maps on the same grid (or pass voxel_size to override)")
    return float(sizes[0][0])


def fsc_files(
    a_path: str | Path, b_path: str | Path, *, mask_path: str | Path | None = None,
    voxel_size: float | None = None, crop: int | Sequence[int] | None = None, soft_edge: float = 0.0,
    binning: Binning = "linear", json_path: str | Path | None = None, csv_path: str | Path | None = None,
    plot_path: str | Path | None = None, overwrite: bool = False,
) -> FSCResult:
    """FSC between two MRC files; voxel size from the headers unless ``voxel_size`` (Angstrom) is given.

    With ``crop`` only the central box is read from disk. Writes the curve as JSON/CSV and a plot when
    the paths are given (refusing to replace existing files unless ``overwrite``).
    """
    paths = [Path(a_path), Path(b_path)] + ([Path(mask_path)] if mask_path is not None else [])
    for out in (json_path, csv_path, plot_path):
        if out is not None:
            check_output(out, overwrite=overwrite, inputs=paths)
    metas = [read_volume_meta(p) for p in paths]
    for p, m in zip(paths[1:], metas[1:], strict=True):
        if m.shape != metas[0].shape:
            raise DataError(f"{p} has shape {m.shape} but {paths[0]} has shape {metas[0].shape}; "
                            "FSC needs equal shapes")
    if voxel_size is None:
        voxel_size = _header_voxel_size(paths[:2], metas[:2])
    box = central_box(metas[0].shape, crop) if crop is not None else ...
    arrays = []
    for p in paths:
        mm, _ = open_volume(p)  # MRC/TIFF memmap or chunked Zarr
        arrays.append(np.array(mm[box], dtype=np.float32))  # reads only the (cropped) box
        del mm
    for p, arr in zip(paths[:2], arrays[:2], strict=True):
        if not np.isfinite(arr).all():
            raise DataError("contains NaN or infinite values; fix or re-export the map", p)
        if arr.size and arr.min() == arr.max():
            raise DataError(f"is constant (every voxel {arr.flat[0]:g}); its FSC is undefined, check the file", p)
    result = fsc(arrays[0], arrays[1], voxel_size=voxel_size, mask=arrays[2] if mask_path is not None else None,
                 soft_edge=soft_edge, binning=binning)
    result.meta.update({"a": str(paths[0]), "b": str(paths[1]), "mask": None if mask_path is None else str(mask_path)})
    if json_path is not None:
        atomic_write_json(json_path, result.to_dict(), overwrite=overwrite)
    if csv_path is not None:
        atomic_write_text(csv_path, result.to_csv(), overwrite=overwrite)
    if plot_path is not None:
        plot_fsc({f"{paths[0].stem} vs {paths[1].stem}": result}, plot_path, overwrite=overwrite)
    return result
