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

import enum
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import CryocareConfig
from ..config_runs import updated
from ..errors import CheckpointError, ConfigError, CryocareError, InputFileError
from ..io.atomic import atomic_write_json
from ..io.halves import validate_pairs
from ..logs import Log, quiet
from ..runtime import resolve_device
from ..train.checkpoint import load_checkpoint
from . import api
from .batch import BatchItem, Manifest, run_item
from .batch_state import ItemStatus
from .watch_files import Files, Pair, Readiness, Signature, scan_pairs

TRAINING_RECORD = "watch_training.json"


class StopReason(str, enum.Enum):
    """Why a watch ended."""

    MAX_PAIRS = "max-pairs"
    IDLE = "idle"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


@dataclass
class WatchSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # output already complete
    failed: dict[str, str] = field(default_factory=dict)
    model: Path | None = None
    trained: bool = False
    reason: StopReason | None = None  # why the watch ended

    def line(self) -> str:
        text = (f"watch ended ({self.reason}): {len(self.done)} restored, {len(self.skipped)} already complete, "
                f"{len(self.failed)} failed")
        return text + (f" ({', '.join(sorted(self.failed))})" if self.failed else "")


def _where(config: CryocareConfig) -> str:
    device = resolve_device(config.predict.device)  # a DeviceError now rather than for every pair
    return f"GPU {device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "CPU"


def _check(folder: Path, model: Path | None, train_after: int | None) -> Path | None:
    if not folder.is_dir():
        raise InputFileError("watch folder not found (or not a folder); check the path", folder)
    if (model is None) == (train_after is None):
        raise ConfigError("give either --model (a trained model) or --train-after N (train on the first N pairs)")
    if train_after is not None and train_after < 1:
        raise ConfigError(f"--train-after must be at least 1, not {train_after}")
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


@dataclass
class _Settings:
    """What one watch was asked to do (fixed while it runs)."""

    folder: Path
    out: Path
    mdir: Path
    cfg: CryocareConfig
    suffix: str
    overwrite: bool
    progress: bool
    interval: float
    train_after: int | None
    max_pairs: int | None
    max_idle_minutes: float | None
    log: Log


class _Watch:
    """The state of one running watch; :meth:`run` is its loop."""

    def __init__(self, s: _Settings, summary: WatchSummary) -> None:
        self.s, self.summary = s, summary
        self.files = Files(s.interval)
        self.pending: list[Pair] = []
        self.handled: set[str] = set()
        self.failed_sigs: dict[str, tuple[Signature | None, ...]] = {}
        self.reported: set[str] = set()
        self.idle_since, self.processed = time.monotonic(), 0
        self.own = re.compile(rf".*{re.escape(s.suffix)}(_even|_odd)?\.mrc")

    def ignore(self, p: Path) -> bool:  # our own outputs (and --write-halves files) when writing into the folder
        return p.parent.absolute() == self.s.out and self.own.fullmatch(p.name) is not None

    def _fail(self, name: str, exc: CryocareError, sigs: tuple[Signature | None, ...]) -> None:
        self.summary.failed[name], self.failed_sigs[name] = str(exc), sigs

    def resume_training(self) -> None:
        """Reuse, or resume, the model an earlier watch trained in the model folder."""
        s = self.s
        record = _record(s.mdir) if self.summary.model is None else None
        if record and record[0] and (s.mdir / "best.pt").is_file():
            self.summary.model = (s.mdir / "best.pt").absolute()  # trained by an earlier watch: reused
        elif record:
            self.summary.model = _train(record[1], s.mdir, s.cfg, True, s.progress, s.log)
            self.summary.trained = True
        s.log(f"model {self.summary.model}" if self.summary.model else f"waiting for {s.train_after} pair(s) to "
              "train on")

    def admit(self, now: float) -> list[Pair]:
        """The pairs whose two files are complete now and match; bad ones are failed once (until they change)."""
        pairs, problems = scan_pairs(self.s.folder, self.ignore)
        for msg in sorted(set(problems) - self.reported):
            self.reported.add(msg)
            self.s.log(msg)
        ready: list[Pair] = []
        for name, even, odd in pairs:
            if name in self.handled:
                continue
            se, so = self.files.state(even, now), self.files.state(odd, now)
            sigs = (se.signature, so.signature)
            if Readiness.WAIT in (se.readiness, so.readiness) or self.failed_sigs.get(name) == sigs:
                continue
            try:
                if se.readiness is Readiness.BAD or so.readiness is Readiness.BAD:
                    raise InputFileError(se.why if se.readiness is Readiness.BAD else so.why)
                validate_pairs([(even, odd)])
                self.handled.add(name)
                ready.append((name, even, odd))
            except CryocareError as exc:
                self._fail(name, exc, sigs)
                self.processed, self.idle_since = self.processed + 1, now
                self.s.log(f"{name}: failed: {exc}; skipped (retried if its files change)")
        return ready

    def train_when_enough(self, ready: list[Pair]) -> list[Pair]:
        """Without a model: collect pairs until ``train_after`` are ready, train, then restore them all."""
        if self.summary.model is not None:
            return ready
        s = self.s
        self.pending += ready
        if ready:
            s.log(f"{len(self.pending)} of {s.train_after} pair(s) ready for training")
        if len(self.pending) < (s.train_after or 0):
            return []
        self.summary.model = _train(self.pending[: s.train_after], s.mdir, s.cfg, False, s.progress, s.log)
        self.summary.trained, ready, self.pending = True, self.pending, []
        return ready

    def restore(self, pair: Pair) -> None:
        name, even, odd = pair
        t0, best, s = time.perf_counter(), self.summary.model, self.s
        assert best is not None
        item = BatchItem(name, even.absolute(), odd.absolute(), s.out / f"{name}{s.suffix}.mrc")
        try:
            status = run_item(Manifest(best, s.cfg, [item], overwrite=s.overwrite), 0, log=s.log)
        except CryocareError as exc:
            self._fail(name, exc, (self.files.seen[even][0], self.files.seen[odd][0]))
            self.handled.discard(name)
            result = f"failed: {exc}; skipped (retried if its files change)"
            self.processed += 1
        else:
            (self.summary.done if status is ItemStatus.DONE else self.summary.skipped).append(name)
            self.summary.failed.pop(name, None)
            result = str(status)
            self.processed += status is not ItemStatus.SKIPPED
        self.idle_since = time.monotonic()
        s.log(f"{name}: {result} ({time.perf_counter() - t0:.1f} s)")

    def _max_pairs_reached(self) -> bool:
        return self.s.max_pairs is not None and self.processed >= self.s.max_pairs

    def run(self, stop: threading.Event) -> None:
        s = self.s
        while not stop.is_set():
            now, self.files.changed = time.monotonic(), False
            ready = self.admit(now)
            if self.files.changed:
                self.idle_since = now
            for pair in self.train_when_enough(ready):
                self.restore(pair)
                if stop.is_set() or self._max_pairs_reached():
                    break
            if self._max_pairs_reached():
                self.summary.reason = StopReason.MAX_PAIRS
                return
            if s.max_idle_minutes is not None and time.monotonic() - self.idle_since >= 60 * s.max_idle_minutes:
                self.summary.reason = StopReason.IDLE
                return
            stop.wait(s.interval)


def watch(
    folder: str | Path,
    output_dir: str | Path,
    config: CryocareConfig | None = None,
    *,
    model: str | Path | None = None,
    train_after: int | None = None,
    model_dir: str | Path | None = None,
    suffix: str = "_denoised",
    interval: float | None = None,
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
    ``interval``, ``max_idle_minutes`` and ``max_pairs`` (None: ``config.watch``'s) are described in
    :class:`~cryocare_torch.config_runs.WatchConfig`.
    """
    log = log or quiet
    cfg = config or CryocareConfig()
    when = updated(cfg.watch, interval=interval, max_idle_minutes=max_idle_minutes, max_pairs=max_pairs)
    folder, out = Path(folder), Path(output_dir).absolute()
    ckpt = _check(folder, None if model is None else Path(model), train_after)
    mdir = Path(model_dir) if model_dir is not None else out / "cryocare_watch_model"
    summary = WatchSummary(model=ckpt)
    out.mkdir(parents=True, exist_ok=True)
    state = _Watch(_Settings(folder, out, mdir, cfg, suffix, overwrite, progress, when.interval, train_after,
                             when.max_pairs, when.max_idle_minutes, log), summary)
    log(f"watching {folder} every {when.interval:g} s; restoring on {_where(cfg)} into {out}")
    try:
        state.resume_training()
        state.run(stop or threading.Event())
    except KeyboardInterrupt:
        summary.reason = StopReason.INTERRUPTED
        if summary.model is None and (mdir / TRAINING_RECORD).is_file():
            log(f"training interrupted; {mdir / 'last.pt'} is kept and the same command continues it")
    summary.reason = summary.reason or StopReason.STOPPED
    return summary
