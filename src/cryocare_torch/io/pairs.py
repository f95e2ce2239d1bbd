"""Find even/odd half pairs by name (never by sorted order) and check they match.

Supported layouts (:func:`find_pairs`):

* a folder with ``even/`` and ``odd/`` sub-folders holding identically named files (Warp);
* a folder of files whose names carry a half marker: ``*_EVN_Vol.mrc``/``*_ODD_Vol.mrc`` and
  ``*_EVN.mrc``/``*_ODD.mrc`` (AreTomo3), ``*_even.mrc``/``*_odd.mrc``, ``*_half1.mrc``/``*_half2.mrc``.
  The markers are :data:`cryocare_torch.io.halves.EVEN_MARKERS` / ``ODD_MARKERS``, whole words (separated
  by ``_``, ``-``, ``.`` or the ends, any case); when a name has several, the last one counts.
  Everything else in the name, and the extension, must match exactly;
* a RELION 5 ``tomograms.star`` (``rlnTomoReconstructedTomogramHalf1/2``);
* a list file: ``even odd`` or ``name even odd`` per line (whitespace, tab or comma separated,
  ``#`` comments, an optional ``even odd`` header), paths relative to the list file;
* ``even=`` and ``odd=`` given directly: two files (one pair) or two folders (identical names).

Anything ambiguous is refused with :class:`InputFileError`: a half without partner, two candidates
for one half, a file used twice, two pairs with the same name, or no pair at all.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputFileError
from .halves import split_half_marker
from .imod import read_text_lines
from .star import read_tomograms_star

VOLUME_SUFFIXES = (".mrc", ".rec", ".map", ".mrcs")
_LAYOUTS = ("even/ and odd/ folders, *_EVN_Vol.mrc + *_ODD_Vol.mrc, *_even.mrc + *_odd.mrc, "
            "*_half1.mrc + *_half2.mrc, a RELION tomograms.star or a list file of 'even odd' lines")


@dataclass(frozen=True)
class PairSpec:
    """One even/odd pair and the name used for its outputs."""

    name: str
    even: Path
    odd: Path


def _is_volume(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VOLUME_SUFFIXES and not p.name.startswith(".")


def _check_unique(pairs: list[PairSpec], where: Path) -> list[PairSpec]:
    names: dict[str, PairSpec] = {}
    used: dict[Path, str] = {}
    for pair in pairs:
        if pair.even.resolve() == pair.odd.resolve():
            raise InputFileError(f"pair {pair.name!r} uses the same file {pair.even} as even and odd half", where)
        if pair.name in names:
            raise InputFileError(f"two pairs are named {pair.name!r} ({names[pair.name].even.name} and "
                                 f"{pair.even.name}); outputs would collide, rename one", where)
        names[pair.name] = pair
        for f in (pair.even, pair.odd):
            r = f.resolve()
            if r in used:
                raise InputFileError(f"{f} is used twice (pairs {used[r]!r} and {pair.name!r}); each file "
                                     f"may appear in one pair only", where)
            used[r] = pair.name
    if not pairs:
        raise InputFileError(f"no even/odd pairs found; expected {_LAYOUTS}", where)
    return sorted(pairs, key=lambda q: q.name)


def _pair_by_marker(files: list[Path], where: Path) -> list[PairSpec]:
    groups: dict[str, dict[str, list[Path]]] = defaultdict(lambda: {"even": [], "odd": []})
    names: dict[str, str] = {}
    for f in sorted(files):
        split = split_half_marker(f)
        if split is None:
            continue
        key, half, name = split
        groups[key][half].append(f)
        names[key] = name or where.name
    pairs = []
    for key, halves in sorted(groups.items()):
        for half, other in (("even", "odd"), ("odd", "even")):
            if len(halves[half]) > 1:
                listed = ", ".join(p.name for p in halves[half])
                raise InputFileError(f"two {half} candidates for {names[key]!r}: {listed}; keep one or pass a "
                                     f"list file", where)
            if halves[half] and not halves[other]:
                raise InputFileError(f"{halves[half][0].name} has no {other} partner (same name with the "
                                     f"{other} marker); add it, remove it, or pass a list file", where)
        pairs.append(PairSpec(names[key], halves["even"][0], halves["odd"][0]))
    return pairs


def _pair_folders(even_dir: Path, odd_dir: Path) -> list[PairSpec]:
    evens = {p.name: p for p in even_dir.iterdir() if _is_volume(p)}
    odds = {p.name: p for p in odd_dir.iterdir() if _is_volume(p)}
    if set(evens) != set(odds):  # RELION/AreTomo names differ by their half marker (TS_1_half1 / TS_1_half2)
        by_marker = _pair_marked_folders(list(evens.values()), list(odds.values()), even_dir)
        if by_marker is not None:
            return by_marker
    for name in sorted(set(evens) ^ set(odds)):
        have, missing = (even_dir, odd_dir) if name in evens else (odd_dir, even_dir)
        raise InputFileError(f"{have / name} has no partner {missing / name}; both folders must hold the same "
                             f"file names", have / name)
    return [PairSpec(evens[n].name[: -len(evens[n].suffix)], evens[n], odds[n]) for n in sorted(evens)]


def _pair_marked_folders(evens: list[Path], odds: list[Path], where: Path) -> list[PairSpec] | None:
    """Pairs by half marker when every even-folder file is an even half and every odd-folder file an odd one."""
    halves = [split_half_marker(f) for f in evens + odds]
    want = ["even"] * len(evens) + ["odd"] * len(odds)
    if not halves or any(h is None or h[1] != w for h, w in zip(halves, want, strict=True)):
        return None
    return _pair_by_marker(evens + odds, where)


def _split_line(line: str) -> list[str]:
    if "\t" in line:
        return [t.strip() for t in line.split("\t") if t.strip()]
    if "," in line:
        return [t.strip() for t in line.split(",") if t.strip()]
    return shlex.split(line)


def read_pair_list(path: str | Path) -> list[PairSpec]:
    """Pairs from a list file (``even odd`` or ``name even odd`` per line)."""
    p = Path(path)
    pairs: list[PairSpec] = []
    for lineno, raw in enumerate(read_text_lines(p, "pair list file"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = _split_line(line)
        except ValueError as exc:
            raise InputFileError(f"line {lineno}: {exc} in {line[:60]!r}", p) from None
        if not pairs and [t.lower() for t in tokens] in (["even", "odd"], ["name", "even", "odd"]):
            continue
        if len(tokens) not in (2, 3):
            raise InputFileError(f"line {lineno}: expected 'even odd' or 'name even odd', found {len(tokens)} "
                                 f"fields ({line[:60]!r})", p)
        files = [Path(t) if Path(t).is_absolute() else p.parent / t for t in tokens[-2:]]
        for f in files:
            if not f.is_file():
                raise InputFileError(f"line {lineno}: {f} does not exist; paths are relative to the list file", p)
        if len(tokens) == 3:
            name = tokens[0]
        else:
            split = split_half_marker(files[0])
            name = split[2] if split and split[2] else files[0].name[: -len(files[0].suffix) or None]
        pairs.append(PairSpec(name, files[0], files[1]))
    return _check_unique(pairs, p)


def _pairs_from_star(path: Path, project_dir: str | Path | None) -> list[PairSpec]:
    pairs = []
    for entry in read_tomograms_star(path, project_dir=project_dir):
        if entry.half1 is None or entry.half2 is None:
            raise InputFileError(f"tomogram {entry.name!r} has no rlnTomoReconstructedTomogramHalf1/Half2; in "
                                 f"RELION 5 re-run Reconstruct tomograms with 'Generate tomograms for denoising'",
                                 path)
        for f in (entry.half1, entry.half2):
            if not f.is_file():
                raise InputFileError(f"tomogram {entry.name!r}: half {f} does not exist; run from the RELION "
                                     f"project folder or pass project_dir", path)
        pairs.append(PairSpec(entry.name, entry.half1, entry.half2))
    return _check_unique(pairs, path)


def find_pairs(
    source: str | Path | None = None,
    *,
    even: str | Path | None = None,
    odd: str | Path | None = None,
    project_dir: str | Path | None = None,
) -> list[PairSpec]:
    """Even/odd pairs from a folder, a tomograms.star, a list file, or explicit ``even``/``odd`` paths."""
    if (even is None) != (odd is None):
        raise InputFileError("give both the even and the odd half", even or odd)
    if even is not None and odd is not None:
        e, o = Path(even), Path(odd)
        for f in (e, o):
            if not f.exists():
                raise InputFileError("not found; check the path", f)
        if e.is_dir() and o.is_dir():
            return _check_unique(_pair_folders(e, o), e)
        if e.is_file() and o.is_file():
            split = split_half_marker(e)
            name = split[2] if split and split[2] else e.name[: -len(e.suffix) or None]
            return _check_unique([PairSpec(name, e, o)], e)
        raise InputFileError(f"even and odd must both be files or both folders (odd: {o})", e)
    if source is None:
        raise InputFileError(f"nothing to pair: give a folder, a tomograms.star, a list file, or even= and odd= "
                             f"({_LAYOUTS})")
    src = Path(source)
    if not src.exists():
        raise InputFileError("not found; check the path", src)
    if src.is_file():
        if src.suffix.lower() == ".star":
            return _pairs_from_star(src, project_dir)
        if src.suffix.lower() in VOLUME_SUFFIXES:
            raise InputFileError("is a single volume; give the folder holding both halves, or even= and odd=", src)
        return read_pair_list(src)
    subdirs = {p.name.lower(): p for p in src.iterdir() if p.is_dir()}
    if "even" in subdirs and "odd" in subdirs:
        return _check_unique(_pair_folders(subdirs["even"], subdirs["odd"]), src)
    files = [p for p in src.iterdir() if _is_volume(p)]
    return _check_unique(_pair_by_marker(files, src), src)
