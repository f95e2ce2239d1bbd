"""The ``cryocare`` cyclopts application and exit codes; the ``commands_*`` modules register on it."""

from __future__ import annotations

from cyclopts import App, Parameter

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70

app = App(
    name="cryocare",
    help=(
        "Noise2Noise (cryo-CARE) restoration of cryo-ET tomograms and cryo-EM images.\n\n"
        "Train a U-Net on pairs of the same specimen with independent noise (even/odd frame or tilt "
        "halves) and restore the data; no clean image needed. Add --debug to any command to see a "
        "traceback on errors."
    ),
    version_flags=["--version"],
    default_parameter=Parameter(negative_iterable=()),
    suppress_keyboard_interrupt=False,
)
