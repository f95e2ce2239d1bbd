"""What :func:`cryocare_torch.train.train` returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    best: Path
    last: Path
    history_path: Path
    history: list[dict[str, Any]]
    epochs: int
    """Completed epochs."""
    steps: int
    best_val_loss: float | None
    stop_reason: str
    """``"epochs"`` (all epochs done) or ``"time_limit"`` (``max_minutes`` reached)."""
    elapsed_s: float
    ndim: int
    normalization: dict[str, Any]
