"""The one SIGINT/SIGTERM helper: handlers are active inside the block and the previous ones come back
afterwards, also when the block raises; training's two-stage stop is built on it."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from cryocare_torch.interrupts import raise_interrupt, signal_handlers
from cryocare_torch.train.signals import stop_requests


def _mark(signum: int, frame: Any) -> None:  # a recognisable "previous" handler
    raise RuntimeError(f"previous handler got {signum}")


@pytest.fixture
def previous_handlers():  # type: ignore[no-untyped-def]
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, _mark)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.usefixtures("previous_handlers")
def test_sigterm_interrupts_inside_and_is_restored_after() -> None:
    with pytest.raises(KeyboardInterrupt), signal_handlers(sigterm=raise_interrupt):
        assert signal.getsignal(signal.SIGINT) is _mark  # not asked for: left alone
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is _mark and signal.getsignal(signal.SIGINT) is _mark
    with pytest.raises(RuntimeError, match=f"previous handler got {int(signal.SIGTERM)}"):
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.usefixtures("previous_handlers")
def test_restored_when_the_block_raises_or_ends_normally() -> None:
    seen: list[int] = []
    with pytest.raises(ValueError), signal_handlers(sigint=lambda s, f: seen.append(s)):
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("boom")
    assert seen == [int(signal.SIGINT)] and signal.getsignal(signal.SIGINT) is _mark
    with signal_handlers(sigint=raise_interrupt, sigterm=raise_interrupt):
        pass
    assert signal.getsignal(signal.SIGINT) is _mark and signal.getsignal(signal.SIGTERM) is _mark


@pytest.mark.usefixtures("previous_handlers")
def test_other_threads_leave_handlers_alone() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with signal_handlers(sigterm=raise_interrupt):
                pass
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is _mark


@pytest.mark.usefixtures("previous_handlers")
def test_training_stop_first_asks_then_interrupts() -> None:
    with pytest.raises(KeyboardInterrupt), stop_requests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == int(signal.SIGTERM)  # first: a polite request
        os.kill(os.getpid(), signal.SIGINT)  # second: at once
    assert signal.getsignal(signal.SIGINT) is _mark and signal.getsignal(signal.SIGTERM) is _mark
