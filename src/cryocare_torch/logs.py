"""Log lines: the ``Log`` callable type every stage accepts, the CLI's default sink (stderr), and plain progress
lines for logs without a terminal (SLURM, RELION, nohup): no carriage returns, few lines.

With a terminal, tqdm bars show progress; without one (``sys.stderr`` is not a TTY) a bar would write one
carriage-return update per step into the log file, so :class:`LinePacer` and :class:`PercentLog` decide when one
whole line is worth printing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Log = Callable[[str], None]
"""A function that takes one line of progress or warning text."""


def log_stderr(msg: str) -> None:
    """Progress and log lines go to stderr (stdout stays for results)."""
    print(msg, file=sys.stderr, flush=True)


def quiet(_msg: str) -> None:
    """A :data:`Log` that drops every line."""


def stderr_is_terminal() -> bool:
    """Whether progress bars can be drawn (stderr attached to a terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def resolve_progress(progress: bool | None) -> bool:
    """``None`` (the default everywhere): bars only on a terminal."""
    return stderr_is_terminal() if progress is None else bool(progress)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def pace_text(steps: int, seconds: float, steps_left: int, budget_left_s: float | None = None) -> str:
    """``"12.30 steps/s, 4:05 left"``: the rate so far and the time the remaining steps take at it, or the time
    budget left if that is sooner (``?`` before the first step)."""
    rate = steps / seconds if seconds > 0 else 0.0
    left = max(0, steps_left) / rate if rate > 0 else None
    if budget_left_s is not None:
        left = max(0.0, budget_left_s) if left is None else min(left, max(0.0, budget_left_s))
    return f"{rate:.2f} steps/s, {'?' if left is None else format_duration(left)} left"


class LinePacer:
    """When to print: milestones (every ``fraction`` of the total) always, other lines at most every
    ``min_interval`` seconds, and a heartbeat when nothing was printed for ``heartbeat`` seconds."""

    def __init__(self, total: int, *, fraction: float = 0.1, min_interval: float = 10.0, heartbeat: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.fraction = max(1, int(total)), fraction
        self.min_interval, self.heartbeat, self.clock = min_interval, heartbeat, clock
        self.last = clock()
        self.milestone = 0

    def _crossed(self, done: int) -> bool:
        m = int(done / self.total / self.fraction + 1e-9)
        crossed = m > self.milestone
        self.milestone = max(self.milestone, m)
        return crossed

    def due(self, done: int, *, final: bool = False) -> bool:
        """For an item completed (an epoch, a tile): print a line now?"""
        now = self.clock()
        if self._crossed(done) or final or done == 1 or now - self.last >= self.min_interval:
            self.last = now
            return True
        return False

    def heartbeat_due(self) -> bool:
        """Within a long item (an epoch's steps): print an interim line now?"""
        now = self.clock()
        if now - self.last >= self.heartbeat:
            self.last = now
            return True
        return False


class PercentLog:
    """One line per ~10% of a long job (e.g. prediction tiles) when no bar is drawn: ``update(n)`` like tqdm."""

    def __init__(self, total: int, label: str, log: Log, *, fraction: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.label, self.log, self.clock = max(1, int(total)), label, log, clock
        self.fraction, self.heartbeat = fraction, 60.0
        self.done, self.milestone, self.t0 = 0, 0, clock()
        self.last = self.t0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        milestone = int(self.done / self.total / self.fraction + 1e-9)
        if milestone <= self.milestone and now - self.last < self.heartbeat:
            return
        self.milestone, self.last = milestone, now
        elapsed = now - self.t0
        left = elapsed / self.done * max(0, self.total - self.done)
        self.log(f"{self.label}: {100 * min(self.done, self.total) / self.total:.0f}% ({self.done}/{self.total}), "
                 f"{format_duration(elapsed)} elapsed, {format_duration(left)} left")
