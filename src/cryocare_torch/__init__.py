"""cryocare-torch: Noise2Noise (cryo-CARE) restoration of cryo-EM images and cryo-ET tomograms.

Python API (mirrors the CLI): :func:`train`, :func:`predict`, :func:`denoise`; configuration in
:class:`CryocareConfig`. Heavy modules are imported on first use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cryocare-torch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["CryocareConfig", "__version__", "denoise", "predict", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "predict", "denoise"):
        from . import api

        return getattr(api, name)
    if name == "CryocareConfig":
        from .config import CryocareConfig

        return CryocareConfig
    raise AttributeError(name)
