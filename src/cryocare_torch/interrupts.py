"""The one place that installs SIGINT (Ctrl-C) / SIGTERM (SLURM time limit, scancel, kill) handlers.

:func:`signal_handlers` installs them for the length of a ``with`` block, in the main thread only (Python
allows no other), and always restores the previous handlers, also when the block raises. Training's polite
stop (:func:`cryocare_torch.train.signals.stop_requests`), the watch's "finish the current pair" and the
batch's "SIGTERM cleans up like Ctrl-C" are built on it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

Handler = Callable[[int, Any], None]


def raise_interrupt(signum: int, frame: Any) -> None:
    """A handler that turns the signal into ``KeyboardInterrupt`` (partial outputs are removed on the way out)."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def signal_handlers(*, sigint: Handler | None = None, sigterm: Handler | None = None) -> Iterator[None]:
    """Handle SIGINT / SIGTERM with the given functions (``None``: leave that signal as it is) inside the block."""
    wanted = {s: h for s, h in ((signal.SIGINT, sigint), (signal.SIGTERM, sigterm)) if h is not None}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in wanted}
    try:
        for s, handler in wanted.items():
            signal.signal(s, handler)
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)
