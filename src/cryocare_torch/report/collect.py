"""Find what a report is made of, in a run folder or a list of files.

:func:`find_run` accepts folders and files (folders are searched with their direct sub-folders, e.g.
the ``data/`` and ``model/`` of ``cryocare demo``) and sorts what it finds by name:

* ``metrics.json`` written by ``cryocare evaluate`` -> the report shows that evaluation;
* otherwise tomograms (MRC volumes; image stacks such as tilt series are ignored): ``*label*`` ->
  labels, ``*clean*`` (else ``*truth*``, but not ``truth_density``) -> truth, ``*restored*`` /
  ``*denoised*`` -> restored (its ``_even``/``_odd`` halves are recognised as such), a name with an even
  or odd half marker (:mod:`cryocare_torch.io.halves`: ``even``, ``evn``, ``half1``, ``half-1``...) -> even
  or odd; ``*decoration*`` / ``*centre*`` /
  ``*center*`` CSV files -> object centres; a folder holding ``history.json`` or ``best.pt`` -> model;
  ``demo.json`` -> the demo's configuration and timing. An evaluation is then run in a temporary folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputFileError
from ..io.halves import half_of
from ..io.mrc import read_meta
from .evaluation import FORMAT
from .inputs import RunInputs

_MRC = (".mrc", ".rec", ".map")
_ROLES = ("labels", "truth", "restored", "restored_half", "even", "odd")


@dataclass
class RunFiles:
    """The pieces of a run found by :func:`find_run`."""

    metrics: Path | None = None
    inputs: RunInputs | None = None
    demo: Path | None = None
    searched: list[Path] = field(default_factory=list)


def _tokens(stem: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", stem.lower())) - {""}


def mrc_role(path: Path) -> str | None:
    """The role of an MRC file from its name (see the module docstring), or ``None``."""
    stem = path.name.lower()
    for ext in _MRC:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    else:
        return None
    tokens = _tokens(stem)
    if "label" in stem:
        return "labels"
    if "clean" in tokens or ("truth" in tokens and "density" not in tokens):
        return "truth"
    if "restored" in stem or "denoised" in stem:
        return "restored_half" if tokens & {"even", "odd"} and re.search(r"_(even|odd)$", stem) else "restored"
    return half_of(path)


def _is_volume(path: Path) -> bool:
    try:
        meta = read_meta(path)
    except InputFileError:
        return False
    return meta.ndim == 3 and not meta.is_stack


def _candidates(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise InputFileError("not found; give a run folder (e.g. from 'cryocare demo' or 'cryocare evaluate') "
                                 "or its files", p)
        if p.is_dir():
            for child in sorted(p.iterdir()):
                out.extend(sorted(child.iterdir()) if child.is_dir() else [child])
        else:
            out.append(p)
    return out


def _is_metrics(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _one(role: str, found: list[Path]) -> Path | None:
    if len(found) > 1:
        names = ", ".join(str(p) for p in found[:4])
        raise ConfigError(f"several files look like the {role} tomogram ({names}); give the files explicitly "
                          "or run 'cryocare evaluate' and report its folder")
    return found[0] if found else None


def find_run(paths: list[Path]) -> RunFiles:
    """Sort ``paths`` (folders and files) into a :class:`RunFiles`; raises when nothing usable is found."""
    if not paths:
        raise ConfigError("give a run folder or files to report on")
    files = _candidates([Path(p) for p in paths])
    run = RunFiles(searched=[Path(p) for p in paths])
    metrics = [f for f in files if f.name == "metrics.json" and _is_metrics(f)]
    if len(metrics) > 1:
        raise ConfigError(f"several evaluations found ({', '.join(map(str, metrics[:4]))}); report one at a time")
    run.metrics = metrics[0] if metrics else None
    run.demo = next((f for f in files if f.name == "demo.json"), None)
    if run.metrics is not None:
        return run
    roles: dict[str, list[Path]] = {r: [] for r in _ROLES}
    centres: list[Path] = []
    model_dirs: list[Path] = []
    for f in files:
        if f.suffix.lower() in _MRC and (role := mrc_role(f)) is not None and _is_volume(f):
            roles[role].append(f)
        elif f.suffix.lower() == ".csv" and any(k in f.name.lower() for k in ("decoration", "centre", "center")):
            centres.append(f)
        elif f.name in ("history.json", "best.pt") and f.parent not in model_dirs:
            model_dirs.append(f.parent)
    restored, even, odd = (_one(r, roles[r]) for r in ("restored", "even", "odd"))
    missing = [n for n, p in (("restored", restored), ("even", even), ("odd", odd)) if p is None]
    if missing or restored is None or even is None or odd is None:
        where = ", ".join(str(p) for p in run.searched)
        raise InputFileError(f"found no metrics.json from 'cryocare evaluate' and no {'/'.join(missing)} "
                             f"tomogram in {where}; give a 'cryocare demo' or 'cryocare evaluate' folder, or name "
                             "the files (*restored*.mrc, *even*.mrc, *odd*.mrc)")
    labels = _one("labels", roles["labels"])
    centre_file = _one("centres", centres)
    run.inputs = RunInputs(
        restored=restored, even=even, odd=odd, truth=_one("truth", roles["truth"]),
        labels=labels if centre_file is not None else None, centres=centre_file if labels is not None else None,
        model_dir=_one("model", model_dirs),
    )
    return run


def load_metrics(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` written by ``cryocare evaluate``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"cannot read the evaluation ({exc}); rerun 'cryocare evaluate'", path) from None
    return data


def load_demo(path: Path | None) -> dict[str, Any] | None:
    """``demo.json`` of ``cryocare demo`` (configuration, scores, timing), or ``None``."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
