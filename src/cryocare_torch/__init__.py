"""cryocare-torch: Noise2Noise (cryo-CARE) restoration of cryo-EM images and cryo-ET tomograms."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryocare-torch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
