"""``python -m cryocare_torch`` (and ``torchrun ... -m cryocare_torch train ...``): the ``cryocare`` command."""

from .cli.main import run

run()
