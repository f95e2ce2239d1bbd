"""What an evaluation reads: the tomogram files of one run, checked together, and small side files.

* :class:`RunInputs` -- restored tomogram, its even/odd inputs, and the optional truth, labels,
  object centres and model folder; :meth:`RunInputs.check` validates them before any long work.
* :func:`read_centres` -- ``z,y,x`` voxel centres from a CSV file (``decorations.csv`` of the simulator).
* :func:`restored_halves` -- the ``<stem>_even.mrc`` / ``<stem>_odd.mrc`` that ``predict --write-halves``
  writes next to the restored tomogram, when both exist.
* :func:`find_model_dir` -- where the training history of a restored tomogram lives.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, InputFileError
from ..io.halves import validate_pairs
from ..io.mrc import VolumeMeta, open_memmap, read_meta
from ..patches import pair_statistics


@dataclass
class RunInputs:
    """Files of one run; paths are as given (not resolved)."""

    restored: Path
    even: Path
    odd: Path
    truth: Path | None = None
    labels: Path | None = None
    centres: Path | None = None
    model_dir: Path | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {f.name: (None if getattr(self, f.name) is None else str(getattr(self, f.name))) for f in fields(self)}

    def check(self, voxel_size: float | None = None) -> tuple[VolumeMeta, float]:
        """Read every header; returns the even half's metadata and the voxel size (Angstrom) to use.

        Raises a one-line :class:`~cryocare_torch.errors.CryocareError` naming the offending file.
        """
        metas = {name: read_meta(p) for name, p in (("even", self.even), ("odd", self.odd),
                                                     ("restored", self.restored), ("truth", self.truth),
                                                     ("labels", self.labels)) if p is not None}
        ref = metas["even"]

        validate_pairs([(self.even, self.odd)])
        even_mm, _ = open_memmap(self.even, metas["even"])
        odd_mm, _ = open_memmap(self.odd, metas["odd"])
        pair_statistics(even_mm, odd_mm, name=f"{self.even} / {self.odd}")  # NaN/Inf, constant, identical
        del even_mm, odd_mm
        if ref.ndim != 3:
            raise DataError(f"expected a 3D tomogram (z, y, x), got shape {ref.shape}", self.even)
        for name, meta in metas.items():
            if meta.shape != ref.shape:
                raise DataError(f"{name} has shape {meta.shape} but the even half {self.even} has {ref.shape}; "
                                "give files of the same tomogram", getattr(self, name))
        if self.centres is not None and not self.centres.is_file():
            raise InputFileError("centres file not found; check the path", self.centres)
        if (self.labels is None) != (self.centres is None):
            raise ConfigError("the downstream check needs both --labels and --centres (or neither)")
        if self.model_dir is not None and not self.model_dir.is_dir():
            raise InputFileError("model folder not found; give the folder with history.json", self.model_dir)
        if voxel_size is not None:
            if not voxel_size > 0:
                raise ConfigError(f"--voxel-size must be a positive number of Angstrom, got {voxel_size}")
            return ref, float(voxel_size)
        if not ref.has_voxel_size:
            raise ConfigError(f"{self.even} has no voxel size in its header; pass --voxel-size (Angstrom)")
        return ref, ref.pixel_size


def restored_halves(restored: Path) -> tuple[Path, Path] | None:
    """``(<stem>_even.mrc, <stem>_odd.mrc)`` beside ``restored`` when both exist."""
    pair = (restored.with_name(f"{restored.stem}_even{restored.suffix}"),
            restored.with_name(f"{restored.stem}_odd{restored.suffix}"))
    return pair if all(p.is_file() for p in pair) else None


def find_model_dir(restored: Path) -> Path | None:
    """``model/`` beside the restored tomogram (``cryocare demo``) or ``<stem>_model/`` (``cryocare denoise``)."""
    for cand in (restored.parent / "model", restored.parent / f"{restored.stem}_model"):
        if (cand / "history.json").is_file() or (cand / "best.pt").is_file():
            return cand
    return None


def read_centres(path: Path) -> np.ndarray:
    """``(n, 3)`` zyx voxel centres from a CSV with columns ``z, y, x`` (any further columns ignored).

    Without a header row, the first three columns are taken as z, y, x.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputFileError(f"cannot read centres file ({exc.strerror})", path) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        return np.zeros((0, 3))
    head = [c.strip().lower() for c in rows[0]]
    if {"z", "y", "x"} <= set(head):
        cols, body = [head.index(k) for k in ("z", "y", "x")], rows[1:]
    else:
        cols, body = [0, 1, 2], rows
    try:
        out = np.array([[float(r[c]) for c in cols] for r in body], dtype=np.float64).reshape(-1, 3)
    except (ValueError, IndexError):
        raise InputFileError("expected a CSV of z, y, x voxel centres (a header row z,y,x is optional)",
                             path) from None
    if not np.isfinite(out).all():
        raise InputFileError("centres file contains non-finite coordinates", path)
    return out
