"""Sharding many pairs over processes: under ``torchrun`` or with ``cryocare batch --devices``.

Process ``rank`` of ``world`` restores the items ``rank::world``; no process group is needed (and none
is joined): each process reads its place from the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, set by torchrun) or from ``batch-run --shard RANK/WORLD`` (set by ``--devices``).

* ``--devices cuda:0,cuda:1`` (or ``cpu,cpu``): the parent resolves the batch once (complete outputs
  skipped), writes the manifest and starts one ``cryocare batch-run --shard r/N --device D`` worker per
  device on that manifest, waits for all of them and checks the outputs on disk.
* ``torchrun``: every process resolves the same inputs in the same order. Which outputs are complete
  cannot be decided identically by processes that already write, so the shares are taken from the
  resolved list (``position % world == rank``) and each process skips its own complete outputs. A
  prefix of finished pairs (an interrupted run) still leaves balanced shares. Only rank 0 writes the
  manifest file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import CryocareConfig
from ..errors import ConfigError, CryocareError, DeviceError
from ..io.mrc import read_meta
from ..logs import Log
from ..runtime import resolve_device, torchrun_device, torchrun_env
from .batch import BatchItem, Manifest
from .batch_state import output_state


class WorkerError(CryocareError):
    """A ``--devices`` worker failed; the exit code is the worker's (its own error line came first)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 1


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` processes sharing one batch."""

    rank: int
    world: int
    local_rank: int = 0
    local_world: int = 1

    @property
    def label(self) -> str:
        return f"[rank {self.rank}/{self.world}]"

    def take(self, n: int) -> list[int]:
        """Indices ``rank::world`` of ``n`` items."""
        return list(range(self.rank, n, self.world))

    def prefixed(self, log: Log) -> Log:
        """``log`` with every line prefixed by :attr:`label`."""
        return lambda msg: log(f"{self.label} {msg}")


def parse_shard(text: str) -> Shard:
    """``"R/W"`` (0 <= R < W) -> :class:`Shard`."""
    rank, sep, world = text.partition("/")
    if not sep or not rank.strip().isdigit() or not world.strip().isdigit() or not 0 <= int(rank) < int(world):
        raise ConfigError(f"--shard {text!r}: expected RANK/WORLD with 0 <= RANK < WORLD, e.g. 0/2")
    return Shard(int(rank), int(world))


def from_torchrun() -> Shard | None:
    """The shard described by torchrun's environment; None for a single process (``WORLD_SIZE`` <= 1)."""
    env = torchrun_env()
    return None if env.world <= 1 else Shard(env.rank, env.world, env.local_rank, env.local_world)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def worker_threads(requested: int | None, processes_here: int) -> int:
    """CPU threads per process: as requested, else this machine's cores shared by its processes."""
    return requested if requested is not None else max(1, _cores() // max(1, processes_here))


def process_config(config: CryocareConfig, shard: Shard) -> CryocareConfig:
    """A copy of ``config`` for one torchrun process: ``cuda:LOCAL_RANK`` where the device is ``auto`` with
    a GPU or ``cuda``, CPU otherwise; the cores shared among the processes on this machine."""
    device = torchrun_device((config.predict.device or "auto").lower(), shard.local_rank)
    name = str(device) if device.type == "cuda" else "cpu"
    out = config.model_copy(deep=True)
    out.predict.device = name
    out.predict.num_threads = worker_threads(config.predict.num_threads, shard.local_world)
    return out


def parse_devices(spec: str) -> list[str]:
    """``cuda:0,cuda:1`` / ``cpu,cpu`` / ``N`` (``cuda:0`` .. ``cuda:N-1``): one worker per entry, each
    device checked now (:class:`DeviceError` for a missing GPU)."""
    text = spec.strip()
    names = [f"cuda:{i}" for i in range(int(text))] if text.isdigit() else [d.strip() for d in text.split(",")]
    if not names or any(not n for n in names):
        raise ConfigError(f"--devices {spec!r}: expected a comma-separated list such as cuda:0,cuda:1 or cpu,cpu, "
                          "or a GPU count")
    for n in names:
        try:
            resolve_device(n)
        except DeviceError as exc:
            raise DeviceError(f"--devices {spec}: {exc}") from None
    return names


def own_items(manifest: Manifest, resolved: Sequence[BatchItem], shard: Shard) -> tuple[list[int], int]:
    """Indices into ``manifest.items`` that ``shard`` restores under torchrun, and how many of its share
    were already complete: the share is ``position % world == rank`` in the resolved (input) order."""
    position = {item.output: k for k, item in enumerate(resolved)}
    mine = [i for i, item in enumerate(manifest.items) if position[item.output] % shard.world == shard.rank]
    skipped = sum(position[item.output] % shard.world == shard.rank for item in manifest.skipped)
    return mine, skipped


def count_complete(items: Sequence[BatchItem]) -> int:
    """How many of ``items`` have a complete output on disk now."""
    return sum(output_state(i.output, tuple(read_meta(i.even).shape)).complete for i in items)


def spawn_workers(manifest_path: Path, devices: Sequence[str], threads: int | None) -> list[int]:
    """Run one ``cryocare batch-run --shard r/N --device D`` per device on ``manifest_path`` at the same time
    (their log lines and summaries go to this process's stderr/stdout); returns their exit codes. An
    interrupt (Ctrl-C, SIGTERM) stops them all: each removes its partial output."""
    world = len(devices)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank, device in enumerate(devices):
            cmd = [sys.executable, "-m", "cryocare_torch", "batch-run", "--manifest", str(manifest_path),
                   "--shard", f"{rank}/{world}", "--device", device]
            if threads is not None:
                cmd += ["--threads", str(threads)]
            procs.append(subprocess.Popen(cmd))
        return [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    p.kill()
        raise


def check_workers(codes: Sequence[int], devices: Sequence[str], manifest: Manifest) -> int:
    """The number of complete outputs of ``manifest.items``; raises :class:`WorkerError` (or
    KeyboardInterrupt if a worker was interrupted) when a worker failed or an output is missing."""
    done = count_complete(manifest.items)
    bad = [(r, c) for r, c in enumerate(codes) if c != 0]
    if any(c in (130, -2, -15) for _, c in bad):
        raise KeyboardInterrupt
    if bad or done < len(manifest.items):
        which = ", ".join(f"worker {r} ({devices[r]}) exit code {c}" for r, c in bad) or "no worker failed"
        raise WorkerError(f"{done} of {len(manifest.items)} outputs complete ({which}; see the errors above); "
                          "fix them and rerun the same command (complete outputs are skipped)",
                          bad[0][1] if bad else 1)
    return done
