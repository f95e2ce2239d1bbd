"""The FSC of a restoration against the truth estimated from the halves, against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from cryocare_torch.evaluate.fsc import fsc
from cryocare_torch.evaluate.fsc_truth import estimate_fsc_truth

N = 64
K0, SIGNAL, NOISE = 0.12, 4.0, 1.0  # signal power spectrum SIGNAL * exp(-(k/K0)^2) per voxel, white noise var 1


def _k(n: int = N) -> np.ndarray:
    grids = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), np.fft.rfftfreq(n), indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def _filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.fft.irfftn(h * np.fft.rfftn(x), s=x.shape, axes=(0, 1, 2))


def _pair(seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A periodic Gaussian signal of known spectrum and two halves with independent white noise."""
    rng = np.random.default_rng(seed)
    k = _k(n)
    s = _filter(rng.standard_normal((n, n, n)), np.sqrt(SIGNAL * np.exp(-((k / K0) ** 2))))
    return s, s + NOISE * rng.standard_normal(s.shape), s + NOISE * rng.standard_normal(s.shape)


def test_estimate_matches_the_analytic_fsc_of_a_linear_restoration() -> None:
    """f = a radial low-pass H applied to each half. With S(k) = E|S|^2 and N = E|N|^2 per voxel,
    r = H (s + (n1 + n2)/2), so FSC(r, s) = H S / sqrt(H^2 (S + N/2) S) = sqrt(S / (S + N/2)) in every
    shell where H is constant -- independent of H. Wrong formulas give other values: |F(f(e))|^2 in place of
    |F(r)|^2 gives sqrt(S / (S + N)), the restored halves' FSC gives S / (S + N)."""
    s, e, o = _pair(0)
    h = np.exp(-((_k() / 0.2) ** 2))
    fe, fo = _filter(e, h), _filter(o, h)
    est = estimate_fsc_truth(e, o, fe, fo, voxel_size=10.0, soft_edge=0.0, truth=s)
    f = np.arange(N // 2 + 1) / N  # shell k at k / N cycles per voxel
    power = SIGNAL * np.exp(-((f / K0) ** 2))
    expected = np.sqrt(power / (power + NOISE**2 / 2))
    shells = np.arange(2, int(np.argmax(expected < 0.2)))  # from the third shell to about the 0.143 crossing
    assert len(shells) >= 10
    assert np.abs(est.curve.fsc[shells] - expected[shells]).max() < 0.05
    assert est.true is not None and np.abs(est.curve.fsc[shells] - est.true.fsc[shells]).max() < 0.05
    # the analytic crossing of 0.143: power / (power + 1/2) = 0.143^2
    f143 = K0 * np.sqrt(np.log(SIGNAL / (0.5 * 0.143**2 / (1 - 0.143**2))))
    assert est.curve.res_0_143 == pytest.approx(1.0 / (f143 / 1.0), rel=0.1)  # 10 A voxels: 1 nm per voxel
    # the test separates the right formula from the wrong ones by far more than its tolerance
    wrong = np.sqrt(power / (power + NOISE**2))
    halves = fsc(fe, fo, voxel_size=10.0).fsc
    mid = shells[(expected[shells] > 0.3) & (expected[shells] < 0.8)]
    assert len(mid) >= 3
    assert np.abs(wrong[mid] - expected[mid]).min() > 0.08 and np.abs(halves[mid] - expected[mid]).min() > 0.15
    # the raw average's FSC against the truth is the same here (H cancels): sqrt(2 F / (1 + F))
    assert np.abs(est.raw.fsc[shells] - expected[shells]).max() < 0.05
    assert not est.warnings or "scatters" in est.warnings[0]


def test_standard_error_covers_the_scatter_over_noise_realisations() -> None:
    diffs, errors = [], []
    h = np.exp(-((_k(32) / 0.2) ** 2))
    for seed in range(6):
        s, e, o = _pair(seed, 32)
        est = estimate_fsc_truth(e, o, _filter(e, h), _filter(o, h), voxel_size=10.0, soft_edge=0.0, truth=s)
        assert est.true is not None
        diffs.append(est.curve.fsc[2:10] - est.true.fsc[2:10])
        errors.append(est.standard_error[2:10])
    scatter = np.std(diffs, axis=0)
    typical = np.median(errors, axis=0)
    assert (scatter < 2.0 * typical).all()  # conservative, not an underestimate
    assert (typical < 5.0 * scatter + 0.01).all()  # and not uselessly large


def test_warnings_when_the_network_saw_the_other_half_or_the_region_is_small() -> None:
    s, e, o = _pair(1, 32)
    both = 0.5 * (e + o)  # a 'restoration' that contains the other half's noise: f(e) not independent of o
    est = estimate_fsc_truth(e, o, both, both, voxel_size=10.0, soft_edge=0.0, truth=s)
    assert any("exceeds 1" in w for w in est.warnings)
    small = tuple(slice(0, 12) for _ in range(3))
    est = estimate_fsc_truth(e[small], o[small], e[small], o[small], voxel_size=10.0, soft_edge=2.0)
    assert any("too small" in w for w in est.warnings)
    noise = np.random.default_rng(5).standard_normal((2, 32, 32, 32))
    est = estimate_fsc_truth(noise[0], noise[1], noise[0], noise[1], voxel_size=10.0, soft_edge=0.0)
    assert any("not positive" in w for w in est.warnings)
    assert all(w.startswith("warning: ") for w in est.warnings)
