"""User-facing errors.

Every failure caused by the user's input (a file, an option, a checkpoint) is raised as a subclass of
:class:`CryocareError`. The CLI turns it into a single line on stderr and a distinct exit code; library
callers can catch it by type. Messages name the file or option and say how to fix the problem.
"""

from __future__ import annotations

from pathlib import Path


class CryocareError(Exception):
    """Base class of all errors a user can act on. ``exit_code`` is the CLI's exit status."""

    exit_code: int = 1

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        text = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {text}" if self.path is not None else text)


class ConfigError(CryocareError):
    """An option or configuration file value is invalid."""

    exit_code = 2


class InputFileError(CryocareError):
    """An input file is missing, unreadable, corrupt or of an unsupported format."""

    exit_code = 3


class DataError(CryocareError):
    """Input data are readable but unusable (shape mismatch, NaN, constant, too small...)."""

    exit_code = 4


class OutputError(CryocareError):
    """An output cannot be written (exists without --overwrite, equals an input, no disk space...)."""

    exit_code = 5


class CheckpointError(CryocareError):
    """A model checkpoint is missing, corrupt, or from an incompatible version."""

    exit_code = 6


class DeviceError(CryocareError):
    """The requested compute device is unavailable or ran out of memory irrecoverably."""

    exit_code = 7


class ClusterError(CryocareError):
    """The scheduler refused a job, is unreachable, or a job did not finish (in time)."""

    exit_code = 8
