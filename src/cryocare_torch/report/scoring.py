"""Classical baselines next to the restored tomogram, and their scores against a ground truth.

All methods are run and scored on one central evaluation box (:func:`evaluation_box`, at most ``box``
voxels per axis) so that their numbers are comparable and the cost stays bounded on large tomograms:
median filtering and NAD take seconds to minutes per million voxels on a CPU. Scores (PSNR, SSIM and
the FSC 0.5 resolution against the truth) follow :func:`cryocare_torch.evaluate.metrics.quality_table`:
least-squares affine fit, central region without a 10% border of the box (which also keeps filter
edge effects out).

With a truth every baseline is *oracle-tuned* (parameters maximising PSNR against the truth: an upper
bound of what the method achieves in practice); without one the defaults of :data:`DEFAULTS` are used.
NAD costs seconds per iteration and million voxels, so its grid is searched on a central sub-box of
:data:`TUNE_BOX` voxels (at most half the box) and the winner (contrast as a multiple of
:func:`~cryocare_torch.evaluate.nad.contrast_estimate`, iteration count) is then run once on the whole box.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluate import baselines as bl
from ..evaluate.fsc import central_box
from ..evaluate.metrics import quality_table
from ..evaluate.nad import contrast_estimate, nad

METHODS = ("median", "gaussian", "nad")
LABELS = {"median": "median", "gaussian": "Gaussian", "nad": "NAD"}
DEFAULTS: dict[str, dict[str, Any]] = {
    "median": {"size": 3},
    "gaussian": {"sigma": 1.0},
    "nad": {"mode": "hybrid", "iterations": 10},
}
TUNE_BOX = 48
"""NAD is oracle-tuned on a central sub-box of this edge (voxels; at most half the box), then run once on
the whole box."""
ORACLE_GRID: dict[str, dict[str, Sequence[Any]]] = {
    "median": {"sizes": (3, 5, 7)},
    "gaussian": {"sigmas": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)},
    "nad": {"lambda_scales": (0.5, 1.0, 2.0), "iterations": (4, 8, 16)},
}


@dataclass
class BaselineResult:
    """One baseline's output on the evaluation box."""

    method: str
    volume: np.ndarray
    params: dict[str, Any]
    tuned: bool
    seconds: float
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = LABELS[self.method]

    def describe(self) -> str:
        """Parameters in words, e.g. ``size 5 (oracle-tuned)``."""
        p = self.params
        if self.method == "median":
            text = f"{p['size']}^3 box"
        elif self.method == "gaussian":
            text = f"sigma {p['sigma']:g} voxels"
        else:
            lam = f", lambda {p['lambda_']:.3g}" if p.get("lambda_") is not None else ""
            text = f"{p.get('mode', 'hybrid')}, {p['iterations']} iterations{lam}"
        return text + (" (oracle-tuned)" if self.tuned else " (defaults)")


def evaluation_box(shape: Sequence[int], box: int) -> tuple[slice, ...]:
    """Central box of at most ``box`` voxels per axis."""
    if box < 24:
        raise ConfigError(f"--box must be at least 24 voxels (SSIM needs 11 per axis inside a 10% border), got {box}")
    return central_box(tuple(shape), box)


def parse_methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    """Validated, de-duplicated method names (``None``: all of :data:`METHODS`)."""
    if methods is None:
        return METHODS
    out = []
    for m in methods:
        for name in str(m).replace(",", " ").split():
            key = name.strip().lower()
            if key not in METHODS:
                raise ConfigError(f"unknown baseline method {name!r}; choose from {', '.join(METHODS)}")
            if key not in out:
                out.append(key)
    return tuple(out)


def run_baseline(method: str, raw: np.ndarray, truth: np.ndarray | None) -> BaselineResult:
    """One baseline on ``raw``; oracle-tuned against ``truth`` when given."""
    t0 = time.perf_counter()
    grid = ORACLE_GRID[method]
    params: dict[str, Any]
    if truth is not None:
        if method == "median":
            size, out = bl.best_median(raw, truth, sizes=grid["sizes"])
            params = {"size": int(size)}
        elif method == "gaussian":
            sigma, out = bl.best_gaussian(raw, truth, sigmas=grid["sigmas"])
            params = {"sigma": float(sigma)}
        else:
            sub = central_box(raw.shape, min(TUNE_BOX, max(24, max(raw.shape) // 2)))
            tuned, _ = bl.best_nad(raw[sub], truth[sub], lambda_scales=grid["lambda_scales"],
                                   iterations=grid["iterations"])
            params = {"mode": tuned["mode"], "iterations": int(tuned["iterations"]),
                      "lambda_scale": float(tuned["lambda_scale"])}
            params["lambda_"] = params["lambda_scale"] * contrast_estimate(raw)
            out = nad(raw, iterations=params["iterations"], mode=params["mode"], lambda_=params["lambda_"])
    else:
        params = dict(DEFAULTS[method])
        if method == "median":
            out = bl.median_filter(raw, params["size"])
        elif method == "gaussian":
            out = bl.gaussian_filter(raw, params["sigma"])
        else:
            params["lambda_"] = contrast_estimate(raw)
            out = nad(raw, iterations=params["iterations"], mode=params["mode"], lambda_=params["lambda_"])
    params = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in params.items()}
    return BaselineResult(method, np.asarray(out, dtype=np.float32), params, truth is not None,
                          time.perf_counter() - t0)


def run_baselines(
    methods: Sequence[str], raw: np.ndarray, truth: np.ndarray | None, log: Callable[[str], None]
) -> list[BaselineResult]:
    results = []
    for m in methods:
        log(f"baseline {LABELS[m]} ({'oracle-tuned against the truth' if truth is not None else 'defaults'}) "
            f"on a {'x'.join(map(str, raw.shape))} box ...")
        results.append(run_baseline(m, raw, truth))
        log(f"  {results[-1].describe()}, {results[-1].seconds:.1f} s")
    return results


def score_rows(
    volumes: dict[str, np.ndarray], params: dict[str, str], truth: np.ndarray, voxel_size: float
) -> list[dict[str, Any]]:
    """:func:`~cryocare_torch.evaluate.metrics.quality_table` rows, each with a ``params`` description."""
    rows = quality_table(volumes, truth, voxel_size=voxel_size)
    for row in rows:
        row["params"] = params.get(row["name"], "")
    return rows
