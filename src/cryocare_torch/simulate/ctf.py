"""Image formation in Fourier space: the CTF and the dose-dependent fading of the signal.

* CTF (weak-phase / weak-amplitude object, no astigmatism, no phase plate)::

      chi(k) = pi * lambda * dz * k^2 - pi / 2 * Cs * lambda^3 * k^4      (dz > 0: underfocus)
      CTF(k) = sqrt(1 - A^2) * sin(chi) + A * cos(chi)

  with the same sign as CTFFIND / torch-ctf (positive at low frequency for underfocus). The image of a
  phase ``phi`` is ``I = 1 - 2 * F^-1[CTF * F[phi]]``: dense matter is dark, as in real data.
* Exposure filter of Grant & Grigorieff (2015, eLife 4:e06980): after an accumulated exposure ``N``
  (e-/A^2) the signal amplitude at spatial frequency ``k`` (1/A) is multiplied by
  ``exp(-N / (2 * Ne(k)))`` with the critical exposure ``Ne(k) = 0.245 * k^-1.665 + 2.81``.

* Tilted specimen: with the tilt axis vertical (along y), the defocus changes across the image as
  ``dz(x) = dz0 + (x - xc) * pixel_size * tan(tilt)`` (:func:`column_defocus`), the convention of IMOD's
  ``ctfphaseflip`` (``stripDefocus = defocus - (nx/2 + xShift - stripMid) * tan(angle) * pixelSize`` in
  IMOD's ``ctfphaseflip.cpp``, Xiong 2007-2008: more underfocus at larger x for a positive tilt). An image
  whose defocus varies by column is a blend of images at a few defocus values, each column taking the two
  nearest (:func:`defocus_samples`, :func:`column_weights`); the simulator forms tilted images that way and
  :mod:`cryocare_torch.prepare.ctf` corrects them the same way.

All frequencies are in 1/Angstrom; grids follow ``torch.fft.rfft2`` layout ``(h, w // 2 + 1)``.
"""

from __future__ import annotations

import math

import torch

CRITICAL_EXPOSURE_A = 0.245
CRITICAL_EXPOSURE_B = -1.665
CRITICAL_EXPOSURE_C = 2.81


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom (0.0197 A at 300 kV)."""
    v = voltage_kv * 1e3
    return 12.2642598 / math.sqrt(v * (1.0 + 0.978475e-6 * v))


def interaction_constant(voltage_kv: float) -> float:
    """Phase shift per projected potential, sigma = 2 pi m e lambda / h^2, in rad / (V * A).

    About 6.5e-4 at 300 kV, 7.3e-4 at 200 kV.
    """
    rest_kev = 510.99895
    lam = electron_wavelength(voltage_kv)
    return 2.0 * math.pi / (lam * voltage_kv * 1e3) * (rest_kev + voltage_kv) / (2 * rest_kev + voltage_kv)


def frequency_grid(shape: tuple[int, int], pixel_size: float, *, rfft: bool = True) -> torch.Tensor:
    """Spatial-frequency magnitude ``|k|`` in 1/A on the (r)fft grid of an image of ``shape``."""
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(w, d=pixel_size, dtype=torch.float64) if rfft else torch.fft.fftfreq(
        w, d=pixel_size, dtype=torch.float64
    )
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def ctf(
    k: torch.Tensor,
    *,
    defocus_um: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> torch.Tensor:
    """CTF at spatial frequencies ``k`` (1/A, any shape). ``defocus_um == 0`` gives the constant ``A``."""
    lam = electron_wavelength(voltage_kv)
    dz = defocus_um * 1e4
    cs = cs_mm * 1e7
    k2 = k.to(torch.float64) ** 2
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs * lam**3 * k2 * k2
    a = float(amplitude_contrast)
    return math.sqrt(max(0.0, 1.0 - a * a)) * torch.sin(chi) + a * torch.cos(chi)


def ctf_1d(
    n: int, pixel_size: float, *, defocus_um: float, voltage_kv: float = 300.0, cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, CTF(k))`` at ``n`` frequencies from 0 to Nyquist ``1 / (2 * pixel_size)``."""
    k = torch.linspace(0.0, 0.5 / pixel_size, n, dtype=torch.float64)
    return k, ctf(k, defocus_um=defocus_um, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast)


def ctf_2d(
    shape: tuple[int, int], pixel_size: float, *, defocus_um: float, voltage_kv: float = 300.0,
    cs_mm: float = 2.7, amplitude_contrast: float = 0.07,
) -> torch.Tensor:
    """CTF on the ``rfft2`` grid of an image of ``shape`` (float64, ``(h, w // 2 + 1)``)."""
    k = frequency_grid(shape, pixel_size)
    return ctf(k, defocus_um=defocus_um, voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast)


def critical_exposure(k: torch.Tensor) -> torch.Tensor:
    """Grant & Grigorieff critical exposure ``Ne(k)`` in e-/A^2 (infinite at k = 0)."""
    k = k.to(torch.float64)
    safe = torch.where(k > 0, k, torch.ones_like(k))
    ne = CRITICAL_EXPOSURE_A * safe**CRITICAL_EXPOSURE_B + CRITICAL_EXPOSURE_C
    return torch.where(k > 0, ne, torch.full_like(k, math.inf))


def exposure_filter(k: torch.Tensor, exposure: float | torch.Tensor) -> torch.Tensor:
    """Signal amplitude left after ``exposure`` e-/A^2: ``exp(-N / (2 Ne(k)))``.

    ``exposure`` may be a tensor of shape ``(n,)``; the result then has shape ``(n, *k.shape)``.
    """
    ne = critical_exposure(k)
    n = torch.as_tensor(exposure, dtype=torch.float64)
    if n.ndim:
        n = n.reshape(-1, *([1] * k.ndim))
    return torch.exp(-n / (2.0 * ne))


def column_defocus(width: int, pixel_size: float, defocus_um: float, tilt_deg: float, *,
                   x_shift: float = 0.0) -> torch.Tensor:
    """Underfocus (um) of each of ``width`` columns of a view tilted by ``tilt_deg`` about a vertical axis.

    ``defocus_um`` holds at column ``(width - 1) / 2 + x_shift`` (the centre of the image the defocus was
    measured on, moved by the alignment's x shift, as IMOD's ``ctfphaseflip`` reads it from the ``.xf``).
    """
    x = torch.arange(width, dtype=torch.float64) - ((width - 1) / 2.0 + x_shift)
    return defocus_um + x * pixel_size * math.tan(math.radians(tilt_deg)) * 1e-4


def defocus_samples(columns_um: torch.Tensor, step_um: float) -> torch.Tensor:
    """Evenly spaced defocus values from the smallest to the largest of ``columns_um``, at most ``step_um`` apart
    (one value when they are all equal)."""
    lo, hi = float(columns_um.min()), float(columns_um.max())
    k = max(1, math.ceil((hi - lo) / step_um - 1e-9)) + 1 if hi - lo > 1e-9 else 1
    return torch.linspace(lo, hi, k, dtype=torch.float64) if k > 1 else torch.tensor([lo], dtype=torch.float64)


def column_weights(columns_um: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """``(len(samples), width)`` linear-interpolation weights of every column between its two nearest samples
    (each column's weights sum to 1)."""
    if samples.numel() == 1:
        return torch.ones((1, columns_um.numel()), dtype=torch.float64)
    pos = (columns_um - samples[0]) / (samples[1] - samples[0])
    pos = pos.clamp(0, samples.numel() - 1)
    lo = pos.floor().clamp(max=samples.numel() - 2).long()
    t = pos - lo
    w = torch.zeros((samples.numel(), columns_um.numel()), dtype=torch.float64)
    cols = torch.arange(columns_um.numel())
    w[lo, cols] = 1 - t
    w[lo + 1, cols] += t
    return w
