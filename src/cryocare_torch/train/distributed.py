"""Data-parallel training across processes started by ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m cryocare_torch train ...`` starts N copies of the command; each reads
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` from its environment. Each process then:

* joins a process group: ``nccl`` on CUDA (the process uses ``cuda:LOCAL_RANK``), ``gloo`` on CPU;
* draws the same global batch of ``train.batch_size`` patch pairs as a single process would and trains on
  its own ``batch_size / WORLD_SIZE`` slice (DDP averages the gradients, so an optimisation step equals
  the single-process step up to the order of floating-point sums);
* validates a disjoint share of the validation batches (the sums are all-reduced);
* agrees with the others on every stop: the time budget is rank 0's decision, a SIGINT/SIGTERM seen
  by any process stops all of them after the same step.

Only rank 0 writes checkpoints, ``history.json``, log lines and progress bars. Without ``torchrun``
(or with ``WORLD_SIZE=1``) :class:`Ranks` is a single process and every method is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, DeviceError
from ..runtime import resolve_device, set_threads, torchrun_device, torchrun_env


class Ranks:
    """This process's place among the training processes, and the collectives the loop needs."""

    def __init__(self, device: torch.device, world: int = 1, rank: int = 0, local_rank: int = 0,
                 local_world: int = 1) -> None:
        self.device, self.world, self.rank = device, world, rank
        self.local_rank, self.local_world = local_rank, local_world

    @property
    def main(self) -> bool:
        """True on the process that writes files and logs (rank 0, or the only process)."""
        return self.rank == 0

    @property
    def part(self) -> tuple[int, int]:
        """``(rank, world size)``: which slice of each global batch this process trains on."""
        return self.rank, self.world

    def local_batch(self, batch_size: int) -> int:
        """Patch pairs per process and step; ``batch_size`` must split evenly over the processes."""
        if batch_size % self.world:
            raise ConfigError(
                f"train.batch_size {batch_size} is not divisible by the {self.world} torchrun processes; "
                f"use a multiple of {self.world}"
            )
        return batch_size // self.world

    def threads(self, requested: int | None) -> int | None:
        """CPU threads per process: as requested, else the available cores shared by the local processes."""
        if requested is not None or self.world == 1:
            return requested
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            cores = os.cpu_count() or 1
        return max(1, cores // self.local_world)

    def wrap(self, model: nn.Module, log: Callable[[str], None]) -> nn.Module:
        """``model`` in DistributedDataParallel (itself when single-process)."""
        if self.world == 1:
            return model
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                log("note: batch normalisation on CPU uses each process's share of the batch (no SyncBatchNorm)")
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    @staticmethod
    def inner(net: nn.Module) -> nn.Module:
        """The module inside a DDP wrapper (for validation without collectives in the forward pass)."""
        return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net

    def _tensor(self, values: list[float]) -> torch.Tensor:
        where = self.device if self.device.type == "cuda" else torch.device("cpu")
        return torch.tensor(values, dtype=torch.float64, device=where)

    def sum(self, *values: float) -> list[float]:
        """Element-wise sums of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        t = self._tensor(list(values))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.tolist()]

    def step_sync(self, loss: float, signum: int) -> tuple[float, int]:
        """Mean training loss over the processes, and a stop signal if any process received one."""
        if self.world == 1:
            return loss, signum
        total, signalled = self.sum(loss, 1.0 if signum else 0.0)
        return total / self.world, signum or (int(signal.SIGTERM) if signalled else 0)

    def stopping(self, agreed: int, local: int) -> bool:
        """Whether to stop after this step: the signal agreed in :meth:`step_sync`; a single process also
        stops for one that arrived after it (nobody else to agree with)."""
        return bool(agreed or (self.world == 1 and local))

    def clock(self, elapsed: float, reserve: float, budget: float | None) -> tuple[float, bool]:
        """Rank 0's ``elapsed`` training time and its decision whether ``elapsed + reserve`` exhausts the
        time ``budget``, on every process (clocks and step times differ; the learning rate and the stop
        must not). No communication without a budget (the time then drives neither)."""
        over = budget is not None and elapsed + reserve >= budget
        if self.world == 1 or budget is None:
            return elapsed, over
        t = self._tensor([elapsed, 1.0 if over else 0.0])
        dist.broadcast(t, src=0)
        return float(t[0]), bool(t[1])

    def barrier(self) -> None:
        if self.world == 1:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


def is_main_process() -> bool:
    """False in the torchrun processes other than rank 0 (which should print nothing)."""
    return torchrun_env().rank == 0


def from_env(device_name: str) -> Ranks:
    """The :class:`Ranks` described by torchrun's environment, without joining a process group yet."""
    env = torchrun_env()
    if env.world <= 1:
        return Ranks(resolve_device(device_name))
    device = torchrun_device(device_name, env.local_rank, "train.device")
    return Ranks(device, env.world, env.rank, env.local_rank, env.local_world)


def preflight(device_name: str, batch_size: int) -> torch.device:
    """This process's device; raises the errors of a torchrun setup (device, batch split) early."""
    ranks = from_env(device_name)
    ranks.local_batch(batch_size)
    return ranks.device


@contextlib.contextmanager
def session(device_name: str, num_threads: int | None, log: Callable[[str], None]) -> Iterator[Ranks]:
    """Join the torchrun process group for the duration of training (nothing to do for one process).

    On CPU torch's threads are set to ``num_threads`` (default: the cores, shared among the processes
    on this node) and restored on the way out. The group is destroyed on the way out, also after an
    error; on success all processes leave together, after rank 0 has written its files.
    """
    ranks = from_env(device_name)
    threads_before = torch.get_num_threads()
    if ranks.device.type == "cpu":
        set_threads(ranks.threads(num_threads))
    try:
        with _group(ranks, log):
            yield ranks
    finally:
        torch.set_num_threads(threads_before)


@contextlib.contextmanager
def _group(ranks: Ranks, log: Callable[[str], None]) -> Iterator[None]:
    if ranks.world == 1:
        yield
        return
    backend = "nccl" if ranks.device.type == "cuda" else "gloo"
    if ranks.device.type == "cuda":
        torch.cuda.set_device(ranks.device)
    if dist.is_initialized():  # started by the caller; use it as is
        yield
        return
    try:
        dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world,
                                timeout=datetime.timedelta(minutes=30))
    except (RuntimeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise DeviceError(f"cannot join the torchrun process group ({backend}: {reason})") from None
    try:
        if ranks.main:
            log(f"distributed training: {ranks.world} processes ({backend}), each on 1/{ranks.world} of "
                "every batch; rank 0 writes checkpoints and logs")
        yield
        ranks.barrier()
    finally:
        with contextlib.suppress(RuntimeError, ValueError):
            dist.destroy_process_group()
