"""Atomic outputs: write to a temporary name in the target folder, rename when complete.

An interrupted run therefore leaves either the previous file or none, never a partial one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError

PARTIAL_SUFFIX = ".partial"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    nbytes: int = 0,
) -> Path:
    """Validate an output path before long work starts; returns it as a Path.

    Refuses an output equal to an input, an existing file without ``overwrite``, a missing or
    read-only parent folder, and a disk without room for ``nbytes`` (plus 1% headroom). Temporaries
    of ``path`` left by killed writers on this host are removed first.
    """
    out = Path(path)
    for inp in inputs:
        if _same_file(out, Path(inp)):
            raise OutputError("output path is the same as an input; choose another output name", out)
    if out.exists() and not overwrite:
        raise OutputError("output exists; pass --overwrite to replace it or choose another name", out)
    if out.exists() and out.is_dir():
        raise OutputError("output path is a folder; give a file name", out)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output folder {parent} does not exist; create it first", out)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable", out)
    remove_dead_partials(out)  # before the space check: a killed earlier attempt's temporary frees its room
    if nbytes > 0:
        free = shutil.disk_usage(parent).free
        need = int(nbytes * 1.01)
        if free < need:
            raise OutputError(
                f"not enough disk space in {parent}: need {need / 2**30:.2f} GiB, "
                f"{free / 2**30:.2f} GiB free; free space or write elsewhere",
                out,
            )
    return out


def _host() -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:64] or "host"


def temporary_sibling(path: Path) -> Path:
    """A unique temporary name in the same folder (same filesystem, so rename is atomic).

    ``.NAME.HOST-PID.RANDOM.partial``: the writer's host and process id let a later run recognise the
    temporaries of a writer that was killed outright (see :func:`remove_dead_partials`).
    """
    return path.with_name(f".{path.name}.{_host()}-{os.getpid()}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_dead_partials(path: str | Path) -> list[Path]:
    """Delete temporaries of ``path`` left by a writer on this host that no longer runs (SIGKILL, out of
    memory, power loss): they can be as large as the output. Temporaries of other hosts (a shared file
    system) or of running processes are left alone. Returns the removed files."""
    out = Path(path)
    prefix = f".{out.name}.{_host()}-"
    removed: list[Path] = []
    try:
        candidates = [p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(PARTIAL_SUFFIX)]
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (), nbytes: int = 0
) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is fsynced and renamed onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed.
    """
    out = check_output(path, overwrite=overwrite, inputs=inputs, nbytes=nbytes)
    tmp = temporary_sibling(out)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError("internal error: nothing was written", out)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_json(path: str | Path, obj: Any, *, overwrite: bool = True) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n", overwrite=overwrite)


def atomic_torch_save(obj: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    import torch

    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save(obj, tmp)
    return Path(path)
