"""The sharded local runs of ``cryocare batch``: a torchrun process's share, the ``--devices`` parent and its
workers (``batch-run --shard``). Each process prints one summary line, prefixed ``[rank r/w]``."""

from __future__ import annotations

from pathlib import Path

from ..logs import log_stderr as _log
from .batch import BatchItem, Manifest, run_all
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
    print(f"{shard.label} done {sum(r == 'done' for r in results.values())}, skipped "
          f"{sum(r == 'skipped' for r in results.values()) + skipped}; outputs in {output_dir}")
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
    print(f"{part.label} done {sum(r == 'done' for r in results.values())}, skipped "
          f"{sum(r == 'skipped' for r in results.values())} on {manifest.config.predict.device}")
    return 0
