"""CTF correction of aligned views before back-projection: phase flipping (or a Wiener-type filter) in strips.

Views must be aligned (tilt axis vertical, as after the ``.xf``), as for IMOD's ``ctfphaseflip``. With the
tilt axis along y, the underfocus of column ``x`` is ``dz(x) = dz0 + (x - xc) * pixel * tan(tilt)``
(:func:`~cryocare_torch.simulate.ctf.column_defocus`; ``xc`` is the image centre moved by the ``.xf``'s x
shift, ``ctfphaseflip.cpp``'s ``nx/2 + xShift``). Where ``ctfphaseflip`` cuts the view into overlapping
vertical strips, corrects each at the defocus of its centre and interpolates between neighbouring strips
(``DefocusTol``/``InterpolationWidth``), here the whole view is corrected at defocus values at most
``defocus_step_nm`` apart spanning the view's range, and every column takes the two corrections nearest its
own defocus, linearly weighted (:func:`~cryocare_torch.simulate.ctf.column_weights`): strips in defocus rather
than in x, with no strip edges. An untilted view is one correction. Views are reflect-padded by 1/8 of
their size before the FFT.

* ``phaseflip``: multiply by ``sign(CTF)`` -- ``ctfphaseflip`` flips where its ``-CTF >= 0``, i.e. where our
  CTF (positive at low frequency for underfocus, :func:`~cryocare_torch.simulate.ctf.ctf`) is ``<= 0``;
* ``wiener``: multiply by ``CTF / (CTF^2 + c)`` with ``c = wiener_constant`` (also restores amplitudes, and
  boosts noise near zeros less than ``1/CTF`` would).

Astigmatism is ignored (the mean of defocus 1 and 2 is used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..simulate.ctf import column_defocus, column_weights, ctf_2d, defocus_samples

DEFAULT_OPTICS = {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07}


@dataclass(frozen=True)
class ViewCtf:
    """What the CTF correction of a stack of aligned views needs; arrays have one entry per view."""

    mode: str
    defocus_um: np.ndarray
    angles: np.ndarray
    pixel_size: float
    """Angstrom per pixel of the views being corrected."""
    x_shift: np.ndarray
    """x shift (pixels) of each view's ``.xf`` (0 without one)."""
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_step_nm: float = 50.0
    wiener_constant: float = 0.1

    def __post_init__(self) -> None:
        if self.mode not in ("phaseflip", "wiener"):
            raise ConfigError(f"CTF correction must be phaseflip or wiener, got {self.mode!r}")
        n = len(self.angles)
        if len(self.defocus_um) != n or len(self.x_shift) != n:
            raise DataError(f"{len(self.defocus_um)} defocus values and {len(self.x_shift)} shifts for {n} views")
        if not self.pixel_size > 0:
            raise ConfigError("the CTF correction needs the pixel size; give --pixel-size (A)")

    def subset(self, idx: np.ndarray) -> ViewCtf:
        """The same correction for views ``idx`` only (in that order)."""
        i = np.asarray(idx, dtype=np.int64)
        return replace(self, defocus_um=self.defocus_um[i], angles=self.angles[i], x_shift=self.x_shift[i])

    def describe(self) -> str:
        """One line: mode, defocus range, optics."""
        d = self.defocus_um
        return (f"CTF {self.mode}: underfocus {d.min():.2f}-{d.max():.2f} um over {len(d)} views, "
                f"{self.voltage_kv:g} kV, Cs {self.cs_mm:g} mm, amplitude contrast {self.amplitude_contrast:g}, "
                f"pixel {self.pixel_size:g} A")

    def correct(self, view: torch.Tensor, k: int) -> torch.Tensor:
        """The ``k``-th view ``(h, w)`` corrected (float32)."""
        return correct_view(view, self, k)


def _filter(dz_um: float, shape: tuple[int, int], ctf: ViewCtf) -> torch.Tensor:
    c = ctf_2d(shape, ctf.pixel_size, defocus_um=dz_um, voltage_kv=ctf.voltage_kv, cs_mm=ctf.cs_mm,
               amplitude_contrast=ctf.amplitude_contrast)
    if ctf.mode == "phaseflip":
        return torch.where(c > 0, 1.0, -1.0).to(torch.float64)
    return c / (c * c + ctf.wiener_constant)


def correct_view(view: torch.Tensor, ctf: ViewCtf, k: int) -> torch.Tensor:
    """Phase-flip (or Wiener-filter) view ``k`` of ``ctf`` in strips of defocus (see module docs)."""
    if view.ndim != 2:
        raise DataError(f"expected one 2D view, got shape {tuple(view.shape)}")
    h, w = view.shape
    py, px = min(h - 1, max(1, h // 8)), min(w - 1, max(1, w // 8))
    padded = F.pad(view.double()[None, None], (px, px, py, py), mode="reflect")[0, 0]
    shape = (int(padded.shape[0]), int(padded.shape[1]))
    cols = column_defocus(w, ctf.pixel_size, float(ctf.defocus_um[k]), float(ctf.angles[k]),
                          x_shift=float(ctf.x_shift[k]))
    samples = defocus_samples(cols, ctf.defocus_step_nm * 1e-3)
    weights = column_weights(cols, samples)
    spec = torch.fft.rfft2(padded)
    out = torch.zeros((h, w), dtype=torch.float64)
    for j, dz in enumerate(samples.tolist()):
        img = torch.fft.irfft2(spec * _filter(dz, shape, ctf), s=shape)[py : py + h, px : px + w]
        out += img * weights[j]
    return out.float()


def resolve_optics(voltage_kv: float | None, cs_mm: float | None, amplitude_contrast: float | None,
                   *headers: dict[str, float | None]) -> dict[str, float]:
    """Given values first, then the first header (``.mdoc``/CTFFIND) that has one, then 300 kV / 2.7 mm / 0.07."""
    given = {"voltage_kv": voltage_kv, "cs_mm": cs_mm, "amplitude_contrast": amplitude_contrast}
    out = {}
    for key, default in DEFAULT_OPTICS.items():
        found = [h.get(key) for h in headers if h.get(key) is not None]
        value = given[key] if given[key] is not None else (found[0] if found else default)
        if value is None or not math.isfinite(float(value)):
            raise ConfigError(f"CTF: {key} is not a finite number")
        out[key] = float(value)
    return out
