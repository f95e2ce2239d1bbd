"""The two rules every even/odd pair obeys, in one place: how a file name says which half it is, and when
two halves match.

* Names: a half marker is one of :data:`EVEN_MARKERS` / :data:`ODD_MARKERS` as a whole word (separated
  by ``_``, ``-``, ``.`` or the ends of the name, any case): ``TS_01_EVN_Vol.mrc``, ``a_even.mrc``,
  ``b.odd.mrc``, ``c_half1.mrc``, ``c-half-2.mrc``, ``c_half_1.mrc``. When a name has several, the last one
  counts. :func:`split_half_marker` (pairing), :func:`half_of` (which half), :func:`pair_stem` (the
  pair's output name) and the report's file roles all use this one list.
* Match (:func:`check_halves`): two different files of the same shape and, where both headers carry one,
  the same voxel size (within 0.1%). :func:`validate_pairs` (train, predict, batch, watch, report),
  :func:`check_pair_compatible` (``prepare halves``) and training's array pairs all apply it; the files'
  content is checked there too (:mod:`cryocare_torch.io.pair_checks`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DataError
from .mrc import VolumeMeta
from .pair_checks import check_pair_content
from .volumes import read_volume_meta

EVEN_MARKERS = ("even", "evn", "half1", "half_1", "half-1")
ODD_MARKERS = ("odd", "half2", "half_2", "half-2")
_MARKER = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, EVEN_MARKERS + ODD_MARKERS)) + r")(?![A-Za-z0-9])",
                     re.IGNORECASE)
Half = Literal["even", "odd"]


def _stem(name: str) -> tuple[str, str]:
    suffix = Path(name).suffix
    return (name[: -len(suffix)] if suffix else name), suffix


def split_half_marker(path: str | Path) -> tuple[str, Half, str] | None:
    """``(key, half, name)`` for a file name with a half marker, else None.

    ``half`` is ``"even"`` or ``"odd"``; ``key`` is what the partner must share (the name around the
    marker, the marker's family and the extension); ``name`` is the file stem without the marker.
    """
    stem, suffix = _stem(Path(path).name)
    matches = list(_MARKER.finditer(stem))
    if not matches:
        return None
    m = matches[-1]
    word = m.group(1).lower()
    family = "half" if word.startswith("half") else "eo"
    half: Half = "even" if word in EVEN_MARKERS else "odd"
    a, b = m.start(), m.end()
    if a > 0 and stem[a - 1] in "_-.":
        a -= 1
    elif b < len(stem) and stem[b] in "_-.":
        b += 1
    key = f"{family}:{stem[: m.start()]}\0{stem[m.end():]}{suffix.lower()}"
    return key, half, stem[:a] + stem[b:]


def half_of(path: str | Path) -> Half | None:
    """``"even"``, ``"odd"`` or ``None``: the half a file name's marker names."""
    split = split_half_marker(path)
    return None if split is None else split[1]


def pair_stem(even: str | Path) -> str:
    """A name for a pair from its even file: ``TS_01_EVN_Vol.mrc`` -> ``TS_01_Vol``, ``a_even.mrc`` -> ``a``;
    a name that is only the marker (``even.mrc``) takes its folder's name."""
    split = split_half_marker(even)
    stem = split[2] if split is not None else _stem(Path(even).name)[0]
    return stem or Path(even).parent.name or "tomogram"


def check_distinct_files(even: str | Path, odd: str | Path) -> None:
    """Raise :class:`DataError` when both halves are the same file."""
    if Path(even).resolve() == Path(odd).resolve():
        raise DataError(f"even and odd are the same file ({even}); give the two independent halves", even)


def check_halves(even: str | Path, odd: str | Path, even_shape: Sequence[int], odd_shape: Sequence[int],
                 even_voxel: Sequence[float] | None = None, odd_voxel: Sequence[float] | None = None) -> None:
    """The one rule that two halves match: same shape and, where both are known, the same voxel size
    (within 0.1%); :class:`DataError` naming both halves otherwise."""
    if tuple(even_shape) != tuple(odd_shape):
        raise DataError(f"halves differ in shape: even half {even} has shape {tuple(even_shape)} but odd half "
                        f"{odd} has {tuple(odd_shape)}; pair the right files (both halves must come from the "
                        "same reconstruction)")
    if even_voxel is not None and odd_voxel is not None and any(
        abs(a - b) > 1e-3 * max(abs(a), abs(b)) for a, b in zip(even_voxel, odd_voxel, strict=True)
    ):
        raise DataError(f"halves differ in voxel size (even half {even} has {even_voxel[0]:.3f} A but odd half "
                        f"{odd} has {odd_voxel[0]:.3f} A); both halves must come from the same reconstruction")


def header_voxel(meta: VolumeMeta) -> tuple[float, ...] | None:
    """The header's voxel size, or None where the header has none (0)."""
    return tuple(meta.voxel_size) if meta.has_voxel_size else None


def check_pair_compatible(even: str | Path, odd: str | Path) -> VolumeMeta:
    """:func:`check_halves` on two files' headers, then whether their data can be a Noise2Noise pair
    (:func:`~cryocare_torch.io.pair_checks.check_pair_content`: dead half, identical data, shared noise, two
    different objects); returns the even half's meta."""
    me, mo = read_volume_meta(even), read_volume_meta(odd)
    check_halves(even, odd, me.shape, mo.shape, header_voxel(me), header_voxel(mo))
    check_pair_content(Path(even), Path(odd))
    return me


def validate_pairs(pairs: Sequence[tuple[str | Path, str | Path]]) -> list[tuple[Path, Path]]:
    """Check every pair before any long work: two readable, different files that match (:func:`check_halves`)."""
    if not pairs:
        raise ConfigError("no even/odd pairs given; pass --even E.mrc --odd O.mrc")
    out = []
    for even, odd in pairs:
        e, o = Path(even), Path(odd)
        check_distinct_files(e, o)
        check_pair_compatible(e, o)
        out.append((e, o))
    return out
