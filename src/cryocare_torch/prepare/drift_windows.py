"""The window size of the drift estimate (:mod:`cryocare_torch.prepare.motion`): windows of 1, 2, 4, ...
frames are measured in the whole movie and in its even and odd frames alone; the size with significant
peaks and the smallest posterior error, calibrated by the even/odd disagreement, wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import drift_fit

UNCHECKED = 2.0  # error inflation when the even/odd-frame check is impossible


@dataclass(frozen=True)
class Candidate:
    g: int
    bfactor: float
    full: drift_fit.Measured
    even: drift_fit.Measured | None
    odd: drift_fit.Measured | None
    ratio: float  # even/odd disagreement over what the posteriors allow (>= 1 inflates the error)
    score: float  # rms posterior sd x max(1, ratio), working pixels; inf when not measurable

    @property
    def verified(self) -> bool:
        return math.isfinite(self.score)


def _evaluate(measure: Callable[..., drift_fit.Measured], t: int, g: int, min_peak_z: float,
              bfactor: float, max_sd: float, init: torch.Tensor | None) -> Candidate:
    """Measure windows of ``g`` frames in the whole movie and (same time span) in its even and odd frames.

    Not measurable (score inf) unless the median peak z reaches ``min_peak_z`` and at least half of the
    windows were used with a noise sd below ``max_sd`` working pixels: with weaker data the fitted
    random walk is the prior's (no motion), and its small posterior sd would say nothing about the truth.
    """
    everyone = torch.arange(t)
    full = measure(everyone, g, init)

    def informative(m: drift_fit.Measured) -> bool:
        return int((m.used & (m.sd <= max_sd)).sum()) >= max(2, (m.used.numel() + 1) // 2)

    if float(full.z.median()) < min_peak_z or not informative(full):
        return Candidate(g, bfactor, full, None, None, math.inf, math.inf)
    gh = min(g, t // 2 - 1) if t >= 4 else 1  # the same dose per window (twice the time span), >= 2 windows
    even, odd = measure(everyone[0::2], gh, full.fit.mean), measure(everyone[1::2], gh, full.fit.mean)
    if informative(even) and informative(odd):
        diff = even.fit.mean - odd.fit.mean
        expected = float((even.fit.sd**2 + odd.fit.sd**2).mean())
        ratio = math.sqrt(float((diff - diff.mean(dim=0)).pow(2).sum(dim=1).mean()) / max(expected, 1e-12))
    else:  # the halves are too weak to check the posterior: assume it is twice too optimistic
        ratio = UNCHECKED
    score = float(full.fit.sd.pow(2).mean().sqrt()) * max(1.0, ratio)
    return Candidate(g, bfactor, full, even, odd, ratio, score)


def choose_group(measure: Callable[..., drift_fit.Measured], t: int, group: int | None,
                  min_peak_z: float, bfactor: float, max_sd: float) -> Candidate:
    """Window size 1, 2, 4, ... with significant peaks and the smallest (calibrated) posterior error.

    Larger windows collect more signal per peak but see less of the motion; the posterior sd, checked
    against the even/odd-frame disagreement, weighs both. Stops at the first size worse than the best so far.
    """
    best: Candidate | None = None
    g = group or 1
    while g <= max(1, t // 2):
        init = None if best is None or not best.verified else best.full.fit.mean  # bootstrap longer windows
        cand = _evaluate(measure, t, g, min_peak_z, bfactor, max_sd, init)
        if best is None or cand.score < best.score or not math.isfinite(best.score):
            best = cand
        else:
            break
        if group is not None:
            break
        g *= 2
    assert best is not None
    return best
