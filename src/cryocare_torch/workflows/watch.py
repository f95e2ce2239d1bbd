"""Live mode: restore even/odd pairs as they appear in a folder while the microscope keeps acquiring.

Plain polling. Pairs follow the naming rules of :func:`cryocare_torch.io.pairs.find_pairs` (``even/`` + ``odd/``
sub-folders or half markers); a half whose partner has not arrived is waited for. A file is ready once its size
and mtime stayed unchanged over one poll interval *and* its MRC header is readable with as many data bytes as it
announces. Each ready pair is restored once through :func:`cryocare_torch.workflows.batch.run_item` (atomic outputs,
complete ones skipped, so a restarted watch continues where it stopped). Without a model, the first
``train_after`` ready pairs train one (:func:`cryocare_torch.workflows.api.train`) that restores them and all
later pairs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import CryocareConfig
from ..errors import CheckpointError, ConfigError, CryocareError, InputFileError
from ..io.atomic import atomic_write_json
from ..io.mrc import read_meta
from ..io.pairs import VOLUME_SUFFIXES, split_half_marker, validate_pairs
from ..logs import Log
from ..runtime import resolve_device
from ..train.checkpoint import load_checkpoint
from . import api
from .batch import BatchItem, Manifest, run_item

Signature = tuple[int, int]
Pair = tuple[str, Path, Path]
SETTLE_POLLS = 10
"""A file unchanged for this many intervals whose header still does not match its size is reported as bad."""
TRAINING_RECORD = "watch_training.json"


@dataclass
class WatchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # output already complete
    failed: dict[str, str] = field(default_factory=dict)
    model: Path | None = None
    trained: bool = False
    reason: str = ""  # why the watch ended: max-pairs, idle, stopped or interrupted

    def line(self) -> str:
        text = (f"watch ended ({self.reason}): {len(self.done)} restored, {len(self.skipped)} already complete, "
                f"{len(self.failed)} failed")
        return text + (f" ({', '.join(sorted(self.failed))})" if self.failed else "")


def _volumes(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix.lower() in VOLUME_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def scan_pairs(folder: Path, ignore: Callable[[Path], bool] = lambda p: False) -> tuple[list[Pair], list[str]]:
    """The complete name pairs now in ``folder`` and the problems a list file would resolve (two candidates
    for one half, two pairs with one name); halves without a partner yet are left out."""
    try:
        subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    except OSError as exc:
        raise InputFileError(f"cannot list the watch folder ({exc.strerror})", folder) from None
    if "even" in subdirs and "odd" in subdirs:
        evens = {p.name: p for p in _volumes(subdirs["even"])}
        odds = {p.name: p for p in _volumes(subdirs["odd"])}
        both = sorted(evens.keys() & odds.keys())
        return [(evens[n].name[: -len(evens[n].suffix)], evens[n], odds[n]) for n in both], []
    groups: dict[str, dict[str, list[Path]]] = {}
    names: dict[str, str] = {}
    for f in _volumes(folder):
        split = split_half_marker(f)
        if split is None or ignore(f):
            continue
        groups.setdefault(split[0], {"even": [], "odd": []})[split[1]].append(f)
        names[split[0]] = split[2] or folder.name
    pairs: list[Pair] = []
    problems: list[str] = []
    by_name: dict[str, Path] = {}
    for key, halves in sorted(groups.items()):
        name, evens_, odds_ = names[key], halves["even"], halves["odd"]
        if len(evens_) > 1 or len(odds_) > 1:
            listed = ", ".join(p.name for p in evens_ + odds_)
            problems.append(f"{name}: two candidates for one half ({listed}); keep one, the pair is skipped")
        elif evens_ and odds_ and name in by_name:
            problems.append(f"{name}: {evens_[0].name} and {by_name[name].name} give the same output name; "
                            "rename one, it is skipped")
        elif evens_ and odds_:
            by_name[name] = evens_[0]
            pairs.append((name, evens_[0], odds_[0]))
    return pairs, problems


class _Files:
    """Size and mtime of every file seen, and since when they are unchanged."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.seen: dict[Path, tuple[Signature, float]] = {}
        self.changed = False

    def state(self, path: Path, now: float) -> tuple[str, Signature | None]:
        """``wait``, ``ready`` or ``bad: why`` (unchanged for SETTLE_POLLS intervals, header still invalid)."""
        try:
            st = path.stat()
        except OSError:
            return "wait", None
        sig = (st.st_size, st.st_mtime_ns)
        old = self.seen.get(path)
        if old is None or old[0] != sig:
            self.seen[path] = (sig, now)
            self.changed = True
            return "wait", sig
        stable = now - old[1]
        if stable < self.interval:
            return "wait", sig
        try:
            read_meta(path)
        except CryocareError as exc:
            return (f"bad: {exc}" if stable >= SETTLE_POLLS * self.interval else "wait"), sig
        return "ready", sig


def _where(config: CryocareConfig) -> str:
    device = resolve_device(config.predict.device)  # a DeviceError now rather than for every pair
    return f"GPU {device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "CPU"


def _check(folder: Path, model: Path | None, train_after: int | None, interval: float,
           max_idle_minutes: float | None, max_pairs: int | None) -> Path | None:
    if not folder.is_dir():
        raise InputFileError("watch folder not found (or not a folder); check the path", folder)
    if (model is None) == (train_after is None):
        raise ConfigError("give either --model (a trained model) or --train-after N (train on the first N pairs)")
    for opt, value in (("--interval", interval), ("--max-idle-minutes", max_idle_minutes)):
        if value is not None and not value > 0:
            raise ConfigError(f"{opt} must be positive, not {value}")
    for opt, count in (("--train-after", train_after), ("--max-pairs", max_pairs)):
        if count is not None and count < 1:
            raise ConfigError(f"{opt} must be at least 1, not {count}")
    if model is None:
        return None
    ckpt = model / "best.pt" if model.is_dir() else model
    if not ckpt.is_file():
        raise CheckpointError("model checkpoint not found; pass the best.pt (or its folder) written by "
                              "'cryocare train'", ckpt)

    load_checkpoint(ckpt, device="cpu")  # a corrupt checkpoint fails now, not once per pair
    return ckpt.absolute()


def _record(mdir: Path) -> tuple[bool, list[Pair]] | None:
    """(complete, pairs) of the training an earlier watch started in ``mdir``, if any."""
    path = mdir / TRAINING_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return bool(data["complete"]), [(str(n), Path(e), Path(o)) for n, e, o in data["pairs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"unreadable watch training record ({exc}); remove it to train anew", path) from None


def _train(pairs: list[Pair], mdir: Path, config: CryocareConfig, again: bool, progress: bool, log: Log) -> Path:
    """Train once on ``pairs``; ``again``: an earlier watch's training, resumed from its last.pt if there is one."""
    resume = again and (mdir / "last.pt").is_file()
    rows = [[n, str(e), str(o)] for n, e, o in pairs]
    mdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(mdir / TRAINING_RECORD, {"complete": False, "pairs": rows})
    log(f"{'resuming' if resume else 'training'} a model on {len(pairs)} pair(s) ({', '.join(r[0] for r in rows)}) "
        f"in {mdir}")
    best = api.train([(e, o) for _, e, o in pairs], mdir, config, resume=resume, overwrite=again and not resume,
                     progress=progress, log=log)
    atomic_write_json(mdir / TRAINING_RECORD, {"complete": True, "pairs": rows})
    return best.absolute()


def watch(
    folder: str | Path,
    output_dir: str | Path,
    config: CryocareConfig | None = None,
    *,
    model: str | Path | None = None,
    train_after: int | None = None,
    model_dir: str | Path | None = None,
    suffix: str = "_denoised",
    interval: float = 10.0,
    max_idle_minutes: float | None = None,
    max_pairs: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    stop: threading.Event | None = None,
    log: Log | None = None,
) -> WatchSummary:
    """Restore every pair that appears in ``folder`` into ``output_dir/NAME<suffix>.mrc`` until ``max_pairs``
    pairs were restored (or failed), nothing changed for ``max_idle_minutes``, ``stop`` is set, or Ctrl-C.
    Give ``model`` (best.pt or its folder) or ``train_after``: train on the first N ready pairs (into
    ``model_dir``, default ``output_dir/cryocare_watch_model``; reused, or resumed, by a restarted watch).
    A pair that fails is logged in one line and skipped (retried if its files change); the watch goes on.
    """
    log = log or (lambda _m: None)
    stop = stop or threading.Event()
    cfg = config or CryocareConfig()
    folder, out = Path(folder), Path(output_dir).absolute()
    ckpt = _check(folder, None if model is None else Path(model), train_after, interval, max_idle_minutes, max_pairs)
    mdir = Path(model_dir) if model_dir is not None else out / "cryocare_watch_model"
    summary = WatchSummary(model=ckpt)
    out.mkdir(parents=True, exist_ok=True)
    own = re.compile(rf".*{re.escape(suffix)}(_even|_odd)?\.mrc")

    def ignore(p: Path) -> bool:  # our own outputs (and --write-halves files) when writing into the watched folder
        return p.parent.absolute() == out and own.fullmatch(p.name) is not None

    files, pending, handled = _Files(interval), [], set()
    failed_sigs: dict[str, tuple[Signature | None, ...]] = {}
    reported: set[str] = set()
    idle_since, processed = time.monotonic(), 0
    log(f"watching {folder} every {interval:g} s; restoring on {_where(cfg)} into {out}")
    try:
        record = _record(mdir) if ckpt is None else None
        if record and record[0] and (mdir / "best.pt").is_file():
            summary.model = (mdir / "best.pt").absolute()  # trained by an earlier watch: reused
        elif record:
            summary.model, summary.trained = _train(record[1], mdir, cfg, True, progress, log), True
        log(f"model {summary.model}" if summary.model else f"waiting for {train_after} pair(s) to train on")
        while not stop.is_set():
            now, files.changed = time.monotonic(), False
            pairs, problems = scan_pairs(folder, ignore)
            for msg in sorted(set(problems) - reported):
                reported.add(msg)
                log(msg)
            ready: list[Pair] = []
            for name, even, odd in pairs:
                if name in handled:
                    continue
                (se, sig_e), (so, sig_o) = files.state(even, now), files.state(odd, now)
                sigs = (sig_e, sig_o)
                if "wait" in (se, so) or failed_sigs.get(name) == sigs:
                    continue
                try:
                    if se != "ready" or so != "ready":
                        raise InputFileError((se if se != "ready" else so)[5:])
                    validate_pairs([(even, odd)])
                    handled.add(name)
                    ready.append((name, even, odd))
                except CryocareError as exc:
                    summary.failed[name], failed_sigs[name] = str(exc), sigs
                    processed, idle_since = processed + 1, now
                    log(f"{name}: failed: {exc}; skipped (retried if its files change)")
            if files.changed:
                idle_since = now
            if summary.model is None:
                pending += ready
                if ready:
                    log(f"{len(pending)} of {train_after} pair(s) ready for training")
                ready = []
                if len(pending) >= (train_after or 0):
                    summary.model = _train(pending[:train_after], mdir, cfg, False, progress, log)
                    summary.trained, ready, pending = True, pending, []
            for name, even, odd in ready:
                t0, best = time.perf_counter(), summary.model
                assert best is not None
                item = BatchItem(name, even.absolute(), odd.absolute(), out / f"{name}{suffix}.mrc")
                try:
                    result = run_item(Manifest(best, cfg, [item], overwrite=overwrite), 0, log=log)
                except CryocareError as exc:
                    summary.failed[name], failed_sigs[name] = str(exc), (files.seen[even][0], files.seen[odd][0])
                    handled.discard(name)
                    result = f"failed: {exc}; skipped (retried if its files change)"
                else:
                    (summary.done if result == "done" else summary.skipped).append(name)
                    summary.failed.pop(name, None)
                processed, idle_since = processed + (result != "skipped"), time.monotonic()
                log(f"{name}: {result} ({time.perf_counter() - t0:.1f} s)")
                if stop.is_set() or (max_pairs is not None and processed >= max_pairs):
                    break
            if max_pairs is not None and processed >= max_pairs:
                summary.reason = "max-pairs"
                break
            if max_idle_minutes is not None and time.monotonic() - idle_since >= 60 * max_idle_minutes:
                summary.reason = "idle"
                break
            stop.wait(interval)
    except KeyboardInterrupt:
        summary.reason = "interrupted"
        if summary.model is None and (mdir / TRAINING_RECORD).is_file():
            log(f"training interrupted; {mdir / 'last.pt'} is kept and the same command continues it")
    summary.reason = summary.reason or "stopped"
    return summary
