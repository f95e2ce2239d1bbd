"""cryocare-torch: Noise2Noise (cryo-CARE) restoration of cryo-EM images and cryo-ET tomograms.

Python API (mirrors the CLI): ``from cryocare_torch.workflows.api import train, predict, denoise``
(``cryocare_torch.denoise`` works too; ``cryocare_torch.train`` and ``cryocare_torch.predict`` are the
packages behind them). Configuration: :class:`CryocareConfig`.
"""

from __future__ import annotations

from .config import CryocareConfig
from .version import __version__
from .workflows.api import denoise

__all__ = ["CryocareConfig", "__version__", "denoise"]
