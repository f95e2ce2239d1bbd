"""Batch prediction: one trained model applied to many even/odd pairs, resumably.

A batch is resolved from a folder, a glob, a list file (``[name] even odd`` per line) or a RELION 5
``tomograms.star`` into a *manifest* (JSON): the model, the full configuration and one item
(name, even, odd, output) per pair still to do. Items whose output is already a complete MRC are left
out (listed under ``skipped``) unless ``overwrite``. :func:`run_item` restores one item and is
idempotent, so the same manifest can be run locally (:func:`run_all`) or as a SLURM job array.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import CryocareConfig, config_to_dict
from ..errors import CheckpointError, ConfigError, CryocareError, InputFileError, OutputError
from ..io.atomic import PARTIAL_SUFFIX, atomic_write_json
from ..io.halves import split_half_marker, validate_pairs
from ..io.mrc import read_meta
from ..io.pairs import VOLUME_SUFFIXES, find_pairs
from ..logs import Log
from . import api
from .batch_state import ItemResult, ItemStatus, OutputState, output_state

MANIFEST_FORMAT = "cryocare-batch-manifest"
MANIFEST_VERSION = 1
STALE_PARTIAL_S = 3600.0


@dataclass(frozen=True)
class BatchItem:
    name: str
    even: Path
    odd: Path
    output: Path


@dataclass
class Manifest:
    model: Path
    config: CryocareConfig
    items: list[BatchItem]
    skipped: list[BatchItem] = field(default_factory=list)
    overwrite: bool = False
    path: Path | None = None


def pair_files(files: Sequence[Path]) -> list[tuple[str, Path, Path]]:
    """``(name, even, odd)`` for MRC files paired by their half markers (the rules of
    :func:`cryocare_torch.io.pairs.find_pairs`), across folders; a repeated name gets its folder prefixed."""
    groups: dict[tuple[Path, str], dict[str, Path]] = {}
    names: dict[tuple[Path, str], str] = {}
    for f in sorted(files):
        split = split_half_marker(f)
        if split is None:
            continue
        key = (f.parent.absolute(), split[0])
        halves = groups.setdefault(key, {})
        if split[1] in halves:
            raise InputFileError(f"two {split[1]} candidates: {halves[split[1]]} and {f}; keep one or use a "
                                 "list file", f)
        halves[split[1]] = f
        names[key] = split[2] or f.parent.absolute().name
    out = []
    for key, halves in groups.items():
        if len(halves) == 1:
            (half, f), = halves.items()
            raise InputFileError(f"has no {'odd' if half == 'even' else 'even'} partner; add it, remove it, or "
                                 "use a list file", f)
        out.append((names[key], halves["even"], halves["odd"]))
    counts = Counter(n for n, _, _ in out)
    return [(f"{e.parent.name}_{n}" if counts[n] > 1 else n, e, o) for n, e, o in out]


def resolve_batch(sources: Sequence[str | Path], output_dir: str | Path, suffix: str = "_denoised",
                  project_dir: str | Path | None = None) -> list[BatchItem]:
    """Items for folders, globs, list files, RELION tomograms.star files, or MRC files given directly.

    Folders, list files (``[name] even odd`` per line) and STAR files follow
    :func:`cryocare_torch.io.pairs.find_pairs`; a glob (e.g. ``'tomos/**/*.mrc'``) or explicit MRC files are
    paired by their even/odd markers. Outputs are ``output_dir/NAME<suffix>.mrc``.
    """
    if not sources:
        raise ConfigError("no input given; pass a folder, a quoted glob, a list file or a tomograms.star")
    rows: list[tuple[str, Path, Path]] = []
    mrcs: list[Path] = []
    for src in sources:
        s, p = str(src), Path(src)
        if any(ch in s for ch in "*?[") and not p.exists():
            matches = [Path(m) for m in sorted(glob.glob(s, recursive=True))]
            found = [m for m in matches if m.is_file() and m.suffix.lower() in VOLUME_SUFFIXES]
            if not found:
                raise InputFileError(f"glob {s!r} matches no MRC files; check the pattern (and quote it)")
            mrcs += found
        elif p.is_file() and p.suffix.lower() in VOLUME_SUFFIXES:
            mrcs.append(p)
        else:
            rows += [(q.name, q.even, q.odd) for q in find_pairs(p, project_dir=project_dir)]
    if mrcs:
        paired = pair_files(mrcs)
        rows += paired
        if not paired:
            raise InputFileError(f"no even/odd pairs among {len(mrcs)} MRC files; name them x_even/x_odd "
                                 "(EVN/ODD, half1/half2) or use a list file with 'even odd' per line")
    items: list[BatchItem] = []
    seen: dict[Path, BatchItem] = {}
    for name, even, odd in rows:
        item = BatchItem(name, even.absolute(), odd.absolute(), (Path(output_dir) / f"{name}{suffix}.mrc").absolute())
        if item.output in (item.even, item.odd):
            raise OutputError("output would overwrite an input; use another --output-dir or --suffix", item.output)
        if item.output in seen:
            raise ConfigError(f"pairs {seen[item.output].even} and {even} would both be written to {item.output}; "
                              "give them distinct names in a list file ('name even odd' per line)")
        seen[item.output] = item
        items.append(item)
    return items


def _shape(item: BatchItem) -> tuple[int, ...]:
    return tuple(read_meta(item.even).shape)


def build_manifest(items: Sequence[BatchItem], model: str | Path, config: CryocareConfig, *,
                   overwrite: bool = False, log: Log | None = None) -> Manifest:
    """Check all pairs now (before any job starts) and leave out items whose output is complete."""
    model = Path(model).absolute()
    if not model.is_file():
        raise CheckpointError("model checkpoint not found; pass the best.pt written by 'cryocare train'", model)
    if not items:
        raise ConfigError("the batch is empty; check the input")
    validate_pairs([(i.even, i.odd) for i in items])
    todo, skipped = [], []
    for item in items:
        state = OutputState("missing") if overwrite else output_state(item.output, _shape(item))
        if state.complete:
            skipped.append(item)
            continue
        if state.kind == "incomplete" and log:
            log(f"{item.name}: existing {item.output} is {state}; it will be redone")
        todo.append(item)
    return Manifest(model, config, todo, skipped, overwrite)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    data: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": str(manifest.model), "overwrite": manifest.overwrite,
        "config": config_to_dict(manifest.config),
        "items": [{k: str(v) for k, v in asdict(i).items()} for i in manifest.items],
        "skipped": [{k: str(v) for k, v in asdict(i).items()} for i in manifest.skipped],
    }
    manifest.path = Path(path).absolute()
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(manifest.path, data)


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    if not p.is_file():
        raise InputFileError("manifest not found; it is written by 'cryocare batch'", p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a cryocare batch manifest")
        if int(data.get("version", 0)) > MANIFEST_VERSION:
            raise ValueError(f"version {data['version']} is newer than this cryocare-torch; upgrade it")
        config = CryocareConfig.model_validate(data["config"])
        items = [[BatchItem(str(r["name"]), Path(r["even"]), Path(r["odd"]), Path(r["output"])) for r in data[k]]
                 for k in ("items", "skipped")]
        return Manifest(Path(data["model"]), config, items[0], items[1], bool(data["overwrite"]), p.absolute())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputFileError(f"invalid batch manifest ({type(exc).__name__}: {exc}); recreate it with "
                             "'cryocare batch'", p) from None


def _remove_stale_partials(output: Path, log: Log | None, max_age_s: float = STALE_PARTIAL_S) -> None:
    """Temporary files of an earlier attempt that was killed outright (SIGKILL, node failure): same name
    prefix, untouched for ``max_age_s``. A live writer touches its file far more often."""
    if not output.parent.is_dir():
        return
    for tmp in output.parent.glob(f".{glob.escape(output.stem)}*{PARTIAL_SUFFIX}"):
        try:
            if time.time() - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                if log:
                    log(f"removed {tmp.name}, left by an earlier attempt that was killed")
        except OSError:
            pass


def run_item(manifest: Manifest, index: int, *, log: Log | None = None) -> ItemStatus:
    """Restore item ``index``; returns SKIPPED (output already complete) or DONE."""
    if not 0 <= index < len(manifest.items):
        raise ConfigError(f"--index {index} is out of range: the manifest has {len(manifest.items)} items "
                          f"(0-{len(manifest.items) - 1})", manifest.path)
    item = manifest.items[index]
    state = output_state(item.output, _shape(item))
    if state.complete and not manifest.overwrite:
        if log:
            log(f"{item.name}: {item.output} is already complete; skipped")
        return ItemStatus.SKIPPED
    _remove_stale_partials(item.output, log)
    config = manifest.config.model_copy(deep=True)
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if config.predict.num_threads is None and cpus.isdigit():
        config.predict.num_threads = int(cpus)
    item.output.parent.mkdir(parents=True, exist_ok=True)
    api.predict(manifest.model, item.even, item.odd, item.output, config,
                overwrite=manifest.overwrite or state.kind != "missing", progress=sys.stderr.isatty(), log=log)
    return ItemStatus.DONE


def run_all(manifest: Manifest, *, log: Log | None = None,
            indices: Sequence[int] | None = None) -> dict[str, ItemResult]:
    """Run every item (or those at ``indices``) in turn: ``{name: result}``; after a failure the others still
    run, then the first failure's error type is raised."""
    results: dict[str, ItemResult] = {}
    first: CryocareError | None = None
    order = range(len(manifest.items)) if indices is None else list(indices)
    for k, i in enumerate(order):
        item = manifest.items[i]
        t0 = time.perf_counter()
        try:
            results[item.name] = ItemResult(run_item(manifest, i, log=log))
        except CryocareError as exc:
            results[item.name] = ItemResult(ItemStatus.FAILED, str(exc))
            first = first or exc
        if log:
            log(f"[{k + 1}/{len(order)}] {item.name}: {results[item.name]} ({time.perf_counter() - t0:.1f} s)")
    failed = [n for n, r in results.items() if r.status is ItemStatus.FAILED]
    if first is not None:
        raise type(first)(f"{len(failed)} of {len(results)} items failed (first: {failed[0]}: {first}); "
                          "fix them and rerun the same command (complete outputs are skipped)")
    return results
