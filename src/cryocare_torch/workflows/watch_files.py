"""What the watch sees in its folder: the name pairs there now (:func:`scan_pairs`) and whether each file is
complete yet (:class:`Files`: unchanged over one poll interval and a readable MRC header with all its data)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CryocareError, InputFileError
from ..io.halves import split_half_marker
from ..io.mrc import read_meta
from ..io.pairs import VOLUME_SUFFIXES

Signature = tuple[int, int]
Pair = tuple[str, Path, Path]
SETTLE_POLLS = 10
"""A file unchanged for this many intervals whose header still does not match its size is reported as bad."""


class Readiness(enum.Enum):
    WAIT = "wait"
    READY = "ready"
    BAD = "bad"


@dataclass(frozen=True)
class FileState:
    """A file's :class:`Readiness`, its (size, mtime) signature and, when bad, why."""

    readiness: Readiness
    signature: Signature | None
    why: str = ""


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


class Files:
    """Size and mtime of every file seen, and since when they are unchanged."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.seen: dict[Path, tuple[Signature, float]] = {}
        self.changed = False

    def state(self, path: Path, now: float) -> FileState:
        """Wait (still changing or not yet valid), ready, or bad (unchanged for SETTLE_POLLS intervals, header
        still invalid)."""
        try:
            st = path.stat()
        except OSError:
            return FileState(Readiness.WAIT, None)
        sig = (st.st_size, st.st_mtime_ns)
        old = self.seen.get(path)
        if old is None or old[0] != sig:
            self.seen[path] = (sig, now)
            self.changed = True
            return FileState(Readiness.WAIT, sig)
        stable = now - old[1]
        if stable < self.interval:
            return FileState(Readiness.WAIT, sig)
        try:
            read_meta(path)
        except CryocareError as exc:
            bad = stable >= SETTLE_POLLS * self.interval
            return FileState(Readiness.BAD, sig, str(exc)) if bad else FileState(Readiness.WAIT, sig)
        return FileState(Readiness.READY, sig)
