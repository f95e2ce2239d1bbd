"""cryocare-torch: Noise2Noise (cryo-CARE) restoration of cryo-EM images and cryo-ET tomograms.

Python API (mirrors the CLI): ``from cryocare_torch.api import train, predict, denoise``
(``cryocare_torch.denoise`` works too; ``cryocare_torch.train`` and ``cryocare_torch.predict`` are the
packages behind them). Configuration: :class:`CryocareConfig`. Heavy modules load on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cryocare-torch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["CryocareConfig", "__version__", "denoise"]


def __getattr__(name: str) -> Any:
    if name == "denoise":
        from .api import denoise

        return denoise
    if name == "CryocareConfig":
        from .config import CryocareConfig

        return CryocareConfig
    raise AttributeError(name)
