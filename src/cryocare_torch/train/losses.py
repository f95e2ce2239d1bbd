"""The training loss, one place for every objective: training and validation both call :func:`n2n_loss`.

Noise2Noise (Lehtinen et al. 2018): the network maps one half to the other and the mean squared error
between the output and the other half is minimised; with noise independent between the halves its
minimiser is the clean signal. A new objective (e.g. a missing-wedge loss) goes here, selected by a
``train`` setting in :mod:`cryocare_torch.config`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def n2n_loss(output: torch.Tensor, target: torch.Tensor, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Mean (or summed) squared error between the network's output and the other half, in float32."""
    return F.mse_loss(output.float(), target.float(), reduction=reduction)
