"""Tiled, memory-bounded prediction (cryo-CARE restoration of an even/odd pair).

* :func:`predict_tensor` - a model over one image/volume tensor, tile by tile, in memory;
* :func:`predict_pair_arrays` - normalise a pair, restore both halves, average them;
* :func:`predict_files` - the same for MRC files, slab by slab, written atomically.
"""

from __future__ import annotations

from .arrays import predict_arrays, predict_pair_arrays, predict_tensor, sample_stats
from .files import file_stats, half_paths, predict_files
from .memory import TilePlan, bytes_per_voxel, choose_tiling

__all__ = [
    "TilePlan",
    "bytes_per_voxel",
    "choose_tiling",
    "file_stats",
    "half_paths",
    "predict_arrays",
    "predict_files",
    "predict_pair_arrays",
    "predict_tensor",
    "sample_stats",
]
