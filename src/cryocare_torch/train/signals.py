"""Turn SIGINT/SIGTERM into a polite stop request while training (handlers restored afterwards)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..interrupts import signal_handlers


class StopRequest:
    """``signum`` becomes the number of the first SIGINT/SIGTERM received."""

    signum: int = 0


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While training: the first SIGINT/SIGTERM asks for a clean stop, a second one interrupts at once."""
    stop = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if stop.signum:
            raise KeyboardInterrupt
        stop.signum = signum

    with signal_handlers(sigint=handler, sigterm=handler):
        yield stop
