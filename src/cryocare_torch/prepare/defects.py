"""Detector defects found from the movie itself: hot/dead pixels, and the gain reference's orientation.

* :func:`find_defect_pixels` -- a pixel's total count over all frames against the median of its 8
  neighbours. Without a defect the difference is Poisson noise plus specimen contrast; its spread is
  measured robustly over the frame (MAD) and never taken below the Poisson sd. Pixels more than ``z``
  spreads above are hot; dead are those whose total is impossible under Poisson statistics at the
  neighbours' level (probability < e^-20, e.g. 0 counts where the neighbours collected > 20) and more than
  2 spreads below (and under half their level). Hot pixels must also exceed all but one neighbour, so bright
  specimen edges and lines (and a filled frame border beside them) are kept. A
  hot pixel sits at the same place in the even and the odd frames, so Noise2Noise would keep it, and it pulls
  the drift correlation towards zero shift: both are reasons to remove it before either.
  RELION's own motion correction flags pixels of the frame sum above mean + k sd
  (3dem/relion src/motioncorr_runner.cpp, ``hotpixel_sigma``); the local median here keeps specimen
  features and gradients from being flagged.
* :func:`fill_defect_pixels` -- each defect pixel, in every frame, becomes the mean of its good 3x3
  neighbours in that frame (new counts per frame, so the even/odd noise stays independent).
* :func:`gain_orientation_scores` -- the 8 rotations/flips of a gain reference scored by how flat they make
  the gain-corrected sum of the raw frames (median squared deviation from the 5x5 local mean, over the
  mean^2; the median ignores hot pixels): the right orientation removes the pixel-to-pixel gain
  pattern, a wrong one doubles it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..io.movie import orient_gain

_DEAD_LOG_P = 20.0

ORIENTATIONS: tuple[tuple[str, int], ...] = tuple((f, k) for f in ("none", "x") for k in range(4))
"""The 8 orientations (flip after ``k`` quarter turns) of the dihedral group; flip "y" = "x" + 2 turns."""


@dataclass(frozen=True)
class DefectMap:
    mask: torch.Tensor  # (h, w) bool, True at defects
    n_hot: int
    n_dead: int
    spread: float  # counts: robust sd of (sum - neighbour median)


def _neighbour_stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and second-largest value of each pixel's 8 neighbours."""
    pad = torch.nn.functional.pad(img[None, None], (1, 1, 1, 1), mode="replicate")
    patches = torch.nn.functional.unfold(pad, 3)[0]  # (9, h*w)
    neigh = torch.cat([patches[:4], patches[5:]])  # without the centre
    second = neigh.topk(2, dim=0).values[1]
    return neigh.median(dim=0).values.reshape(img.shape), second.reshape(img.shape)


def find_defect_pixels(frames: torch.Tensor, z: float = 8.0) -> DefectMap:
    """Hot and dead pixels of a ``(t, h, w)`` movie (counts, gain-corrected or not)."""
    total = torch.zeros(frames.shape[1:], dtype=torch.float64)
    for i in range(frames.shape[0]):
        total += frames[i].to(torch.float64)
    local, second = _neighbour_stats(total)
    resid = total - local
    mad = float((resid - resid.median()).abs().median()) * 1.4826
    spread = torch.maximum(local.clamp(min=1.0).sqrt(), torch.tensor(mad, dtype=torch.float64))
    # hot: far above the neighbours' median and above all but one of them (a defect is one pixel, or two side by
    # side; a bright specimen edge or a constant-filled frame border raises several neighbours with it)
    # (the second is judged at its own level: along a bright line the noise is the line's, not the background's)
    second_spread = torch.maximum(second.clamp(min=1.0).sqrt(), torch.tensor(mad, dtype=torch.float64))
    hot = (resid > z * spread) & (total - second > 0.5 * z * second_spread)
    # dead: a total count that Poisson statistics at the neighbours' level make impossible (< e^-20 per pixel),
    # and well below the neighbours even allowing for contrast
    log_pmf = total * torch.log(local.clamp(min=1e-6)) - local - torch.lgamma(total + 1)
    dead = (log_pmf < -_DEAD_LOG_P) & (resid < -2 * spread) & (total < 0.5 * local)  # under half the sensitivity
    return DefectMap(mask=hot | dead, n_hot=int(hot.sum()), n_dead=int(dead.sum()), spread=mad)


def fill_defect_pixels(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float32 copy of ``frames`` with every ``mask`` pixel replaced by the mean of its good 3x3 neighbours."""
    out = frames.to(torch.float32).clone()
    if not bool(mask.any()):
        return out
    good = (~mask).to(torch.float32)[None, None]
    ones = torch.ones((1, 1, 3, 3))
    den = torch.nn.functional.conv2d(good, ones, padding=1)[0, 0]
    for i in range(out.shape[0]):
        num = torch.nn.functional.conv2d(out[i][None, None] * good, ones, padding=1)[0, 0]
        fill = torch.where(den > 0, num / den.clamp(min=1), out[i][~mask].mean())
        out[i][mask] = fill[mask]
    return out


def gain_orientation_scores(raw_sum: np.ndarray, gain: np.ndarray) -> dict[tuple[str, int], float]:
    """Fine-scale relative variance of ``raw_sum * orient(gain)`` for each orientation that fits the frame."""
    raw = torch.as_tensor(np.asarray(raw_sum, dtype=np.float64))
    scores: dict[tuple[str, int], float] = {}
    for flip, k in ORIENTATIONS:
        g = orient_gain(gain, flip=flip, rotation_k=k)  # type: ignore[arg-type]
        if g.shape != tuple(raw.shape):
            continue
        img = raw * torch.as_tensor(np.asarray(g, dtype=np.float64))
        smooth = torch.nn.functional.avg_pool2d(img[None, None], 5, stride=1, padding=2,
                                                count_include_pad=False)[0, 0]
        # median of the squared residuals: hot pixels (the same in every orientation) must not decide
        scores[(flip, k)] = float(((img - smooth)[2:-2, 2:-2] ** 2).median() / img.mean() ** 2)
    return scores


def check_gain_orientation(raw_sum: np.ndarray, gain: np.ndarray, flip: str, rotation_k: int,
                           name: str = "movie") -> str:
    """One ``warning:`` line when another orientation flattens the sum clearly better (> 10%) than the user's."""
    scores = gain_orientation_scores(raw_sum, gain)
    user = orient_gain(gain, flip=flip, rotation_k=rotation_k)  # type: ignore[arg-type]
    if not scores or user.shape != raw_sum.shape:
        return ""
    mine = float(np.asarray(gain_orientation_scores(raw_sum, user)[("none", 0)]))
    (bf, bk), best = min(scores.items(), key=lambda kv: kv[1])
    if best < 0.9 * mine and not np.array_equal(orient_gain(gain, flip=bf, rotation_k=bk), user):  # type: ignore[arg-type]
        return (f"warning: {name}: the gain orientation given (flip {flip}, rotation {rotation_k}) leaves the "
                f"gain-corrected sum {mine / best:.1f}x rougher than flip {bf}, rotation {bk} "
                f"(fine-scale variance {mine:.3g} vs {best:.3g}); check --gain-flip/--gain-rotation")
    return ""
