"""Turn SIGINT/SIGTERM into a polite stop request while training (handlers restored afterwards)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopRequest:
    """``signum`` becomes the number of the first SIGINT/SIGTERM received."""

    signum: int = 0


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training: the first SIGINT/SIGTERM asks for a clean stop, a second one interrupts at once."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum:
            raise KeyboardInterrupt
        stop.signum = signum

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
