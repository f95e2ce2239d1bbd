"""The training objective a run uses: plain Noise2Noise (:func:`.losses.n2n_loss`) or the missing-wedge mode
(:class:`.wedge.WedgeObjective`, when ``train.missing_wedge`` is set). The loop calls :meth:`Objective.prepare`
on every batch, :meth:`Objective.loss` for training and validation and :meth:`Objective.after_epoch`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..config import CryocareConfig
from ..errors import ConfigError
from ..patches import PatchData
from .losses import n2n_loss
from .wedge import WedgeObjective

VAL_KEY = 1 << 30  # rotation seeds of validation batches: (VAL_KEY, batch number), fixed for the whole run


class Objective:
    """Plain Noise2Noise, or DeepDeWedge-style wedge filling (see :mod:`.wedge`)."""

    def __init__(self, cfg: CryocareConfig, ndim: int, device: torch.device, rank: int = 0) -> None:
        tc = cfg.train
        self.seed, self.rank, self.device = tc.seed, rank, device
        self.refresh_every = tc.wedge_refresh_epochs
        self.wedge: WedgeObjective | None = None
        if tc.missing_wedge is not None:
            if ndim != 3:
                raise ConfigError("train.missing_wedge (--missing-wedge) needs tomograms (3D data), not images")
            size = int(cfg.patches.patch_size or 0)
            self.wedge = WedgeObjective(tc.missing_wedge, size, missing_weight=tc.wedge_missing_weight,
                                        upright_fraction=tc.wedge_upright_fraction, device=device)

    def prepare(self, inp: torch.Tensor, tgt: torch.Tensor, key: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(input, target, Fourier weights or None)`` on the device; ``key`` (epoch, step) seeds the rotations."""
        inp, tgt = inp.to(self.device, non_blocking=True), tgt.to(self.device, non_blocking=True)
        if self.wedge is None:
            return inp, tgt, None
        return self.wedge.batch(inp, tgt, np.random.default_rng([self.seed, *key, 9, self.rank]))

    def loss(self, output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
             reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        if self.wedge is None or weights is None:
            return n2n_loss(output, target, reduction=reduction)
        return self.wedge.loss(output, target, weights, reduction)

    def after_epoch(self, epoch: int, model: nn.Module, data: PatchData, *, batch_size: int, dtype: torch.dtype,
                    log: Callable[[str], None], force: bool = False) -> None:
        """Missing-wedge mode: refresh the cached patches every ``wedge_refresh_epochs`` epochs (``force``: now,
        e.g. when a run resumes after a refresh that its checkpoint does not hold)."""
        due = epoch >= self.refresh_every if force else epoch % max(self.refresh_every, 1) == 0
        if self.wedge is None or self.refresh_every <= 0 or not due:
            return
        n = 0
        for part in (data.train, data.val):
            if part is not None:
                n += self.wedge.refresh(model, part, batch_size=batch_size, device=self.device, dtype=dtype)
        log(f"missing wedge of {n} patch pairs filled with the model's output" if n else
            "missing wedge not refreshed: the patches are not held in memory (raise patches.cache_gb)")
