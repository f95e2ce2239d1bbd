"""Files <-> arrays + metadata (MRC, TIFF/EER movies, SerialEM .mdoc, IMOD, AreTomo, RELION, pairing)."""

from .aretomo import AretomoAlignment, DarkFrame, aln_to_xf, read_aln
from .atomic import atomic_path, atomic_torch_save, atomic_write_json, check_output
from .halves import check_pair_compatible
from .imod import (
    check_count,
    parse_exclude_list,
    read_com,
    read_newst_com,
    read_tilt_com,
    read_tlt,
    read_xf,
    read_xtilt,
    write_tlt,
    write_xf,
)
from .mdoc import TiltSeriesMdoc, read_mdoc, write_mdoc
from .movie import MovieMeta, apply_gain, orient_gain, read_gain, read_movie, serialem_orientation
from .mrc import VolumeMeta, VolumeWriter, open_memmap, read_meta, read_slab, read_volume, write_volume
from .pairs import PairSpec, find_pairs, read_pair_list
from .star import TomogramEntry, read_tomograms_star
from .tiff import read_tiff_stack, write_tiff_movie

__all__ = [
    "AretomoAlignment", "DarkFrame", "MovieMeta", "PairSpec", "TiltSeriesMdoc", "TomogramEntry", "VolumeMeta",
    "VolumeWriter", "aln_to_xf", "apply_gain", "atomic_path", "atomic_torch_save", "atomic_write_json",
    "check_count", "check_output", "check_pair_compatible", "find_pairs", "open_memmap", "orient_gain",
    "parse_exclude_list", "read_aln", "read_com", "read_gain", "read_mdoc", "read_meta", "read_movie",
    "read_newst_com", "read_pair_list", "read_slab", "read_tiff_stack", "read_tilt_com", "read_tlt",
    "read_tomograms_star", "read_volume", "read_xf", "read_xtilt", "serialem_orientation", "write_mdoc",
    "write_tiff_movie", "write_tlt", "write_volume", "write_xf",
]
