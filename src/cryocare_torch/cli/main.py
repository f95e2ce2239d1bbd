"""The ``cryocare`` command: argument parsing, one-line errors, exit codes.

Every failure a user can act on ends with one line on stderr, ``cryocare: error: <file>: <problem>``,
and the exit code of its :class:`~cryocare_torch.errors.CryocareError` class. ``--debug`` (anywhere
on the command line) shows the Python traceback instead.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

from cyclopts.exceptions import CycloptsError
from pydantic import ValidationError

from ..config_runs import format_option_errors
from ..errors import CryocareError
from . import (  # noqa: F401  (register)
    commands_batch,
    commands_core,
    commands_ctf,
    commands_eval,
    commands_prepare,
    commands_watch,
)
from .app import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, app


def _error(message: str, prog: str = "cryocare") -> None:
    first = " ".join(str(message).split())
    print(f"{prog}: error: {first}", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CRYOCARE_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    code = main(args, debug=debug)
    if argv is None:
        sys.exit(code)
    return code


def main(args: Sequence[str], *, debug: bool = False) -> int:
    def call() -> object:
        return app(list(args), exit_on_error=False, print_error=False, result_action="return_value")

    return guarded(call, debug=debug)


def guarded(call: Callable[[], object], *, debug: bool = False, prog: str = "cryocare") -> int:
    """Run ``call`` and turn every failure into one ``PROG: error: ...`` line and its exit code."""
    try:
        with warnings.catch_warnings():
            if not debug:  # library warnings (numpy, torch, mrcfile) would break the one-line error; --debug shows them
                warnings.simplefilter("ignore")
            result = call()
    except CycloptsError as exc:  # a bound of a config model (pydantic) names the flag, not the model
        why = format_option_errors(exc.__cause__) if isinstance(exc.__cause__, ValidationError) else str(exc)
        _error(f"{why} (see '{prog} --help')", prog)
        return EXIT_USAGE
    except CryocareError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc), prog)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted; partial outputs were removed (training can be continued with --resume)", prog)
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        _error("out of host memory; lower --memory-budget/--tile-size or --batch-size", prog)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a bare traceback
        if debug:
            traceback.print_exc()
        _error(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it", prog)
        return EXIT_INTERNAL
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run())
