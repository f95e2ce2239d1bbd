"""The sharded local runs of ``cryocare batch``: a torchrun process's share, the ``--devices`` parent and its
workers (``batch-run --shard``). Each process prints one summary line, prefixed ``[rank r/w]``."""

from __future__ import annotations

from pathlib import Path

from ..interrupts import raise_interrupt, signal_handlers
from ..logs import log_stderr as _log
from .batch import BatchItem, Manifest, load_manifest, run_all, run_item
from .batch_state import ItemStatus, count
from .shard import (
    Shard,
    check_workers,
    count_complete,
    own_items,
    process_config,
    spawn_workers,
    worker_threads,
)


def run_torchrun_share(manifest: Manifest, resolved: list[BatchItem], shard: Shard, output_dir: Path) -> int:
    """This torchrun process's share (see :mod:`cryocare_torch.workflows.shard`); one summary line per process."""
    mine, skipped = own_items(manifest, resolved, shard)
    manifest.config = process_config(manifest.config, shard)
    log = shard.prefixed(_log)
    log(f"{len(mine)} of the {len(manifest.items)} pairs to do are this process's, on {manifest.config.predict.device}")
    results = run_all(manifest, log=log, indices=mine)
    print(f"{shard.label} done {count(results, ItemStatus.DONE)}, skipped "
          f"{count(results, ItemStatus.SKIPPED) + skipped}; outputs in {output_dir}")
    if shard.rank == 0:
        every = manifest.items + manifest.skipped
        print(f"{shard.label} {count_complete(every)} of {len(every)} outputs complete now; the other processes "
              "report their own share")
    return 0


def run_on_devices(manifest: Manifest, mpath: Path, devices: list[str], output_dir: Path) -> int:
    """``--devices``: one worker process per device on every Nth item of the manifest; waits for all."""
    threads = worker_threads(manifest.config.predict.num_threads, len(devices))
    _log(f"{len(manifest.items)} pairs on {len(devices)} workers ({', '.join(devices)}), {threads} CPU threads each")
    codes = spawn_workers(mpath, devices, threads)
    done = check_workers(codes, devices, manifest)
    print(f"done {done} on {len(devices)} workers, skipped {len(manifest.skipped)}; outputs in {output_dir}")
    return 0


def run_worker_share(manifest: Manifest, part: Shard) -> int:
    """``batch-run --shard R/W``: the items ``R::W`` of the manifest (a ``--devices`` worker)."""
    results = run_all(manifest, log=part.prefixed(_log), indices=part.take(len(manifest.items)))
    print(f"{part.label} done {count(results, ItemStatus.DONE)}, skipped "
          f"{count(results, ItemStatus.SKIPPED)} on {manifest.config.predict.device}")
    return 0


def run_from_manifest(manifest: Path, *, index: int | None = None, part: Shard | None = None,
                      device: str | None = None, threads: int | None = None) -> int:
    """``batch-run``: item ``index`` of a manifest (a SLURM array task), or the items of ``part`` (a
    ``--devices`` worker); SIGTERM (time limit, scancel) cleans up like Ctrl-C. Prints one summary line."""
    with signal_handlers(sigterm=raise_interrupt):
        m = load_manifest(manifest)
        if device is not None:
            m.config.predict.device = device
        if threads is not None:
            m.config.predict.num_threads = threads
        if index is None:
            return run_worker_share(m, part or Shard(0, 1))
        status = run_item(m, index, log=_log)
    item = m.items[index]
    print(f"{item.name}: {status} {item.output}")
    return 0

