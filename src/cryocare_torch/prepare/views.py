"""View-by-view operations on tilt-series stack files: select/reorder, align, normalise, reconstruct.

Memory holds one view at a time (plus the back-projector's chunk of rows). Normalisation ``"mean"``
turns each view into contrast, ``view / mean(view) - 1``, as the simulator does with the known mean: it
removes the per-view changes of intensity (thickness at high tilt, dose) before back-projection, so the
halves of a pair and the views of a series are on one scale. ``"none"`` keeps the values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io.mrc import VolumeMeta, VolumeWriter, open_memmap, read_meta
from ..tomo.align import XfLike, apply_xf, as_xf
from ..tomo.backproject import reconstruct_file
from .ctf import ViewCtf

Normalization = Literal["mean", "none"]


def sibling(prefix: str | Path, suffix: str) -> Path:
    """``<prefix><suffix>`` (the prefix's name may contain dots)."""
    p = Path(prefix)
    return p.with_name(p.name + suffix)


def normalize_view(view: torch.Tensor, how: Normalization, where: str = "view") -> torch.Tensor:
    """``view / mean - 1`` for ``"mean"`` (DataError when the mean is not positive), the view for ``"none"``."""
    if how == "none":
        return view
    if how != "mean":
        raise ConfigError(f"normalization must be 'mean' or 'none', got {how!r}")
    mean = float(view.double().mean())
    if not mean > 0:
        raise DataError(f"{where} has mean {mean:.4g}; 'mean' normalisation needs counts or intensities "
                        "(positive values); use --normalize none for data that are already normalised")
    return view / mean - 1.0


def copy_views(
    src: str | Path,
    dst: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    xf: XfLike | None = None,
    normalize: Normalization = "none",
    pixel_size: float | None = None,
    overwrite: bool = False,
    label: str = "cryocare-torch: selected views",
    ctf: ViewCtf | None = None,
) -> Path:
    """Write views ``indices`` of the stack ``src`` (in that order) to the stack ``dst``, each optionally
    normalised, aligned with its transform ``xf[k]`` and CTF-corrected by ``ctf`` (both one per *output* view).

    ``pixel_size`` (A) replaces the input's when given. Returns ``dst``.
    """
    src, dst = Path(src), Path(dst)
    meta = read_meta(src)
    n = meta.shape[0] if meta.ndim == 3 else 1
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        raise DataError("no views selected", src)
    if min(idx) < 0 or max(idx) >= n:
        raise DataError(f"view index {max(idx) if max(idx) >= n else min(idx)} outside the stack's {n} views", src)
    t = as_xf(xf, len(idx)) if xf is not None else None
    h, w = meta.shape[-2:]
    out_meta = replace(meta, shape=(len(idx), h, w), is_stack=True)
    if pixel_size is not None:
        out_meta = replace(out_meta, voxel_size=(float(pixel_size),) * 3)
    data, _ = open_memmap(src, meta)
    try:
        with VolumeWriter(dst, (len(idx), h, w), out_meta, overwrite=overwrite, inputs=[src], label=label) as wr:
            for k, i in enumerate(idx):
                view = torch.from_numpy(np.array(data[i] if meta.ndim == 3 else data, dtype=np.float32))
                view = normalize_view(view, normalize, f"{src.name} view {i}")
                if t is not None:
                    view = apply_xf(view, t[k : k + 1])
                if ctf is not None:
                    view = ctf.correct(view, k)
                wr.write_slab(k, view.numpy()[None])
    finally:
        del data
    return dst


def reconstruct_views(
    stack: str | Path,
    angles: Sequence[float] | np.ndarray,
    output: str | Path,
    thickness: int,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    xf: XfLike | None = None,
    binning: int = 1,
    normalize: Normalization = "mean",
    width: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    device: str = "cpu",
    ctf: ViewCtf | None = None,
) -> Path:
    """Weighted back-projection of views ``indices`` (default all) of ``stack``: normalised, aligned by their
    ``xf``, CTF-corrected (``ctf``: one entry per view of ``stack``; at the stack's pixel size, after the
    alignment) and binned, with the angular weights of their own spacing.

    ``angles`` and ``xf`` have one entry per view of ``stack``; ``thickness``/``width`` are in binned voxels.
    The normalised views go through a temporary stack beside ``output``, removed afterwards.
    """
    stack, output = Path(stack), Path(output)
    meta = read_meta(stack)
    n = meta.shape[0] if meta.ndim == 3 else 1
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    ang = np.asarray(angles, dtype=np.float64).reshape(-1)
    if ang.size != n:
        raise DataError(f"{ang.size} tilt angles for {n} views", stack)
    sub_xf = as_xf(xf, n)[torch.from_numpy(idx)] if xf is not None else None
    if thickness < 1:
        raise ConfigError(f"thickness must be a positive number of voxels, got {thickness}")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.views.mrc")
    try:
        if ctf is not None:  # align first: the correction needs the tilt axis vertical
            copy_views(stack, tmp, idx, normalize=normalize, xf=sub_xf, ctf=ctf.subset(idx), overwrite=True,
                       label=f"cryocare-torch: normalised, aligned, CTF {ctf.mode} views")
            sub_xf = None
        else:
            copy_views(stack, tmp, idx, normalize=normalize, overwrite=True, label="cryocare-torch: normalised views")
        return reconstruct_file(tmp, ang[idx], output, int(thickness), xf=sub_xf, binning=binning, width=width,
                                overwrite=overwrite, progress=progress, device=device)
    finally:
        tmp.unlink(missing_ok=True)


def stack_meta(path: str | Path) -> VolumeMeta:
    """Header of a tilt-series stack; DataError unless it holds several views."""
    meta = read_meta(path)
    if meta.ndim != 3:
        raise DataError(f"expected a stack of views, got a single image {meta.shape}", path)
    return meta
