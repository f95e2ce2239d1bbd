"""Figures for reports: FSC curves, central slices with a scale bar, training loss curves.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display needed). Figures are written
atomically at 150 dpi in the format given by the file suffix (png, pdf, svg, ...); every function
returns the path it wrote.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import ConfigError, DataError
from ..io.atomic import atomic_path
from .fsc import FSCResult
from .fsc_truth import TruthFSCEstimate

if TYPE_CHECKING:  # matplotlib >= 3.9 names its rc keys
    from matplotlib.typing import RcKeyType

DPI = 150
_STYLE: dict[RcKeyType, Any] = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9}


def _save(fig: Figure, path: str | Path, overwrite: bool, description: str | None = None) -> Path:
    """Write ``fig``; ``description`` goes into a PNG's ``Description`` text chunk (what the panels show)."""
    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    meta = {"Description": description} if description and fmt == "png" else None
    with atomic_path(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=meta)
    return out


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _styled(func: Callable[..., Path]) -> Callable[..., Path]:
    """Run a figure function under the module's font sizes without touching global rcParams."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        with matplotlib.rc_context(_STYLE):
            return func(*args, **kwargs)

    return wrapper


def _fmt_res(r: FSCResult, t: float) -> str:
    return f"{'<' if not r.crosses(t) else ''}{r.resolution_at(t):.2f} nm"


@_styled
def plot_fsc(
    results: Mapping[str, FSCResult], path: str | Path, thresholds: Sequence[float] = (0.5, 0.143), *,
    title: str | None = None, show_noise: bool = False, overwrite: bool = True,
) -> Path:
    """FSC curves against spatial frequency (1/nm, bottom) and resolution (nm, top), with threshold
    lines and each curve's crossings in the legend ('<' when it stays above a threshold to Nyquist).
    ``show_noise`` adds each curve's 3-sigma noise threshold."""
    if not results:
        raise ConfigError("plot_fsc needs at least one FSC curve")
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    fmax = max(float(r.frequency_per_nm[-1]) for r in results.values())
    for label, r in results.items():
        crossings = ", ".join(f"{t:g}: {_fmt_res(r, t)}" for t in thresholds)
        (line,) = ax.plot(r.frequency_per_nm, r.fsc, lw=1.8, label=f"{label} ({crossings})")
        for t in thresholds:
            if r.crosses(t):
                ax.plot(1.0 / r.resolution_at(t), t, "o", color=line.get_color(), ms=5)
        if show_noise:
            ax.plot(r.frequency_per_nm[1:], r.noise_threshold()[1:], ":", color=line.get_color(), lw=1)
    for t in thresholds:
        ax.axhline(t, color="0.4", ls="--", lw=1)
        ax.text(fmax, t, f" {t:g}", va="center", ha="left", color="0.3", fontsize=9)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlim(0, fmax)
    ax.set_ylim(min(-0.1, min(float(np.nanmin(r.fsc)) for r in results.values())), 1.05)
    ax.set_xlabel("spatial frequency (1/nm)")
    ax.set_ylabel("Fourier shell correlation")
    top = ax.secondary_xaxis("top", functions=(lambda f: 1.0 / np.maximum(f, 1e-9),
                                               lambda r: 1.0 / np.maximum(r, 1e-9)))
    res_ticks = [v for v in (100, 50, 20, 10, 7, 5, 4, 3, 2.5, 2, 1.5, 1.2, 1, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)
                 if 1.0 / v <= fmax and 1.0 / v >= fmax / 25]
    top.set_xticks(res_ticks, [f"{v:g}" for v in res_ticks])
    top.set_xlabel("resolution (nm)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=True)
    if title:
        ax.set_title(title)
    return _save(fig, path, overwrite)


def plot_estimated_fsc_truth(estimate: TruthFSCEstimate, region: Sequence[Sequence[int]], path: str | Path, *,
                             overwrite: bool = True) -> Path:
    """The estimated FSC of the restoration against the truth beside the raw average's
    ``sqrt(2 FSC / (1 + FSC))`` and, when known, the true FSC against the truth on the same region."""
    curves = {"restoration vs truth, estimated from the halves": estimate.curve,
              "raw average vs truth, sqrt(2F/(1+F)) of the raw halves": estimate.raw}
    if estimate.true is not None:
        curves["restoration vs truth, true (truth given)"] = estimate.true
    where = ", ".join(f"{ax} {a}-{b}" for ax, (a, b) in zip("zyx", region, strict=True))
    return plot_fsc(curves, path, title=f"FSC against the truth on the region never trained on ({where})",
                    overwrite=overwrite)


_AXES = {"xy": (0, ("x", "y")), "xz": (1, ("x", "z")), "yz": (2, ("y", "z"))}


def _slice(vol: np.ndarray, plane: str) -> np.ndarray:
    if vol.ndim == 2:
        return vol
    if plane not in _AXES:
        raise ConfigError(f"slice plane must be one of {sorted(_AXES)}, got {plane!r}")
    axis = _AXES[plane][0]
    sl = np.take(vol, vol.shape[axis] // 2, axis=axis)
    return sl.T if plane == "yz" else sl  # yz: y horizontal, z vertical


def _nice_length(max_nm: float) -> float:
    exp = 10 ** math.floor(math.log10(max_nm))
    return max(m * exp for m in (1, 2, 5, 10) if m * exp <= max_nm)


def _scale_bar(ax: Any, shape: tuple[int, int], voxel_size: float, length_nm: float | None) -> None:
    h, w = shape
    nm_per_px = voxel_size / 10.0
    length = length_nm if length_nm is not None else _nice_length(0.25 * w * nm_per_px)
    px = length / nm_per_px
    if px > 0.9 * w:
        return
    thick, x0, y0 = max(1.0, 0.012 * w), 0.04 * w, h - 0.04 * w  # sized by the width: same on every plane
    ax.add_patch(Rectangle((x0, y0 - thick), px, thick, color="white", ec="black", lw=0.5))
    ax.text(x0 + px / 2, y0 - thick - 0.01 * w, f"{length:g} nm", color="white", ha="center", va="bottom",
            fontsize=10, fontweight="bold", path_effects=_outline())


def _outline() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2, foreground="black")]


@_styled
def slices_figure(
    volumes: Mapping[str, Any], path: str | Path, voxel_size: float | None = None,
    axes: Sequence[str] = ("xy", "xz"), scale_bar_nm: float | None = None, *,
    percentiles: tuple[float, float] = (1.0, 99.0), title: str | None = None, overwrite: bool = True,
    beside: bool = False,
) -> Path:
    """Central slices of each volume in each plane of ``axes``, grey levels clipped to the volume's
    ``percentiles`` over the shown slices, and a scale bar (``scale_bar_nm``, default a round length near a
    quarter of the width) when ``voxel_size`` (Angstrom) is known. Volumes are columns and planes rows; with
    ``beside`` volumes are rows and the planes sit side by side (xy, then xz and yz at the same voxel scale:
    yz has y vertical like xy). 2D images give one row. A PNG records its panels (``volume:plane``) in its
    ``Description`` text chunk."""
    if not volumes:
        raise ConfigError("slices_figure needs at least one volume")
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)).astype(np.float32)
              for k, v in volumes.items()}
    if any(a.ndim not in (2, 3) for a in arrays.values()):
        raise DataError("slices_figure needs 2D images or 3D volumes")
    planes = list(axes) if all(a.ndim == 3 for a in arrays.values()) else ["xy"]
    panels = {k: [_slice(a, p) for p in planes] for k, a in arrays.items()}
    first = next(iter(panels.values()))
    col_w = 3.4
    if beside:
        scale = col_w / first[0].shape[1]  # inches per voxel, xy at the usual column width
        widths, row_h = [s.shape[1] for s in first], max(s.shape[0] for s in first) * scale
        fig = _figure(scale * sum(widths) + 0.8, row_h * len(panels) + 0.6 + (0.3 if title else 0))
        grid = fig.add_gridspec(len(panels), len(planes), width_ratios=widths)
    else:
        heights = [s.shape[0] / s.shape[1] for s in first]
        fig = _figure(col_w * len(panels), col_w * sum(heights) + 0.6 + (0.3 if title else 0))
        grid = fig.add_gridspec(len(planes), len(panels), height_ratios=heights)
    for c, (label, slices) in enumerate(panels.items()):
        shown = np.concatenate([s.ravel() for s in slices])
        lo, hi = np.percentile(shown[np.isfinite(shown)], percentiles) if np.isfinite(shown).any() else (0, 1)
        for r, (plane, img) in enumerate(zip(planes, slices, strict=True)):
            ax = fig.add_subplot(grid[c, r] if beside else grid[r, c], label=f"{label}:{plane}")
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            top, left = (c == 0, r == 0) if beside else (r == 0, c == 0)
            if top:
                ax.set_title(plane if beside and arrays[label].ndim == 3 else label)
            if left:
                ax.set_ylabel(label if beside else plane if arrays[label].ndim == 3 else "")
            if voxel_size is not None and voxel_size > 0 and (r == 0 or not beside):
                _scale_bar(ax, img.shape, voxel_size, scale_bar_nm)
    if title:
        fig.suptitle(title)
    return _save(fig, path, overwrite, description="panels: " + "; ".join(str(ax.get_label()) for ax in fig.axes))


def _history_series(history: Any) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """``{key: values}`` from a dict of lists or a list of per-epoch dicts; x from 'epoch' if present."""
    if isinstance(history, Mapping):
        cols = {k: list(v) for k, v in history.items() if isinstance(v, (list, tuple, np.ndarray))}
    else:
        rows = list(history)
        keys = [k for k in (rows[0] if rows else {}) if all(isinstance(r.get(k), (int, float)) for r in rows)]
        cols = {k: [r[k] for r in rows] for k in keys}
    x = np.asarray(cols.pop("epoch"), dtype=float) if "epoch" in cols else None
    return x, {k: np.asarray(v, dtype=float) for k, v in cols.items()}


@_styled
def loss_curve(history: Any, path: str | Path, *, title: str | None = None, overwrite: bool = True) -> Path:
    """Training/validation losses per epoch (log scale when positive), learning rate on a right axis.

    ``history``: ``{"train_loss": [...], "val_loss": [...], "epoch": [...], "lr": [...]}`` or a list of
    per-epoch dicts with such keys; every key containing 'loss' is drawn."""
    x, cols = _history_series(history)
    losses = {k: v for k, v in cols.items() if "loss" in k and v.size}
    if not losses:
        raise DataError("the training history has no loss values to plot")
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for k, v in losses.items():
        ax.plot(x if x is not None and x.size == v.size else np.arange(1, v.size + 1), v, lw=1.6,
                label=k.replace("_", " "), marker="o" if v.size < 30 else None, ms=3)
    if all((v[np.isfinite(v)] > 0).all() for v in losses.values()):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    lr = next((cols[k] for k in ("lr", "learning_rate") if k in cols and cols[k].size), None)
    if lr is not None:
        ax2 = ax.twinx()
        ax2.plot(x if x is not None and x.size == lr.size else np.arange(1, lr.size + 1), lr, color="0.5",
                 ls=":", lw=1.2, label="learning rate")
        ax2.set_ylabel("learning rate", color="0.4")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return _save(fig, path, overwrite)
