"""The FSC of a restoration against the unknown truth, estimated from the two noisy halves alone.

The FSC between the two *restored* halves is not a resolution: both come from one network trained on
those same halves, so they share what it learnt of the noise (on pure noise their FSC stays above any
threshold). What a user wants is the FSC of the restoration ``r = (f(e) + f(o)) / 2`` against the
noise-free truth ``s``. With ``e = s + n1`` and ``o = s + n2`` (independent, zero-mean noise) and a
network ``f`` that never saw the region scored, ``f(e)`` is independent of ``n2`` there, so per Fourier
voxel ``E[F(f(e)) F(o)*] = E[F(f(e)) S*]`` (and likewise ``f(o)`` with ``e``), and
``E[F(e) F(o)*] = E[|S|^2]``. Hence, per shell (sums over the shell's voxels before dividing)::

    FSC(r, s) = Re sum R S* / sqrt(sum |R|^2 sum |S|^2)
              ~ Re(sum F(f(e)) F(o)* + sum F(f(o)) F(e)*) / 2 / sqrt(sum |F(r)|^2  Re sum F(e) F(o)*)

Beside it, the raw average's FSC against the truth follows from the raw halves' FSC ``F`` as
``sqrt(2 F / (1 + F))`` (Rosenthal & Henderson 2003, C_ref).

Every input is made zero-mean and multiplied by the same cosine-edged box taper before the Fourier
transform (a linear operation on each term, so the independence argument is unchanged). Shells whose
signal estimate ``Re sum F(e) F(o)*`` is not positive get an estimate of 0 (no signal to correlate
with) and are reported. The standard error of each shell's estimate follows from the per-voxel
variances of the three sums (``|a|^2 |b|^2 / 2`` for a cross term, ``|r|^4`` for a power; delta
method, voxels treated as independent); when it exceeds ``max_standard_error`` between shell 2 and the
0.143 crossing, the region is too small for the estimate and a warning says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .fsc import FSCResult, checked_voxel_size, make_mask, shell_frequencies, shell_sums

ArrayLike = torch.Tensor | np.ndarray
DESCRIPTION = (
    "FSC of the restoration r = (f(even) + f(odd))/2 against the unknown noise-free truth, estimated from the "
    "halves on a region the network never trained on: per shell Re(<F(f(e))F(o)*> + <F(f(o))F(e)*>)/2 / "
    "sqrt(<|F(r)|^2> Re<F(e)F(o)*>). Unlike the FSC between the restored halves it is a resolution estimate."
)
RESTORED_HALVES_NOTE = (
    "Not a resolution: both restored halves come from one network trained on these same halves, so their FSC "
    "is inflated (on pure noise it stays above the thresholds). See estimated_fsc_truth."
)


@dataclass(frozen=True)
class TruthFSCEstimate:
    """Estimated FSC of the restoration against the truth, with its checks."""

    curve: FSCResult
    """The estimate (clipped to [-1, 1])."""
    standard_error: np.ndarray
    signal_power: np.ndarray
    """``Re sum F(e) F(o)*`` per shell (the truth's power in the shell, estimated)."""
    raw: FSCResult
    """``sqrt(2 F / (1 + F))`` of the raw halves' FSC ``F``: the raw average against the truth."""
    true: FSCResult | None
    """The FSC of the restoration against a given truth, same region, taper and shells."""
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        c = self.curve
        out: dict[str, Any] = {
            "frequency_per_nm": c.frequency_per_nm.tolist(), "fsc": c.fsc.tolist(),
            "standard_error": self.standard_error.tolist(),
            "n_voxels_per_shell": c.n_voxels_per_shell.tolist(), "signal_power": self.signal_power.tolist(),
            "raw_average_fsc": self.raw.fsc.tolist(), "shape": list(c.shape), "nyquist_nm": c.nyquist_nm,
        }
        for name, t in (("0_5", 0.5), ("0_143", 0.143)):
            out[f"res_{name}_nm"] = c.resolution_at(t)
            out[f"res_{name}_reaches_nyquist"] = not c.crosses(t)
            out[f"raw_average_res_{name}_nm"] = self.raw.resolution_at(t)
            if self.true is not None:
                out[f"true_res_{name}_nm"] = self.true.resolution_at(t)
        if self.true is not None:
            out["true_fsc"] = self.true.fsc.tolist()
        return out | {"warnings": list(self.warnings), "description": DESCRIPTION}


def _spectra(vols: Sequence[ArrayLike], soft_edge: float) -> list[torch.Tensor]:
    ts = [v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v)) for v in vols]
    shape = tuple(ts[0].shape)
    if len(shape) != 3 or min(shape) < 8:
        raise DataError(f"the estimated FSC needs a 3D region of at least 8 voxels per axis, got shape {shape}")
    for t in ts:
        if tuple(t.shape) != shape:
            raise DataError(f"the estimated FSC needs volumes of one shape, got {tuple(t.shape)} and {shape}")
        if not torch.isfinite(t).all():
            raise DataError("the estimated FSC's inputs contain NaN or infinite values")
    w = make_mask(shape, "box", soft_edge).to(torch.float32)
    return [torch.fft.rfftn((t.to(torch.float32) - t.to(torch.float64).mean().float()) * w) for t in ts]


def _terms(chunk: list[torch.Tensor]) -> torch.Tensor:
    """Per voxel: Re F(f(e))F(o)*, Re F(f(o))F(e)*, |F(r)|^2, Re F(e)F(o)*, |F(e)|^2, |F(o)|^2, |F(f(e))|^2,
    |F(f(o))|^2, 1 (shell sums with weights^1 give the estimate, with weights^2 its variance)."""
    e, o, fe, fo = chunk[:4]
    r = 0.5 * (fe + fo)
    return torch.stack([(fe * o.conj()).real, (fo * e.conj()).real, r.abs() ** 2, (e * o.conj()).real,
                        e.abs() ** 2, o.abs() ** 2, fe.abs() ** 2, fo.abs() ** 2, torch.ones_like(e.real)])


def _truth_terms(chunk: list[torch.Tensor]) -> torch.Tensor:
    fe, fo, t = chunk[2], chunk[3], chunk[4]
    r = 0.5 * (fe + fo)
    return torch.stack([(r * t.conj()).real, r.abs() ** 2, t.abs() ** 2])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.where(den > 0, num / np.sqrt(np.where(den > 0, den, 1.0)), 0.0)
    out[0] = 1.0
    return out


def estimate_fsc_truth(
    even: ArrayLike, odd: ArrayLike, even_restored: ArrayLike, odd_restored: ArrayLike, *, voxel_size: float,
    soft_edge: float = 6.0, truth: ArrayLike | None = None, max_standard_error: float = 0.025,
) -> TruthFSCEstimate:
    """Estimate ``FSC((f(e) + f(o)) / 2, truth)`` from ``even``/``odd`` and their restorations
    ``f(e)``/``f(o)`` on one region ``(d, h, w)`` that the network never trained on (module docstring).

    ``voxel_size`` in Angstrom; ``soft_edge``: cosine taper of the box in voxels. With ``truth`` the
    FSC of the restoration against it (same region, taper and shells) is computed too, as a check.
    """
    vs = checked_voxel_size(voxel_size)
    vols = [even, odd, even_restored, odd_restored] + ([truth] if truth is not None else [])
    spectra = _spectra(vols, soft_edge)
    shape = tuple(int(n) for n in vols[0].shape)
    n_shells = min(shape) // 2 + 1
    xo, xe, pr, ps, pe, po, _, _, w1, count = shell_sums(spectra, _terms, shape, "linear", n_shells).cpu().numpy()
    num, den = 0.5 * (xo + xe), np.where((ps > 0) & (pr > 0), pr * ps, 0.0)
    est = _ratio(num, den)
    sq = shell_sums(spectra, _terms, shape, "linear", n_shells, weight_power=2).cpu().numpy()
    se = _standard_error(est, num, den, ps, (pe + po) / 2 - ps, w1, sq)
    freq = shell_frequencies(shape, vs)
    curve = FSCResult(freq, np.clip(est, -1.0, 1.0), count, vs, shape, "linear")
    halves = _ratio(ps, pe * po)
    raw = FSCResult(freq, np.sqrt(np.clip(2 * halves / (1 + np.maximum(halves, 0.0)), 0.0, None)), count, vs, shape)
    true = None
    if truth is not None:
        rt, rr, tt = shell_sums(spectra, _truth_terms, shape, "linear", n_shells)[:3].cpu().numpy()
        true = FSCResult(freq, _ratio(rt, rr * tt), count, vs, shape, "linear")
    warnings = _checks(curve, est, se, ps, max_standard_error)
    return TruthFSCEstimate(curve, se, ps, raw, true, warnings)


def _standard_error(est: np.ndarray, num: np.ndarray, den: np.ndarray, ps: np.ndarray, noise: np.ndarray,
                    w1: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """First-order standard error of the estimate from the noise of the halves alone (the realised truth
    and restoration are what the true FSC uses too, so their own fluctuations do not count).

    Noise ``N1``, ``N2`` of power ``nn`` per voxel (the shell's mean ``(|E|^2 + |O|^2)/2 - Re E O*``)
    enters as ``num += Re(F(f(e)) N2* + F(f(o)) N1*)/2`` and ``ps += Re(S N2* + N1 S* + N1 N2*)``; with
    ``D = sqrt(pr ps)`` and ``c = est / (2 ps)`` the estimate moves by ``Re(a2 N2*) + Re(a1 N1*) -
    c Re(N1 N2*)``, ``a2 = F(f(e))/(2D) - c S``, ``a1 = F(f(o))/(2D) - c S``, whose variance is
    ``nn/2 (|a1|^2 + |a2|^2) + c^2 nn^2/2``; ``F(f(e)) S*`` and ``|S|^2`` are replaced by their unbiased
    per-voxel estimates ``F(f(e)) F(o)*`` and ``Re F(e) F(o)*``, summed with squared weights."""
    xo2, xe2, _, ps2, _, _, pfe2, pfo2, w2 = sq[:9]
    with np.errstate(divide="ignore", invalid="ignore"):
        nn = np.maximum(noise, 0.0) / w1
        c = est / (2 * ps)
        a = (pfe2 + pfo2) / (4 * den) - c / np.sqrt(den) * (xo2 + xe2) + 2 * c**2 * ps2
        var = nn / 2 * a + c**2 * nn**2 / 2 * w2
        se = np.where(den > 0, np.sqrt(np.abs(var)), np.inf)
    se[0] = 0.0
    return se


def _checks(curve: FSCResult, est: np.ndarray, se: np.ndarray, ps: np.ndarray, max_se: float) -> tuple[str, ...]:
    """One ``warning:`` line per failed check, between shell 1 (2 for the scatter) and the 0.143 crossing."""
    last = curve.crossing_shell(0.143) or len(est) - 1
    res = curve.resolution_nm
    out = []
    bad = [k for k in range(1, last + 1) if ps[k] <= 0]
    if bad:
        out.append(f"warning: the halves' signal power (Re sum F(e)F(o)*) is not positive in shell {bad[0]} "
                   f"({res[bad[0]]:.2f} nm), at or below the estimated 0.143 crossing: the halves share too little "
                   "signal there and the estimated FSC against the truth cannot be trusted")
    scored = range(2, last + 1)
    worst = max(scored, key=lambda k: se[k], default=None)
    if worst is not None and se[worst] > max_se:
        out.append(f"warning: the estimated FSC against the truth scatters by +-{se[worst]:.3f} (1 sigma) in shell "
                   f"{worst} ({res[worst]:.2f} nm), more than {max_se:g}: the region ({'x'.join(map(str, curve.shape))}"
                   " voxels) is too small for a precise estimate")
    high = [k for k in range(1, last + 1) if est[k] > 1 + 3 * se[k]]
    if high:
        out.append(f"warning: the estimated FSC against the truth exceeds 1 ({est[high[0]]:.2f} +- {se[high[0]]:.2f})"
                   f" in shell {high[0]}: the restored halves are not independent of the other half there (did the "
                   "network train on this region?)")
    return tuple(out)
