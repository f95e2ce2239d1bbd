"""The plain Noise2Noise loss; training and validation reach it through :class:`.objective.Objective`.

Noise2Noise (Lehtinen et al. 2018): the network maps one half to the other and the mean squared error
between the output and the other half is minimised; with noise independent between the halves its
minimiser is the clean signal. :mod:`.objective` selects the objective of a run (this one, or the
missing-wedge mode of :mod:`.wedge` when ``train.missing_wedge`` is set).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def n2n_loss(output: torch.Tensor, target: torch.Tensor, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Mean (or summed) squared error between the network's output and the other half, in float32."""
    return F.mse_loss(output.float(), target.float(), reduction=reduction)
