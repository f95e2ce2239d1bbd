"""Log lines: the ``Log`` callable type every stage accepts, and the CLI's default sink (stderr)."""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]
"""A function that takes one line of progress or warning text."""


def log_stderr(msg: str) -> None:
    """Progress and log lines go to stderr (stdout stays for results)."""
    print(msg, file=sys.stderr, flush=True)


def quiet(_msg: str) -> None:
    """A :data:`Log` that drops every line."""
