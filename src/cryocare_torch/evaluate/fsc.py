"""Fourier shell (3D) and ring (2D) correlation between two maps, with resolution estimates.

``FSC(k) = sum_k Re(A B*) / sqrt(sum_k |A|^2 sum_k |B|^2)`` over the Fourier voxels of shell ``k``.

Shells are spaced ``1 / min(shape)`` cycles/voxel apart, so every shape (cubes and rectangular boxes)
has ``min(shape) // 2 + 1`` shells. Two binnings:

* ``"linear"`` (default) -- each Fourier voxel is shared between its two neighbouring shells with
  linear (triangular) weights, over the rfft half-space, exactly as teamtomo's
  ``torch_fourier_shell_correlation`` 0.6 does; results agree with it to float precision for cubes
  and rectangular boxes. Curves are smooth.
* ``"nearest"`` -- classic hard shells (voxel -> nearest shell), with full Hermitian weighting
  (rfft columns other than ``kx = 0`` and ``kx = Nyquist`` count twice).

Shell 0 (the DC term) is 1 by convention in both. ``n_voxels_per_shell`` counts Fourier voxels of
the full (both-halves) transform in the shell (weighted by the linear weights), so ``3 / sqrt(n)``
is the usual 3-sigma noise threshold (conservative for the linear binning).

Memory: both rffts are held at once (~4x the maps in complex64). For very large tomograms use
``crop`` (a central box); :func:`cryocare_torch.evaluate.fsc_io.fsc_files` then reads only that box from
disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .shells import Binning, shell_frequencies, shell_sums

MaskSpec = torch.Tensor | np.ndarray | Literal["sphere", "box"] | None


@dataclass(frozen=True)
class FSCResult:
    """One FSC/FRC curve. Arrays have shape ``(n_shells,)``; shell 0 is the DC term."""

    frequency_per_nm: np.ndarray
    fsc: np.ndarray
    n_voxels_per_shell: np.ndarray
    voxel_size: float
    """Angstrom."""
    shape: tuple[int, ...] = ()
    binning: str = "linear"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution_nm(self) -> np.ndarray:
        """``1 / frequency`` in nm (``inf`` for shell 0)."""
        with np.errstate(divide="ignore"):
            return np.where(self.frequency_per_nm > 0, 1.0 / self.frequency_per_nm, np.inf)

    @property
    def nyquist_nm(self) -> float:
        """Finest resolution the curve reaches (its last shell; ``2 * voxel size`` for even boxes)."""
        return float(1.0 / self.frequency_per_nm[-1])

    def noise_threshold(self, n_sigma: float = 3.0) -> np.ndarray:
        """``n_sigma / sqrt(n_voxels)`` per shell: |FSC| of pure noise stays below it."""
        return n_sigma / np.sqrt(np.maximum(self.n_voxels_per_shell, 1.0))

    def crossing_shell(self, threshold: float) -> int | None:
        """The first shell (from 1) below ``threshold``, ``None`` when the curve stays above it."""
        below = ~(self.fsc[1:] >= threshold)  # NaN counts as below
        return int(np.argmax(below)) + 1 if below.any() else None

    def crosses(self, threshold: float) -> bool:
        """False when the curve stays above ``threshold`` up to the last shell."""
        return self.crossing_shell(threshold) is not None

    def resolution_at(self, threshold: float) -> float:
        """Resolution (nm) where the curve first drops below ``threshold``, interpolated linearly in
        frequency between the two shells around the crossing. When it never does, the last shell's
        resolution (Nyquist) is returned and :meth:`crosses` is False."""
        if not -1.0 < threshold < 1.0:
            raise ConfigError(f"FSC threshold must be between -1 and 1, got {threshold}")
        i = self.crossing_shell(threshold)
        if i is None:
            return self.nyquist_nm
        f0, f1 = self.frequency_per_nm[i - 1], self.frequency_per_nm[i]
        c0, c1 = self.fsc[i - 1], self.fsc[i]
        t = (c0 - threshold) / (c0 - c1) if np.isfinite(c1) and c0 != c1 else 1.0
        return float(1.0 / (f0 + float(np.clip(t, 0.0, 1.0)) * (f1 - f0)))

    @property
    def res_0_5(self) -> float:
        return self.resolution_at(0.5)

    @property
    def res_0_143(self) -> float:
        return self.resolution_at(0.143)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary and curve (``null`` for the infinite resolution of shell 0)."""
        out: dict[str, Any] = {"voxel_size_angstrom": self.voxel_size, "shape": list(self.shape),
                               "binning": self.binning, "nyquist_nm": self.nyquist_nm}
        for name, t in (("0_5", 0.5), ("0_143", 0.143)):
            out[f"res_{name}_nm"] = self.resolution_at(t)
            out[f"res_{name}_reaches_nyquist"] = not self.crosses(t)
        res = [float(r) if np.isfinite(r) else None for r in self.resolution_nm]
        return {**out, **self.meta, "frequency_per_nm": self.frequency_per_nm.tolist(), "resolution_nm": res,
                "fsc": self.fsc.tolist(), "n_voxels_per_shell": self.n_voxels_per_shell.tolist()}

    def to_csv(self) -> str:
        """One row per shell: shell, frequency_per_nm, resolution_nm, fsc, n_voxels, threshold_3sigma."""
        rows = ["shell,frequency_per_nm,resolution_nm,fsc,n_voxels,threshold_3sigma"]
        cols = (self.frequency_per_nm, self.resolution_nm, self.fsc, self.n_voxels_per_shell, self.noise_threshold())
        rows += [f"{k}," + ",".join(f"{v:.6g}" for v in vals) for k, vals in enumerate(zip(*cols, strict=True))]
        return "\n".join(rows) + "\n"


def _tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


def central_box(shape: Sequence[int], crop: int | Sequence[int]) -> tuple[slice, ...]:
    """Slices of the central box of size ``crop`` (int: every axis; clamped to ``shape``)."""
    sizes = [int(crop)] * len(shape) if isinstance(crop, (int, np.integer)) else [int(c) for c in crop]
    if len(sizes) != len(shape) or min(sizes) < 1:
        raise ConfigError(f"crop must be a positive int or one size per axis {tuple(shape)}, got {crop!r}")
    sizes = [min(c, n) for c, n in zip(sizes, shape, strict=True)]
    return tuple(slice((n - c) // 2, (n - c) // 2 + c) for n, c in zip(shape, sizes, strict=True))


def _cosine(d: torch.Tensor, width: float) -> torch.Tensor:
    """1 for d <= 0, 0 for d >= width, raised-cosine in between (d: distance into the edge)."""
    if width <= 0:
        return (d <= 0).to(torch.float64)
    return torch.where(d <= 0, 1.0, torch.where(d >= width, 0.0, 0.5 * (1 + torch.cos(torch.pi * d / width))))


def make_mask(shape: Sequence[int], mask: torch.Tensor | str, soft_edge: float = 0.0) -> torch.Tensor:
    """Real-space weights ``(*shape)`` in [0, 1] (float64) for :func:`fsc` (see its ``mask``)."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) + 0.5 for n in shape], indexing="ij")
    if isinstance(mask, str):
        if mask == "sphere":
            r = torch.sqrt(torch.stack([(g - n / 2) ** 2 for g, n in zip(grids, shape, strict=True)]).sum(0))
            return _cosine(r - (min(shape) / 2 - soft_edge), soft_edge)
        if mask == "box":
            w = torch.ones(tuple(shape), dtype=torch.float64)
            for g, n in zip(grids, shape, strict=True):
                w = w * _cosine(soft_edge - torch.minimum(g, n - g), soft_edge)
            return w
        raise ConfigError(f"mask must be an array, 'sphere' or 'box', got {mask!r}")
    m = mask.detach().to("cpu", torch.float64)
    if soft_edge <= 0:
        return m.clamp(0.0, 1.0)
    from scipy.ndimage import distance_transform_edt

    inside = (m > 0.5).numpy()
    if not inside.any():
        raise DataError("the FSC mask is empty (no value above 0.5)")
    dist = torch.from_numpy(distance_transform_edt(~inside))
    return _cosine(dist, soft_edge)


def _cross_and_powers(chunk: list[torch.Tensor]) -> torch.Tensor:
    a, b = chunk
    return torch.stack([(a * b.conj()).real, a.abs() ** 2, b.abs() ** 2])


def checked_voxel_size(voxel_size: object) -> float:
    """``voxel_size`` (Angstrom) as a float, or a :class:`ConfigError` when it is not a positive number."""
    vs = float(voxel_size) if isinstance(voxel_size, (int, float, np.floating)) else math.nan
    if not (math.isfinite(vs) and vs > 0):
        raise ConfigError(f"voxel_size must be a positive number of Angstrom, got {voxel_size!r}")
    return vs


def fsc(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, *, voxel_size: float, mask: MaskSpec = None,
    soft_edge: float = 0.0, crop: int | Sequence[int] | None = None, binning: Binning = "linear",
) -> FSCResult:
    """FSC of two 3D maps ``(d, h, w)`` or FRC of two images ``(h, w)``; ``voxel_size`` in Angstrom.

    ``mask``: an array of the maps' shape (values in [0, 1]; with ``soft_edge > 0`` it is binarised at
    0.5 and given a cosine edge of ``soft_edge`` voxels outside), ``"sphere"`` (radius
    ``min(shape)/2``, soft edge inside) or ``"box"`` (cosine taper of ``soft_edge`` voxels at the box
    faces). Both maps are multiplied by it. ``crop``: compute on a central box of that size (int or
    per-axis), e.g. to bound memory for large tomograms; the mask is cropped alike.
    """
    vs = checked_voxel_size(voxel_size)
    if binning not in ("linear", "nearest"):
        raise ConfigError(f"binning must be 'linear' or 'nearest', got {binning!r}")
    if soft_edge < 0:
        raise ConfigError(f"soft_edge must be >= 0 voxels, got {soft_edge}")
    ta, tb = _tensor(a), _tensor(b)
    if ta.shape != tb.shape:
        raise DataError(f"FSC needs maps of the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    if ta.ndim not in (2, 3):
        raise DataError(f"FSC needs 2D images or 3D volumes, got shape {tuple(ta.shape)}")
    tm = _tensor(mask) if isinstance(mask, (torch.Tensor, np.ndarray)) else None
    if tm is not None and tm.shape != ta.shape:
        raise DataError(f"mask shape {tuple(tm.shape)} differs from the maps' shape {tuple(ta.shape)}")
    box = central_box(tuple(ta.shape), crop) if crop is not None else ...
    ta, tb, tm = ta[box], tb[box], (tm[box] if tm is not None else None)
    shape = tuple(int(s) for s in ta.shape)
    if min(shape) < 4:
        raise DataError(f"FSC needs at least 4 voxels along every axis, got shape {shape}")
    dtype = torch.float64 if ta.dtype == torch.float64 else torch.float32
    ta, tb = ta.to(dtype), tb.to(dtype)
    if not (torch.isfinite(ta).all() and torch.isfinite(tb).all()):
        raise DataError("FSC inputs contain NaN or infinite values")
    if mask is not None:
        w = make_mask(shape, tm if tm is not None else str(mask), soft_edge).to(ta.device, dtype)
        ta, tb = ta * w, tb * w
    n_shells = min(shape) // 2 + 1
    fa, fb = torch.fft.rfftn(ta), torch.fft.rfftn(tb)
    num, pa, pb, count = shell_sums([fa, fb], _cross_and_powers, shape, binning, n_shells)
    den = torch.sqrt(pa * pb)
    curve = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.zeros_like(num))
    curve[0] = 1.0
    return FSCResult(shell_frequencies(shape, vs), curve.cpu().numpy(), count.cpu().numpy(), vs, shape, binning)
