"""Learning-rate schedules: cosine over steps or a wall-time budget, reduce-on-plateau, constant."""

from __future__ import annotations

import math
from typing import Any

import torch


class LRSchedule:
    """Sets the optimiser's learning rate. ``step_update`` after every step, ``epoch_update`` per epoch.

    * ``cosine``: ``lr0 * (f + (1 - f) * (1 + cos(pi * t)) / 2)`` with ``t`` = the larger of the step
      fraction ``step / total_steps`` and the time fraction ``elapsed / max_seconds`` (if a budget is
      set), ``f = min_factor``. Time-based progress is not bitwise reproducible; step-based is.
    * ``plateau``: halve the rate after ``patience`` epochs without a validation improvement.
    * ``constant``: ``lr0``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        lr0: float,
        *,
        total_steps: int,
        max_seconds: float | None = None,
        min_factor: float = 0.01,
        patience: int = 10,
        factor: float = 0.5,
    ) -> None:
        self.optimizer = optimizer
        self.kind = kind
        self.lr0 = float(lr0)
        self.total_steps = max(1, int(total_steps))
        self.max_seconds = max_seconds
        self.min_factor = min_factor
        self.patience = patience
        self.factor = factor
        self.scale = 1.0  # plateau multiplier
        self.best = math.inf
        self.bad_epochs = 0
        self._set(self.lr0)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _set(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    def progress(self, step: int, elapsed_s: float) -> float:
        t = step / self.total_steps
        if self.max_seconds:
            t = max(t, elapsed_s / self.max_seconds)
        return min(max(t, 0.0), 1.0)

    def step_update(self, step: int, elapsed_s: float) -> None:
        if self.kind == "cosine":
            t = self.progress(step, elapsed_s)
            f = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
            self._set(self.lr0 * f)

    def epoch_update(self, metric: float | None) -> None:
        if self.kind != "plateau" or metric is None or not math.isfinite(metric):
            return
        if metric < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale = max(self.scale * self.factor, self.min_factor * 0.1)
            self.bad_epochs = 0
            self._set(self.lr0 * self.scale)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lr0": self.lr0, "total_steps": self.total_steps, "scale": self.scale,
                "best": self.best, "bad_epochs": self.bad_epochs, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state.get("scale", 1.0))
        self.best = float(state.get("best", math.inf))
        self.bad_epochs = int(state.get("bad_epochs", 0))
        if "lr" in state:
            self._set(float(state["lr"]))
