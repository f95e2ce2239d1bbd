"""Typed states of a batch: what happened to an item (:class:`ItemStatus`, :class:`ItemResult`) and whether an
output file is complete (:func:`output_state` -> :class:`OutputState`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

from ..errors import CryocareError
from ..io.mrc import read_meta


class ItemStatus(str, Enum):
    """What happened to one batch item."""

    DONE = "done"
    SKIPPED = "skipped"  # its output was already complete
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ItemResult:
    """An item's :class:`ItemStatus` and, for a failure, why; ``str()`` is ``done``, ``skipped`` or
    ``failed: <why>``."""

    status: ItemStatus
    why: str = ""

    def __str__(self) -> str:
        return f"{self.status}: {self.why}" if self.status is ItemStatus.FAILED else str(self.status)


@dataclass(frozen=True)
class OutputState:
    """An output file's state: ``missing``, ``complete`` or ``incomplete`` (with why); ``str()`` is
    ``missing``, ``complete`` or ``incomplete: <why>``."""

    kind: Literal["missing", "complete", "incomplete"]
    why: str = ""

    @property
    def complete(self) -> bool:
        return self.kind == "complete"

    def __str__(self) -> str:
        return f"{self.kind}: {self.why}" if self.kind == "incomplete" else self.kind


def output_state(output: Path, shape: tuple[int, ...]) -> OutputState:
    """Missing, complete (valid float32 or float16 MRC of ``shape``, exact size) or incomplete (with why)."""
    if not output.exists():
        return OutputState("missing")
    try:
        meta = read_meta(output)
    except CryocareError as exc:
        return OutputState("incomplete", str(exc).split(": ", 1)[-1])
    if tuple(meta.shape) != tuple(shape):
        return OutputState("incomplete", f"shape {meta.shape} differs from the input's {tuple(shape)}")
    itemsize = {2: 4, 12: 2}.get(meta.mode, 0)  # --output-dtype float32 or float16
    size, want = output.stat().st_size, meta.data_offset + itemsize * math.prod(shape)
    if not itemsize or size != want:
        return OutputState("incomplete", f"mode {meta.mode}, {size} bytes (expected float32 or float16, "
                                         f"{want} bytes)")
    return OutputState("complete")


def count(results: dict[str, ItemResult], status: ItemStatus) -> int:
    """How many of ``results`` have ``status``."""
    return sum(r.status is status for r in results.values())

