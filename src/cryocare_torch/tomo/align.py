"""IMOD ``.xf`` alignment transforms: apply (as ``newstack -xform``), invert, compose; image binning.

An ``.xf`` line ``A11 A12 A21 A22 DX DY`` is held as a ``(2, 3)`` matrix ``[[A11, A12, DX], [A21, A22, DY]]``
(a stack of them is ``(n, 2, 3)``, the layout of :func:`cryocare_torch.io.imod.read_xf`). It maps a
position of the raw image to the aligned image, about the image centres, the shift added after the
matrix::

    X' = A11 (X - Xc) + A12 (Y - Yc) + DX + Xc'        Y' = A21 (X - Xc) + A22 (Y - Yc) + DY + Yc'

with ``X`` the column and ``Y`` the row (file line) index, both 0-based, and the centres ``Xc = (nx - 1) / 2``,
``Yc = (ny - 1) / 2`` (the middle of the image: between the two central pixels for even sizes). Evidence: the
IMOD man page of ``xf2rotmagstr`` states this form ("x, y is the original position, x', y' is the position in
the transformed image, xci, yci is the center of input images"); ``libcfshr/cubinterp.c`` (the interpolator
behind ``newstack``) implements ``Xo = a11(Xi - Xc) + a12(Yi - Yc) + NXB/2 + XT`` where, in its own words,
"Xi is a coordinate running from 0 at the left edge of the first pixel to nxa at the right edge of the last
pixel", and ``newstack.f90`` passes ``Xc = nxbin / 2.``: the edge-based centre ``nx / 2`` is the 0-based pixel
index ``nx / 2 - 0.5 = (nx - 1) / 2`` (its inner loop maps output pixel ``ix`` (1-based) to
``a11 (ix - nxb/2 - xt - 0.5) + ... + xc + 0.5``, 1-based). ``DX, DY`` are the shift in output pixels added
after the matrix.
Positions outside the raw image are filled with the view's mean, as ``newstack`` does.

:func:`invert_xf` and :func:`compose_xf` follow ``xfinverse`` and ``xfproduct`` (``compose_xf(a, b)``
applies ``a`` then ``b``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from ..io.imod import read_xf

XfLike = Tensor | np.ndarray | Sequence[Sequence[Sequence[float]]]


def as_xf(xf: XfLike | str | Path, n_views: int | None = None) -> Tensor:
    """Transforms as a float64 CPU tensor ``(n, 2, 3)``; reads an ``.xf`` file if given a path."""
    source = None
    if isinstance(xf, (str, Path)):

        source = Path(xf)
        xf = read_xf(source)
    t = xf.detach().to("cpu", torch.float64) if isinstance(xf, Tensor) else torch.as_tensor(
        np.asarray(xf, dtype=np.float64))
    if t.shape == (2, 3):
        t = t[None]
    if t.ndim != 3 or tuple(t.shape[1:]) != (2, 3):
        raise DataError(f"transforms must have shape (n, 2, 3), got {tuple(t.shape)}", source)
    if not bool(torch.isfinite(t).all()):
        raise DataError("transforms contain NaN or infinite values", source)
    if n_views is not None and t.shape[0] != int(n_views):
        raise DataError(f"{t.shape[0]} transforms for {int(n_views)} views; give one .xf line per view", source)
    return t


def make_xf(rotation_deg: float = 0.0, shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0) -> Tensor:
    """A ``(2, 3)`` transform: counter-clockwise rotation (x right, y up) and magnification, then ``shift``."""
    t = math.radians(rotation_deg)
    c, s = scale * math.cos(t), scale * math.sin(t)
    return torch.tensor([[c, -s, float(shift[0])], [s, c, float(shift[1])]], dtype=torch.float64)


def invert_xf(xf: XfLike) -> Tensor:
    """Inverse transforms: ``A' = A^-1``, ``d' = -A^-1 d`` (IMOD ``xfinverse``)."""
    t = as_xf(xf)
    a = t[:, :, :2]
    if bool((torch.linalg.det(a).abs() < 1e-12).any()):
        raise DataError("a transform has a singular 2x2 matrix and cannot be inverted")
    ai = torch.linalg.inv(a)
    return torch.cat([ai, -(ai @ t[:, :, 2:])], dim=2)


def compose_xf(first: XfLike, second: XfLike) -> Tensor:
    """``first`` followed by ``second`` (IMOD ``xfproduct first second``): ``A = A2 A1``, ``d = A2 d1 + d2``."""
    a, b = as_xf(first), as_xf(second)
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise DataError(f"cannot compose {a.shape[0]} transforms with {b.shape[0]}")
    mat = b[:, :, :2] @ a[:, :, :2]
    return torch.cat([mat, b[:, :, :2] @ a[:, :, 2:] + b[:, :, 2:]], dim=2)


def _source_grid(xf: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Raw-image positions ``(x, y)`` (0-based, float64) sampled by each aligned pixel, each ``(h, w)``."""
    inv = invert_xf(xf)[0]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0  # IMOD's centre, see the module docstring
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) - cy,
                            torch.arange(w, dtype=torch.float64) - cx, indexing="ij")
    xs = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2] + cx
    ys = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2] + cy
    return xs, ys


def apply_xf(
    stack: Tensor,
    xf: XfLike,
    *,
    mode: Literal["bilinear", "bicubic"] = "bicubic",
    fill: Literal["mean"] | float = "mean",
) -> Tensor:
    """Aligned images ``(n, h, w)`` from raw images ``(n, h, w)`` (or one ``(h, w)``) and ``(n, 2, 3)`` transforms.

    Interpolation is bicubic by default (newstack's default is cubic); pixels that come from outside the
    raw image get ``fill`` (the view's mean by default). Views are processed one at a time.
    """
    if mode not in ("bilinear", "bicubic"):
        raise ConfigError(f"interpolation mode must be 'bilinear' or 'bicubic', got {mode!r}")
    single = stack.ndim == 2
    s = stack[None] if single else stack
    if s.ndim != 3:
        raise DataError(f"apply_xf needs images (n, h, w), got shape {tuple(stack.shape)}")
    n, h, w = (int(v) for v in s.shape)
    t = as_xf(xf, n)
    dtype = s.dtype if s.dtype in (torch.float32, torch.float64) else torch.float32
    out = torch.empty((n, h, w), dtype=dtype, device=s.device)
    for i in range(n):
        xs, ys = _source_grid(t[i : i + 1], h, w)
        grid = torch.stack([xs * (2.0 / max(w - 1, 1)) - 1.0, ys * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
        img = s[i].to(dtype)
        val = F.grid_sample(img[None, None], grid[None].to(device=s.device, dtype=dtype), mode=mode,
                            padding_mode="border", align_corners=True)[0, 0]
        inside = ((xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)).to(s.device)
        fv = img.mean() if fill == "mean" else torch.as_tensor(float(fill), dtype=dtype, device=s.device)
        out[i] = torch.where(inside, val, fv)
    return out[0] if single else out


def bin_images(stack: Tensor, binning: int) -> Tensor:
    """Average ``binning x binning`` blocks of ``(..., h, w)`` images; a remainder is cropped evenly from both sides."""
    b = int(binning)
    if b < 1:
        raise ConfigError(f"binning must be a positive integer, got {binning}")
    if b == 1:
        return stack
    h, w = int(stack.shape[-2]), int(stack.shape[-1])
    hb, wb = h // b, w // b
    if hb < 1 or wb < 1:
        raise DataError(f"images of {h}x{w} pixels are too small for binning {b}")
    y0, x0 = (h - hb * b) // 2, (w - wb * b) // 2
    core = stack[..., y0 : y0 + hb * b, x0 : x0 + wb * b]
    lead = core.shape[:-2]
    return core.reshape(*lead, hb, b, wb, b).mean(dim=(-3, -1))
