"""Noise2Noise training loop (:func:`~.fit.train` starts it): the network maps one half's patch to the other
half's (MSE), Adam, LR schedule.

Writes ``best.pt`` (lowest validation loss), ``last.pt`` (resumable; every epoch, every
``checkpoint_every_minutes`` and on SIGINT/SIGTERM) and ``history.json`` into the model folder.
Under ``torchrun`` the processes share each batch (DistributedDataParallel, see :mod:`.distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import CryocareConfig
from ..errors import CheckpointError, ConfigError
from ..io.atomic import atomic_write_json
from ..logs import LinePacer, Log, pace_text
from ..model import build_model
from ..patches import PatchData
from ..runtime import autocast, memory_format, place_model
from .batches import train_batches, val_batches
from .checkpoint import initial_weights, save_checkpoint, set_rng_state
from .distributed import Ranks
from .objective import VAL_KEY, Objective
from .result import TrainResult
from .schedule import LRSchedule
from .signals import stop_requests


class _Run:
    """State of one training run (fresh or resumed)."""

    def __init__(
        self, cfg: CryocareConfig, ndim: int, data: PatchData, norm: dict[str, Any], device: torch.device,
        dtype: torch.dtype, out: Path, raw: dict[str, Any] | None, progress: bool, log: Log, ranks: Ranks,
    ) -> None:
        self.cfg, self.ndim, self.data, self.norm = cfg, ndim, data, norm
        self.device, self.dtype, self.out, self.progress, self.log = device, dtype, out, progress, log
        tc = cfg.train
        self.ranks, self.batch, self.local = ranks, tc.batch_size, ranks.local_batch(tc.batch_size)
        self.spe = tc.steps_per_epoch or max(1, len(data.train) // self.batch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tc.seed)
            model = build_model(cfg.model, ndim)
        if tc.init_from is not None and raw is None:  # a fresh run from another's weights (a resumed one has its own)
            model.load_state_dict(initial_weights(tc.init_from, cfg.model, ndim))
        self.fmt = memory_format(ndim, device)
        self.objective = Objective(cfg, ndim, device, ranks.part[0])  # plain Noise2Noise or missing-wedge mode
        self.model = place_model(model, device, self.fmt)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.learning_rate)
        self.schedule = LRSchedule(
            self.optimizer, tc.lr_schedule, tc.learning_rate, total_steps=tc.epochs * self.spe,
            max_seconds=tc.max_minutes * 60 if tc.max_minutes else None,
        )
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        self.epoch = self.epoch_step = self.step = 0
        self.loss_sum, self.loss_n = 0.0, 0
        self.elapsed0 = 0.0
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        if raw is not None:
            self._restore(raw)
        # torch.compile of a Module returns an OptimizedModule (a Module); its annotation says Callable
        net = cast(nn.Module, torch.compile(self.model)) if tc.compile and device.type == "cuda" else self.model
        self.net = ranks.wrap(net, log)  # DistributedDataParallel under torchrun

    def _restore(self, raw: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(raw["model_state"])
            if raw.get("optimizer_state"):
                self.optimizer.load_state_dict(raw["optimizer_state"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:160]
            raise CheckpointError(
                f"weights do not fit the stored architecture ({msg}); train anew", self.out / "last.pt"
            ) from None
        place_model(self.model, self.device, self.fmt)
        if raw.get("scheduler_state"):
            self.schedule.load_state_dict(raw["scheduler_state"])
        if self.scaler is not None and raw.get("scaler_state"):
            self.scaler.load_state_dict(raw["scaler_state"])
        set_rng_state(raw.get("rng_state") or {})
        self.epoch, self.epoch_step, self.step = int(raw["epoch"]), int(raw["epoch_step"]), int(raw["step"])
        self.loss_sum, self.loss_n = float(raw["epoch_loss"][0]), int(raw["epoch_loss"][1])
        self.elapsed0 = float(raw.get("elapsed_s", 0.0))
        self.history = list(raw.get("history") or [])
        self.best = raw.get("best_val_loss")

    def elapsed(self) -> float:
        return self.elapsed0 + time.monotonic() - self.t0

    def save(self, name: str) -> Path:
        if not self.ranks.main:
            return self.out / name
        return save_checkpoint(
            self.out / name, model=self.model, config=self.cfg, ndim=self.ndim, normalization=self.norm,
            optimizer=self.optimizer, scheduler=self.schedule, scaler=self.scaler, epoch=self.epoch,
            epoch_step=self.epoch_step, epoch_loss=(self.loss_sum, self.loss_n), step=self.step,
            elapsed_s=self.elapsed(), history=self.history, best_val_loss=self.best,
        )

    def _to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)

    def train_step(self, inp: torch.Tensor, tgt: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        inp, tgt, weights = self.objective.prepare(inp, tgt, (self.epoch, self.epoch_step))
        with autocast(self.device, self.dtype):
            out = self.net(self._to(inp))
        loss = self.objective.loss(out, self._to(tgt), weights)
        value, self.signum = self.ranks.step_sync(float(loss.item()), self.stop.signum)  # all ranks agree
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return value
        if not math.isfinite(value):
            raise ConfigError(
                f"training diverged (loss {value}) at step {self.step}; lower train.learning_rate "
                f"(now {self.cfg.train.learning_rate:g}) or use precision fp32"
            )
        loss.backward()
        self.optimizer.step()
        return value

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.data.val is None:
            return None
        net = self.ranks.inner(self.net)  # this rank's share of the batches; sums all-reduced
        net.eval()
        total, count = 0.0, 0.0
        for k, (inp, tgt) in enumerate(val_batches(self.data.val, self.local, self.ranks.part)):
            inp, tgt, weights = self.objective.prepare(inp, tgt, (VAL_KEY, k))
            with autocast(self.device, self.dtype):
                out = net(self._to(inp))
            total += float(self.objective.loss(out, self._to(tgt), weights, reduction="sum").item())
            count += tgt.numel()
        net.train()
        total, count = self.ranks.sum(total, count)
        return total / max(count, 1)

    def run(self) -> TrainResult:
        tc = self.cfg.train
        budget = tc.max_minutes * 60 if tc.max_minutes else None
        every = tc.checkpoint_every_minutes * 60
        self.t0 = last_save = time.monotonic()
        self.step0, self.epoch0, self.pacer = self.step, self.epoch, LinePacer(tc.epochs - self.epoch)
        val_time, step_s, stop_reason = 0.0, 0.0, "epochs"
        n_val_batches = -(-len(self.data.val) // (self.local * self.ranks.world)) if self.data.val else 0
        self.net.train()
        if self.epoch > 0:  # a resumed run: the refreshed patches are not in the checkpoint
            self._after_epoch(force=True)
        with stop_requests() as self.stop:
            while self.epoch < tc.epochs:
                t_epoch = time.monotonic()
                timed_out = False
                bar, batches = self._epoch_batches()
                for inp, tgt in batches:
                    # stop before a step that would not leave time to validate within the budget (rank 0's clock)
                    reserve = step_s + (val_time or n_val_batches * step_s / 3)
                    now, timed_out = self.ranks.clock(self.elapsed(), reserve, budget)
                    if timed_out:
                        break
                    self.schedule.step_update(self.step, now)
                    t_step = time.monotonic()
                    loss = self.train_step(inp, tgt)
                    dt = time.monotonic() - t_step
                    step_s = 0.8 * step_s + 0.2 * dt if step_s else dt
                    self.step += 1
                    self.epoch_step += 1
                    self.loss_sum += loss
                    self.loss_n += 1
                    bar.update()
                    bar.set_postfix(loss=f"{self.loss_sum / self.loss_n:.4f}", lr=f"{self.schedule.lr:.1e}")
                    self._stop_if_asked(bar)
                    if not self.progress and self.pacer.heartbeat_due():
                        self.log(f"epoch {self.epoch + 1}/{tc.epochs} step {self.epoch_step}/{self.spe}: train "
                                 f"{self.loss_sum / self.loss_n:.4f}, {self._pace()}")
                    if time.monotonic() - last_save >= every:
                        self.save("last.pt")
                        last_save = time.monotonic()
                bar.close()
                t_val = time.monotonic()
                val_loss = self.validate()
                val_time = time.monotonic() - t_val
                self._end_epoch(val_loss, complete=not timed_out, time_s=time.monotonic() - t_epoch)
                if not timed_out:
                    self._after_epoch()
                last_save = time.monotonic()
                if timed_out:
                    stop_reason = "time_limit"
                    self.log(f"time budget of {tc.max_minutes:g} min reached after {self.step} steps")
                    break
        return TrainResult(
            best=self.out / "best.pt", last=self.out / "last.pt", history_path=self.out / "history.json",
            history=self.history, epochs=self.epoch, steps=self.step, best_val_loss=self.best,
            stop_reason=stop_reason, elapsed_s=self.elapsed(), ndim=self.ndim, normalization=self.norm,
        )

    def _after_epoch(self, force: bool = False) -> None:
        self.objective.after_epoch(self.epoch, self.ranks.inner(self.net), self.data, batch_size=self.local,
                                   dtype=self.dtype, log=self.log, force=force)

    def _epoch_batches(self) -> tuple[Any, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        """The progress bar and the (rest of the) batches of this epoch."""
        tc = self.cfg.train
        bar = tqdm(total=self.spe, initial=self.epoch_step, desc=f"epoch {self.epoch + 1}/{tc.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        batches = train_batches(self.data.train, epoch=self.epoch, batch_size=self.batch, steps=self.spe,
                                seed=tc.seed, augment=self.cfg.patches.augment, start=self.epoch_step,
                                part=self.ranks.part)
        return bar, iter(batches)

    def _stop_if_asked(self, bar: Any) -> None:
        """After Ctrl-C/SIGTERM (on any rank): write ``last.pt`` and raise :class:`KeyboardInterrupt`."""
        if self.ranks.stopping(self.signum, self.stop.signum):
            bar.close()
            self.save("last.pt")
            self.ranks.barrier()  # no rank exits (which would end the others) before last.pt is written
            self.log(f"stopped by signal {self.signum or self.stop.signum} at step {self.step}; "
                     f"{self.out / 'last.pt'} written, continue with --resume")
            raise KeyboardInterrupt

    def _end_epoch(self, val_loss: float | None, *, complete: bool, time_s: float) -> None:
        train_loss = self.loss_sum / self.loss_n if self.loss_n else None
        entry = {"epoch": self.epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "lr": self.schedule.lr,
                 "time_s": time_s, "elapsed_s": self.elapsed(), "steps": self.step, "complete": complete}
        if self.history and self.history[-1]["epoch"] == entry["epoch"] and not self.history[-1]["complete"]:
            self.history.pop()  # a resumed epoch replaces its partial entry
        self.history.append(entry)
        metric = val_loss if val_loss is not None else train_loss
        if complete:
            self.epoch += 1
            self.epoch_step, self.loss_sum, self.loss_n = 0, 0.0, 0
            self.schedule.epoch_update(metric)
        improved = metric is not None and (self.best is None or metric < self.best)
        if improved:
            self.best = metric
        if improved or not (self.out / "best.pt").exists():
            self.save("best.pt")
        self.save("last.pt")
        if self.ranks.main:
            atomic_write_json(self.out / "history.json", self.history)
        final = not complete or self.epoch >= self.cfg.train.epochs
        if self.progress or self.pacer.due(self.epoch - self.epoch0, final=final):
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            self.log(f"epoch {entry['epoch']}/{self.cfg.train.epochs}: train {fmt(train_loss)}, val {fmt(val_loss)}, "
                     f"lr {entry['lr']:.2e}, {time_s:.0f} s, {self._pace()}{' (best)' if improved else ''}")

    def _pace(self) -> str:
        tc = self.cfg.train
        budget_left = tc.max_minutes * 60 - self.elapsed() if tc.max_minutes else None
        return pace_text(self.step - self.step0, time.monotonic() - self.t0, tc.epochs * self.spe - self.step,
                         budget_left)
