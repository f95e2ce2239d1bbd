"""A counting direct-electron detector: pixel MTF, per-pixel gain, hot and dead pixels.

* MTF: each pixel integrates the expected image over its area, i.e. the expected counts are filtered by
  ``sinc(f_y) sinc(f_x)`` (f in cycles per pixel; 0.64 at Nyquist along an axis) before Poisson counting;
  the noise stays white, so the DQE is ``MTF^2`` -- the ideal-counting model (McMullan et al. 2014,
  Ultramicroscopy 147:156; real K2/K3/Falcon counting modes are within ~20% of it below half Nyquist).
* Gain: pixel ``p`` records ``Poisson(s_p * lambda)`` with sensitivity ``s_p ~ 1 + gain_sd * N(0, 1)``;
  :meth:`Detector.gain_reference` is the multiplicative reference ``1/s_p`` (MotionCor2/RELION convention:
  corrected = raw x gain), stored in the orientation given by ``gain_rotation``/``gain_flip`` of
  :func:`cryocare_torch.io.movie.orient_gain` inverted, so that those settings undo it.
* Defects: ``hot_fraction`` of the pixels add ``Poisson(hot_counts)`` every frame; ``dead_fraction`` read 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Detector:
    mtf: bool = True
    gain_sd: float = 0.0
    hot_fraction: float = 0.0
    hot_counts: float = 20.0
    dead_fraction: float = 0.0
    seed: int = 0

    def _maps(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        sens = (1.0 + self.gain_sd * torch.randn(shape, generator=g)).clamp(min=0.2)
        u = torch.rand(shape, generator=g)
        hot = u < self.hot_fraction
        dead = (u >= self.hot_fraction) & (u < self.hot_fraction + self.dead_fraction)
        return sens, hot, dead

    def defects(self, shape: tuple[int, int]) -> torch.Tensor:
        """(h, w) bool: the hot and dead pixels."""
        _, hot, dead = self._maps(shape)
        return hot | dead

    def gain_reference(self, shape: tuple[int, int], *, rotation_k: int = 0, flip: str = "none") -> np.ndarray:
        """Multiplicative gain reference ``1/s`` (mean 1), stored so that ``orient_gain(ref, flip, rotation_k)``
        restores the frame orientation."""
        sens, _, _ = self._maps(shape)
        ref = (1.0 / sens).numpy()
        ref = ref / ref.mean()
        if flip == "x":
            ref = ref[:, ::-1]
        elif flip == "y":
            ref = ref[::-1, :]
        return np.ascontiguousarray(np.rot90(ref, k=int(rotation_k) % 4)).astype(np.float32)

    def count(self, lam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Counts ``(..., h, w)`` recorded for expected counts ``lam`` (float32)."""
        h, w = lam.shape[-2:]
        if self.mtf:
            fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
            mtf = (torch.sinc(fy) * torch.sinc(fx)).to(torch.float32)
            lam = torch.fft.irfft2(torch.fft.rfft2(lam) * mtf, s=(h, w)).clamp(min=0)
        sens, hot, dead = self._maps((h, w))
        counts = torch.poisson(lam.clamp(min=0) * sens, generator=generator)
        if bool(hot.any()):
            extra = torch.poisson(torch.full(lam.shape, self.hot_counts), generator=generator)
            counts = counts + extra * hot
        return counts * ~dead
