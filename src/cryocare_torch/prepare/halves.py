"""Halves made elsewhere: Warp ``even/``+``odd/`` folders, AreTomo3 ``_EVN``/``_ODD`` files, a RELION 5
``tomograms.star``, a list file or two explicit paths -> one checked pair list file.

A thin layer over :func:`cryocare_torch.io.pairs.find_pairs` (which pairs by name and refuses anything
ambiguous): every pair is checked for equal shape and voxel size before the list is written, so later
commands (``cryocare batch``, :func:`find_pairs` on the list) get only usable pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..io.atomic import check_output
from ..io.halves import check_pair_compatible
from ..io.pairs import PairSpec, find_pairs
from .pipeline import write_pair_list


def collect_halves(
    source: str | Path | None = None,
    *,
    even: str | Path | None = None,
    odd: str | Path | None = None,
    project_dir: str | Path | None = None,
) -> list[PairSpec]:
    """Pairs found by :func:`find_pairs`, each checked with :func:`check_pair_compatible`."""
    pairs = find_pairs(source, even=even, odd=odd, project_dir=project_dir)
    for p in pairs:
        check_pair_compatible(p.even, p.odd)
    return pairs


def write_halves_list(
    output: str | Path,
    source: str | Path | None = None,
    *,
    even: str | Path | None = None,
    odd: str | Path | None = None,
    project_dir: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, list[PairSpec]]:
    """Find and check the pairs, then write them as ``name even odd`` lines to ``output``."""
    out = check_output(output, overwrite=overwrite)
    pairs = collect_halves(source, even=even, odd=odd, project_dir=project_dir)
    if log is not None:
        for p in pairs:
            log(f"{p.name}: {p.even} + {p.odd}")
    write_pair_list(out, [(p.name, p.even, p.odd) for p in pairs], overwrite=overwrite)
    return out, pairs
