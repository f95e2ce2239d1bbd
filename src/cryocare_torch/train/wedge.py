"""Missing-wedge mode: learn to fill the wedge from the two halves alone, as DeepDeWedge does.

DeepDeWedge (Wiedemann & Heckel, Nat Commun 2024; github.com/MLI-lab/DeepDeWedge, ``ddw/utils/
subtomo_dataset.py``, ``masked_loss.py``, ``unet.py``), written anew here for cubic patch pairs ``(e, o)``:

1. both patches of a pair are rotated by one random rotation ``R`` (here one of the 24 exact cube rotations,
   :mod:`cryocare_torch.tomo.wedge`; by default none of those that leave the wedge in place, on which nothing
   is learnt about the wedge: ``train.wedge_upright_fraction``);
2. the network input is ``F^-1[W F(R e)]``: the rotated half given the wedge ``W`` (1 where measured) once more
   in its own frame, so it looks like a tomogram again, whatever ``R`` did to the original wedge;
3. the loss is the Noise2Noise error in Fourier space, counted only where the rotated target was measured,
   ``R W``; where the input lacks data (``1 - W``) it is weighted ``wedge_missing_weight`` (2 in DDW)::

       loss = 1/N^2 sum_k (R W)(k) [W(k) + weight (1 - W(k))] |F(f(input) - R o)(k)|^2

   (by Parseval DDW's mean of the squared inverse transforms of the masked difference; with ``W = 1`` it
   is the plain mean squared error). Where ``R W`` covers what ``W`` lacks, the target carries the
   measured data the input is missing, independent of the input's noise: the network learns to fill it;
4. every ``wedge_refresh_epochs`` epochs the wedge of each cached patch (both halves) is filled with the
   model's output while the measured data are kept, ``F^-1[W F(x) + (1 - W) F(f(W x))]`` (DDW's
   ``update_subtomo_missing_wedges``), so that inputs resemble the filled volumes the network must produce.

Prediction is unchanged (tiled, blended): the network maps a tomogram with a wedge to a filled one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..patches import PatchPairs
from ..runtime import autocast
from ..tomo.wedge import CUBE_ROTATIONS, rotate_spectrum, rotate_volume, wedge_mask


def apply_fourier_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``F^-1[mask F(x)]`` over the last three axes, real part, float32."""
    return torch.fft.ifftn(torch.fft.fftn(x.float(), dim=(-3, -2, -1)) * mask, dim=(-3, -2, -1)).real


class WedgeObjective:
    """Batches and loss of the missing-wedge mode for cubic patches of ``size`` voxels."""

    def __init__(self, tilt_range: tuple[float, float], size: int, *, missing_weight: float = 2.0,
                 upright_fraction: float | None = None, device: torch.device | None = None) -> None:
        self.mask = wedge_mask(size, float(tilt_range[0]), float(tilt_range[1]), device=device)
        self.missing_weight = float(missing_weight)
        self.size = size
        self.upright_fraction = upright_fraction
        # rotations that leave the wedge in place (R W = W): on them the loss is pure denoising. Compared on an odd
        # grid, which has no Nyquist plane (k = -1/2 has no mirror image on an even grid)
        probe = wedge_mask(9, float(tilt_range[0]), float(tilt_range[1]))
        upright = np.array([torch.equal(rotate_spectrum(probe, r), probe) for r in CUBE_ROTATIONS])
        self.upright, self.turned = np.flatnonzero(upright), np.flatnonzero(~upright)

    def draw_rotations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices into ``CUBE_ROTATIONS`` for ``n`` patch pairs: all 24 alike, or a fraction
        ``upright_fraction`` (drawn per pair) from those that leave the wedge in place."""
        if self.upright_fraction is None or self.turned.size == 0:
            return rng.integers(0, len(CUBE_ROTATIONS), size=n)
        upright = rng.random(n) < self.upright_fraction
        return np.where(upright, rng.choice(self.upright, size=n), rng.choice(self.turned, size=n))

    def batch(self, inp: torch.Tensor, tgt: torch.Tensor, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(network input, rotated target, Fourier loss weights)`` for ``(B, 1, n, n, n)`` pairs."""
        if inp.dim() != 5 or tuple(inp.shape[-3:]) != (self.size,) * 3:
            raise ConfigError(f"missing-wedge mode needs 3D cubic patches of {self.size} voxels, got "
                              f"{tuple(inp.shape)}")
        picks = self.draw_rotations(inp.shape[0], rng)
        rots = [CUBE_ROTATIONS[int(i)] for i in picks]
        r_inp = torch.stack([rotate_volume(x, r) for x, r in zip(inp, rots, strict=True)])
        r_tgt = torch.stack([rotate_volume(x, r) for x, r in zip(tgt, rots, strict=True)])
        measured = torch.stack([rotate_spectrum(self.mask, r) for r in rots])[:, None]  # R W per sample
        weights = measured * (self.mask + self.missing_weight * (1.0 - self.mask))
        return apply_fourier_mask(r_inp, self.mask), r_tgt.float(), weights

    def loss(self, output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
             reduction: str = "mean") -> torch.Tensor:
        """Weighted Fourier-space squared error (module docstring); ``sum``: summed over the batch, in units
        of voxels (divide by ``target.numel()`` for the mean)."""
        diff = torch.fft.fftn(output.float() - target.float(), dim=(-3, -2, -1))
        n = float(self.size**3)
        total = (weights * diff.real.square() + weights * diff.imag.square()).sum() / n
        return total if reduction == "sum" else total / target.numel()

    @torch.no_grad()
    def refresh(self, model: nn.Module, patches: PatchPairs, *, batch_size: int, device: torch.device,
                dtype: torch.dtype) -> int:
        """Fill the wedge of every cached patch (both halves) with the model's output; returns the number
        of patches updated (0 when the patches are not held in memory)."""
        if not patches.cached or len(patches) == 0:
            return 0
        was_training = model.training
        model.eval()
        for start in range(0, len(patches), batch_size):
            idx = np.arange(start, min(start + batch_size, len(patches)))
            pairs = patches.get_batch(idx).to(device)  # (B, 2, n, n, n)
            x = pairs.reshape(-1, 1, *pairs.shape[2:])
            with autocast(device, dtype):
                out = model(apply_fourier_mask(x, self.mask))
            spec = self.mask * torch.fft.fftn(x, dim=(-3, -2, -1))
            spec += (1.0 - self.mask) * torch.fft.fftn(out.float(), dim=(-3, -2, -1))
            filled = torch.fft.ifftn(spec, dim=(-3, -2, -1)).real.reshape(pairs.shape)
            patches.replace(idx, filled.cpu().numpy())
        model.train(was_training)
        return len(patches)
