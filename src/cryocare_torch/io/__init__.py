"""Files <-> arrays + metadata (MRC, TIFF, IMOD/AreTomo/SerialEM/RELION side files)."""

from .atomic import atomic_path, atomic_torch_save, atomic_write_json, check_output
from .mrc import VolumeMeta, VolumeWriter, open_memmap, read_meta, read_slab, read_volume, write_volume

__all__ = [
    "VolumeMeta",
    "VolumeWriter",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_json",
    "check_output",
    "open_memmap",
    "read_meta",
    "read_slab",
    "read_volume",
    "write_volume",
]
