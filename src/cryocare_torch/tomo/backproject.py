"""Real-space weighted back-projection (WBP) of a tilt series, IMOD ``tilt`` geometry, y-chunked.

For every view the rows are R-weighted along ``x`` as IMOD's ``tilt`` does (``flib/tilt/tilt.f90``):

* each row is padded as in ``tilt``'s main program (``npad = min(50, 2 max(8, nx / 20))``, length
  ``niceframe(2 ((nx + npad) / 2), 2, 19)``) with a linear taper from the mean of its last 3 pixels to the
  mean of its first 3 (``taperEndToStart``), so the FFT sees a smooth periodic row;
* the weighting is ``RADWT``'s: at 0-based frequency index ``k`` of the padded row, ``0.2`` at ``k = 0``
  ("what Kak and Slaney's weighting function gives at 0"), ``k`` up to ``irmax - 1``, then
  ``(irmax - 1) exp(-((k + 1 - irmax) / ifall)^2)`` (:func:`ramp_filter`), with ``irmax``, ``ifall`` from
  ``RADIAL cutoff falloff`` (default ``0.35 0.035`` cycles/pixel, etomo's; ``None``: the ramp to Nyquist,
  tilt's own default) exactly as ``tilt`` converts them; the response is divided by the padded length
  so that it is ``~|f|`` in cycles/pixel;
* rays that leave the detector get ``tilt``'s ``edgeFill``: the stack mean times the zero-frequency weight
  (what a view at the stack mean gives after filtering), not the edge pixel.

The rows are then multiplied by the angular interval the view represents (radians, see
:func:`cryocare_torch.tomo.geometry.angular_intervals`) and back-projected along the rays of
:mod:`cryocare_torch.tomo.projector` (``u = x cos + z sin`` about the centres) with linear interpolation.
The sum approximates ``f = integral_0^pi (p_theta * ramp) d theta``, so ``WBP(project(V)) ~ V`` in
amplitude for a full angular range, and uneven or decimated tilt sets are weighted by the angle each view
covers.

Rows (``y``) are independent: memory is bounded by a chunk of rows; chunked and whole results agree to
float32 rounding (the sparse kernel's summation order may depend on the chunk's row count). The
interpolation weights form one sparse CSR matrix ``(d * w, n * (det + 1))`` shared by all rows (the extra
column per view holds the fill; split into z-blocks and rebuilt per chunk when it would exceed 512 MiB).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..io.atomic import temporary_sibling
from ..io.mrc import VolumeMeta, VolumeWriter, open_memmap, read_meta
from ..runtime import resolve_device
from .align import XfLike, apply_xf, as_xf, bin_images
from .geometry import AngleLike, angular_intervals, as_angles, center, sparse_rows, uniform_intervals
from .ramp import IMOD_RADIAL, Radial, filter_rows, imod_pad_length, ramp_filter, taper_pad, zero_weight

__all__ = ["IMOD_RADIAL", "Backprojector", "Radial", "filter_rows", "imod_pad_length", "ramp_filter",
           "reconstruct_file", "taper_pad", "weighted_backprojection", "zero_weight"]

Weighting = Literal["ramp", "none"]
_CHUNK_BYTES = 256 * 2**20
_CACHE_NNZ = 64 * 2**20  # 8 bytes per entry: 512 MiB
_BLOCK_NNZ = 8 * 2**20


class Backprojector:
    """WBP of rows ``(n, rows, det)`` into ``(thickness, rows, width)``; see :func:`weighted_backprojection`."""

    def __init__(
        self,
        angles_deg: AngleLike,
        detector_width: int,
        thickness: int,
        width: int | None = None,
        *,
        weighting: Weighting = "ramp",
        angular_weights: bool = True,
        radial: Radial = IMOD_RADIAL,
        device: torch.device | str | None = None,
    ) -> None:
        if weighting not in ("ramp", "none"):
            raise ConfigError(f"weighting must be 'ramp' or 'none', got {weighting!r}")
        self.angles = as_angles(angles_deg)
        self.det, self.thickness = int(detector_width), int(thickness)
        self.width = self.det if width is None else int(width)
        if self.det < 2:
            raise DataError(f"projections must be at least 2 pixels wide, got {self.det}")
        if self.thickness < 1 or self.width < 1:
            raise ConfigError(f"thickness and width must be positive, got {self.thickness} and {self.width}")
        self.weighting, self.radial = weighting, radial
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        iv = angular_intervals(self.angles) if angular_weights else uniform_intervals(self.angles)
        self.view_scale = (iv if weighting == "ramp" else iv / math.pi).to(self.device, torch.float32)
        n, d, w = self.angles.numel(), self.thickness, self.width
        per_layer = 2 * n * w
        step = max(1, _BLOCK_NNZ // per_layer)
        self.blocks: list[tuple[int, int, Tensor | None]] = [(z0, min(d, z0 + step), None) for z0 in range(0, d, step)]
        if per_layer * d <= _CACHE_NNZ:
            self.blocks = [(z0, z1, self._matrix(z0, z1)) for z0, z1, _ in self.blocks]

    def _matrix(self, z0: int, z1: int) -> Tensor:
        """CSR ``((z1 - z0) * width, n * (det + 1))``: linear interpolation of every view at each output voxel.

        Column ``det`` of each view is its fill: a ray outside ``[0, det - 1]`` (``tilt``'s legal range
        ``1 .. nxProj``, 1-based) takes it with weight 1.
        """
        n, det, w = self.angles.numel(), self.det, self.width
        theta = torch.deg2rad(self.angles)
        k = torch.arange(z0, z1, dtype=torch.float64)[:, None, None] - center(self.thickness)
        j = torch.arange(w, dtype=torch.float64)[None, :, None] - center(w)
        u = center(det) + j * theta.cos() + k * theta.sin()  # (dz, w, n)
        outside = (u < 0) | (u > det - 1)
        i0 = torch.floor(u.clamp(0, det - 1)).clamp(max=det - 2)
        f = (u.clamp(0, det - 1) - i0).float()
        i0 = torch.where(outside, torch.full_like(i0, det - 1), i0)
        f = torch.where(outside, torch.ones_like(f), f)
        cols = (i0.long() + torch.arange(n) * (det + 1))[..., None] + torch.arange(2)
        vals = torch.stack([1.0 - f, f], dim=-1)
        rows = (z1 - z0) * w
        return sparse_rows([(torch.full((rows,), 2 * n), cols.reshape(-1), vals.reshape(-1))], n * (det + 1),
                           device=self.device)

    def default_y_chunk(self, h: int) -> int:
        n_pad = imod_pad_length(self.det)
        per_row = (3 * self.angles.numel() * n_pad + self.thickness * self.width * 2) * 4
        return max(1, min(h, _CHUNK_BYTES // per_row))

    def __call__(self, rows: Tensor, fill_mean: float | None = None) -> Tensor:
        """``(thickness, m, width)`` from projection rows ``(n, m, det)``.

        ``fill_mean``: the stack mean behind ``tilt``'s fill for rays off the detector (default: these rows'
        mean; pass the whole stack's when back-projecting it chunk by chunk).
        """
        n, m, det = (int(s) for s in rows.shape)
        if n != self.angles.numel() or det != self.det:
            raise DataError(f"rows {tuple(rows.shape)} do not match {self.angles.numel()} views of width {self.det}")
        q = rows.to(device=self.device, dtype=torch.float32)
        mean = float(q.mean()) if fill_mean is None else float(fill_mean)
        fill = mean * (zero_weight(det, self.radial) if self.weighting == "ramp" else 1.0)
        if self.weighting == "ramp":
            q = filter_rows(q, radial=self.radial)
        q = torch.cat([q, torch.full((n, m, 1), fill, dtype=q.dtype, device=q.device)], dim=2)
        dense = (q * self.view_scale[:, None, None]).permute(0, 2, 1).reshape(n * (det + 1), m)
        out = torch.empty((self.thickness, m, self.width), dtype=torch.float32, device=self.device)
        for z0, z1, mat in self.blocks:
            mat = mat if mat is not None else self._matrix(z0, z1)
            out[z0:z1] = (mat @ dense).reshape(z1 - z0, self.width, m).permute(0, 2, 1)
        return out


def weighted_backprojection(
    projections: Tensor,
    angles_deg: AngleLike,
    thickness: int,
    *,
    weighting: Weighting = "ramp",
    angular_weights: bool = True,
    width: int | None = None,
    y_chunk: int | None = None,
    device: torch.device | str | None = None,
    radial: Radial = IMOD_RADIAL,
) -> Tensor:
    """Tomogram ``(thickness, h, width or w)`` from a tilt series ``(n, h, w)`` at ``angles_deg`` (degrees).

    ``weighting="none"`` gives a plain back-projection averaged over the views (weights ``interval / pi``).
    ``angular_weights=False`` gives every view the mean interval. Computed on ``device`` (default: the
    projections' device); the result stays there.
    """
    if projections.ndim != 3:
        raise DataError(f"a tilt series must be (n, h, w), got shape {tuple(projections.shape)}")
    n, h, w = (int(s) for s in projections.shape)
    angles = as_angles(angles_deg, n)
    dev = torch.device(device) if device is not None else projections.device
    bp = Backprojector(angles, w, thickness, width, weighting=weighting, angular_weights=angular_weights,
                       radial=radial, device=dev)
    m = int(y_chunk) if y_chunk is not None else bp.default_y_chunk(h)
    if m < 1:
        raise ConfigError(f"y_chunk must be positive, got {m}")
    out = torch.empty((bp.thickness, h, bp.width), dtype=torch.float32, device=dev)
    mean = float(projections.double().mean())
    for y0 in range(0, h, m):
        out[:, y0 : y0 + m] = bp(projections[:, y0 : y0 + m], mean)
    return out


def _aligned_copy(stack: Path, xf: Tensor | None, binning: int, tmp: Path, progress: bool) -> np.memmap:
    """Aligned (``xf``) and binned copy of ``stack`` in a temporary ``.npy`` memmap, made one view at a time."""
    src, meta = open_memmap(stack)
    n, h, w = meta.shape
    b = int(binning)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, h // b, w // b))
    for i in tqdm(range(n), desc="align/bin views", unit="view", disable=not progress, leave=False):
        view = torch.from_numpy(np.array(src[i], dtype=np.float32))
        if xf is not None:
            view = apply_xf(view, xf[i : i + 1])
        out[i] = bin_images(view, b).numpy()
    out.flush()
    del src
    return out


def reconstruct_file(
    stack_path: str | Path,
    angles_deg: AngleLike | str | Path,
    output_path: str | Path,
    thickness: int,
    *,
    xf: XfLike | str | Path | None = None,
    binning: int = 1,
    weighting: Weighting = "ramp",
    overwrite: bool = False,
    progress: bool = True,
    y_chunk: int | None = None,
    device: str = "auto",
    width: int | None = None,
    angular_weights: bool = True,
    radial: Radial = IMOD_RADIAL,
) -> Path:
    """Reconstruct the tilt series in ``stack_path`` into ``output_path`` (MRC), slab by slab in ``y``.

    ``angles_deg``: one angle per view, or a ``.tlt`` path. ``xf``: ``(n, 2, 3)`` transforms or an ``.xf``
    path, applied to the raw views before binning (as ``newstack -xform``). ``thickness`` and ``width``
    are in binned voxels. Host memory stays bounded by one chunk of rows (plus one view when aligning or
    binning, which goes through a temporary file beside the output). The voxel size is the input pixel
    size times ``binning``.
    """
    stack_path = Path(stack_path)
    meta = _check_stack(stack_path, binning)
    n, h, w = meta.shape
    b, xf_t = int(binning), as_xf(xf, n) if xf is not None else None
    bp = Backprojector(as_angles(angles_deg, n), w // b, thickness, width, weighting=weighting,
                       angular_weights=angular_weights, radial=radial, device=resolve_device(device))
    hb = h // b
    m = int(y_chunk) if y_chunk is not None else bp.default_y_chunk(hb)
    if m < 1:
        raise ConfigError(f"y_chunk must be positive, got {m}")
    px = tuple(v * b for v in meta.voxel_size[:2])
    out_meta = VolumeMeta(shape=(bp.thickness, hb, bp.width), voxel_size=(px[0], px[1], px[0]),
                          labels=meta.labels)
    tmp, src = None, None
    with VolumeWriter(output_path, out_meta.shape, out_meta, overwrite=overwrite, inputs=[stack_path],
                      label=f"cryocare-torch: WBP of {stack_path.name}, bin {b}") as writer:
        try:
            if xf_t is None and b == 1:
                src, _ = open_memmap(stack_path, meta)
            else:
                tmp = temporary_sibling(writer.path).with_suffix(".npy")
                src = _aligned_copy(stack_path, xf_t, b, tmp, progress)
            _write_chunks(writer, src, bp, m, stack_path, progress)
        finally:
            src = None  # drop the map before removing its file
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return writer.path


def _check_stack(stack_path: Path, binning: int) -> VolumeMeta:
    meta = read_meta(stack_path)
    if meta.ndim != 3:
        raise DataError(f"expected a tilt series (a stack of views), got a single image {meta.shape}", stack_path)
    _, h, w = meta.shape
    b = int(binning)
    if b < 1:
        raise ConfigError(f"binning must be a positive integer, got {binning}")
    if h // b < 1 or w // b < 2:
        raise DataError(f"views of {w}x{h} pixels are too small for binning {b}", stack_path)
    return meta


def _write_chunks(writer: VolumeWriter, src: np.ndarray, bp: Backprojector, m: int, stack_path: Path,
                  progress: bool) -> None:
    """Back-project ``src`` (aligned, binned views) ``m`` rows at a time into ``writer``."""
    hb = int(src.shape[1])
    mean = float(np.mean(src[:, :: max(1, hb // 64), :], dtype=np.float64))  # tilt's dmeanIn, sampled
    for y0 in tqdm(range(0, hb, m), desc="back-projecting", unit="chunk", disable=not progress):
        rows = torch.from_numpy(np.array(src[:, y0 : y0 + m, :], dtype=np.float32))
        if not bool(torch.isfinite(rows).all()):
            raise DataError(f"tilt series has NaN or infinite values in rows {y0}..{y0 + m - 1}", stack_path)
        writer.write_block((0, y0, 0), bp(rows, mean).cpu().numpy())
