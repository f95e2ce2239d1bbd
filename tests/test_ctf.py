"""CTF sign and zeros against hand-derived values, phase flipping in strips of defocus, and the defocus readers.

Expected values are derived here from physics and the file formats' documentation, not from the code under
test: the electron wavelength from CODATA constants, the first zeros of ``sqrt(1 - A^2) sin(chi) + A cos(chi)``
by solving the quadratic in ``k^2`` by hand, and the defocus of each file from its numbers and units.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.config import SimulateConfig
from cryocare_torch.errors import CryocareError, InputFileError
from cryocare_torch.io.defocus import read_ctffind, read_defocus_file, read_imod_defocus, read_mdoc_defocus
from cryocare_torch.prepare.ctf import ViewCtf, correct_view, resolve_optics
from cryocare_torch.simulate.acquisition import required_lateral_pad, simulate_tilt_series
from cryocare_torch.simulate.ctf import ctf, electron_wavelength
from cryocare_torch.simulate.phantom import make_phantom
from cryocare_torch.tomo.backproject import weighted_backprojection

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
H, M0, E, C = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0


def wavelength_a(kv: float) -> float:
    """Relativistic de Broglie wavelength in Angstrom from CODATA constants."""
    v = kv * 1e3
    return H / math.sqrt(2 * M0 * E * v * (1 + E * v / (2 * M0 * C * C))) * 1e10


def zeros_k(dz_um: float, kv: float, cs_mm: float, amp: float, n: int) -> float:
    """k (1/A) of the n-th zero of sqrt(1-A^2) sin(chi) + A cos(chi), chi = pi l dz k^2 - pi/2 Cs l^3 k^4:
    chi_n = n pi - asin(A); a k^4 - b k^2 + chi_n = 0 with a = pi/2 Cs l^3, b = pi l dz."""
    lam, dz, cs = wavelength_a(kv), dz_um * 1e4, cs_mm * 1e7
    chi = n * math.pi - math.asin(amp)
    a, b = math.pi / 2 * cs * lam**3, math.pi * lam * dz
    k2 = (b - math.sqrt(b * b - 4 * a * chi)) / (2 * a) if a > 0 else chi / b
    return math.sqrt(k2)


def test_wavelength_matches_codata() -> None:
    assert electron_wavelength(300) == pytest.approx(wavelength_a(300), rel=1e-5)
    assert wavelength_a(300) == pytest.approx(0.019687, abs=2e-6)  # the textbook 300 kV value


@pytest.mark.parametrize(("dz", "cs", "amp"), [(3.0, 0.0, 0.0), (3.0, 2.7, 0.07), (5.0, 2.7, 0.07), (1.5, 2.7, 0.1)])
def test_ctf_zeros_and_sign(dz: float, cs: float, amp: float) -> None:
    k1, k2 = zeros_k(dz, 300, cs, amp, 1), zeros_k(dz, 300, cs, amp, 2)
    if cs == 0 and amp == 0:
        assert k1 == pytest.approx(1 / math.sqrt(wavelength_a(300) * dz * 1e4))  # 1/24.3 A at 3 um
    k = torch.tensor([0.3 * k1, k1 * 0.999, k1 * 1.001, (k1 + k2) / 2, k2 * 0.999, k2 * 1.001], dtype=torch.float64)
    v = ctf(k, defocus_um=dz, cs_mm=cs, amplitude_contrast=amp)
    # CTFFIND/torch-ctf sign: positive below the first zero for underfocus, negative between zeros 1 and 2
    assert v[0] > 0 and v[1] > 0 and v[2] < 0 and v[3] < 0 and v[4] < 0 and v[5] > 0


def _wave(h: int, w: int, ky: float) -> torch.Tensor:
    y = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    return torch.cos(2 * math.pi * ky * y)


def amplitudes(img: torch.Tensor, waves: list[torch.Tensor], rows: slice, cols: slice) -> list[float]:
    """Least-squares amplitude of each wave in ``img[rows, cols]``."""
    a = torch.stack([wv[rows, cols].flatten() for wv in waves], dim=1)
    return torch.linalg.lstsq(a, img.double()[rows, cols].flatten()[:, None]).solution.flatten().tolist()


def test_phaseflip_restores_the_sign_of_a_reversed_band() -> None:
    px, dz = 6.0, 3.0
    k1, k2 = zeros_k(dz, 300, 2.7, 0.07, 1), zeros_k(dz, 300, 2.7, 0.07, 2)
    h = w = 96
    ky_low = round(0.5 * k1 * px * h) / h  # cycles/pixel, whole periods over the image
    ky_band = round((k1 + k2) / 2 * px * h) / h
    img = 0.2 * _wave(h, w, ky_low) - 0.5 * _wave(h, w, ky_band)  # the band came out with reversed contrast
    vc = ViewCtf("phaseflip", np.array([dz]), np.array([0.0]), px, np.zeros(1))
    out = correct_view(img.float(), vc, 0).double()
    low, band = amplitudes(out, [_wave(h, w, ky_low), _wave(h, w, ky_band)], slice(16, 80), slice(16, 80))
    assert low == pytest.approx(0.2, rel=0.02) and band == pytest.approx(0.5, rel=0.02)  # kept; flipped


def test_phaseflip_follows_the_defocus_across_a_tilted_view() -> None:
    """At 60 degrees the defocus changes by 256 px * 6 A * tan(60) = 0.27 um across the view: choose a
    frequency whose CTF sign differs between the left and right edges (IMOD ctfphaseflip's convention:
    more underfocus at larger x for a positive tilt). Strips flip each side right; one defocus cannot."""
    px, tilt, h, w, ky = 6.0, 60.0, 64, 256, 0.25  # ky in cycles/pixel: 16 periods over 64 rows
    slope = px * math.tan(math.radians(tilt)) * 1e-4  # um per pixel
    x = np.arange(w) - (w - 1) / 2
    lam, kk = wavelength_a(300), ky / px  # the centre column's first zero at kk: pi l dz kk^2 = chi_1 + a kk^4
    dz0 = (math.pi / 2 * 2.7e7 * lam**3 * kk**4 + math.pi - math.asin(0.07)) / (math.pi * lam * kk**2) * 1e-4
    k = torch.full((w,), ky / px, dtype=torch.float64)
    per_col = torch.stack([ctf(k[i : i + 1], defocus_um=dz0 + float(x[i]) * slope) for i in range(w)]).flatten()
    assert per_col[10] > 0 > per_col[-10]  # the sign changes across the view
    img = _wave(h, w, ky) * per_col[None, :]
    strips = ViewCtf("phaseflip", np.array([dz0]), np.array([tilt]), px, np.zeros(1), defocus_step_nm=20)
    whole = ViewCtf("phaseflip", np.array([dz0]), np.array([0.0]), px, np.zeros(1))  # no gradient
    rows, left, right = slice(8, 56), slice(16, 80), slice(176, 240)
    fixed, single = correct_view(img.float(), strips, 0), correct_view(img.float(), whole, 0)
    for side in (left, right):
        want = float(per_col[side].abs().mean())
        got = amplitudes(fixed, [_wave(h, w, ky)], rows, side)[0]
        assert 0.7 * want < got < 1.05 * want, (side, got, want)
    signs = [amplitudes(single, [_wave(h, w, ky)], rows, side)[0] for side in (left, right)]
    assert signs[0] * signs[1] < 0  # one defocus for the whole view gets one side wrong


def test_wiener_restores_amplitude() -> None:
    px, dz, h = 6.0, 3.0, 96
    k1 = zeros_k(dz, 300, 2.7, 0.07, 1)
    ky = round(0.5 * k1 * px * h) / h
    c = float(ctf(torch.tensor([ky / px], dtype=torch.float64), defocus_um=dz)[0])
    vc = ViewCtf("wiener", np.array([dz]), np.array([0.0]), px, np.zeros(1), wiener_constant=0.01)
    out = correct_view((c * _wave(h, h, ky)).float(), vc, 0)
    amp = amplitudes(out, [_wave(h, h, ky)], slice(16, 80), slice(16, 80))[0]
    assert amp == pytest.approx(c * c / (c * c + 0.01), rel=0.02)


def test_optics_precedence() -> None:
    assert resolve_optics(None, None, None, {}) == {"voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07}
    got = resolve_optics(200.0, None, None, {"voltage_kv": 300.0, "cs_mm": 2.0, "amplitude_contrast": None})
    assert got == {"voltage_kv": 200.0, "cs_mm": 2.0, "amplitude_contrast": 0.07}


CTFFIND = "\n".join([
    "# Output from CTFFind version 4.1.14, run on 2024-01-01",
    "# Input file: ts.mrc ; Number of micrographs: 3",
    "# Pixel size: 1.350 Angstroms ; acceleration voltage: 200.0 keV ; spherical aberration: 2.70 mm ; "
    "amplitude contrast: 0.10",
    "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - azimuth of astigmatism; "
    "#5 - additional phase shift [radians]; #6 - cross correlation; #7 - spacing",
    "1.000000 30000.0 28000.0 45.0 0.0 0.1 8.0",
    "2.000000 31000.0 31000.0 0.0 0.0 0.1 8.0",
    "3.000000 40000.0 38000.0 10.0 0.0 0.1 8.0",
]) + "\n"


def test_ctffind_file(tmp_path: Path) -> None:
    p = tmp_path / "ts_diag.txt"
    p.write_text(CTFFIND)
    t = read_ctffind(p)
    np.testing.assert_allclose(t.defocus_um, [2.9, 3.1, 3.9])  # mean of defocus 1 and 2, A -> um
    assert (t.order, t.voltage_kv, t.cs_mm, t.amplitude_contrast) == ("angle", 200.0, 2.7, 0.1)


def test_aretomo3_ctf_file(tmp_path: Path) -> None:
    p = tmp_path / "TS_01_CTF.txt"
    p.write_text("# Columns: #1 micrograph number; #2 - defocus 1 [A]; #3 - defocus 2; #4 - azimuth of astigmatism; "
                 "#5 - additional phase shift [radian]; #6 - cross correlation; #7 - spacing; #8 - dfHand\n"
                 "   1   42000.00  40000.00    12.00     0.0000    0.0300   12.0000    1\n"
                 "   2   41000.00  41000.00    12.00     0.0000    0.0300   12.0000    1\n")
    t = read_defocus_file(p)
    np.testing.assert_allclose(t.defocus_um, [4.1, 4.1])
    assert t.voltage_kv is None


def test_imod_defocus_version2_and_3(tmp_path: Path) -> None:
    v2 = tmp_path / "a.defocus"
    # views 1-based, nm; a range's value belongs to its middle view (ctfphaseflip), the rest interpolated
    v2.write_text("1 1 -60.0 -60.0 3000.0 2\n3 5 -40.0 -20.0 3400.0\n6 6 0.0 0.0 3500.0\n")
    t = read_imod_defocus(v2)
    # middle of 3..5 is view 4 (0-based 3); 0-based 1, 2 lie between 3.0 (0) and 3.4 (3); 4 between 3.4 and 3.5
    np.testing.assert_allclose(t.defocus_um, [3.0, 3.0 + 0.4 / 3, 3.0 + 0.8 / 3, 3.4, 3.45, 3.5])
    v3 = tmp_path / "b.defocus"
    v3.write_text("1 0 0. 0. 0 3\n1 1 -3.0 -3.0 2800.0 2600.0 30.0\n2 2 0.0 0.0 3100.0 2900.0 31.0\n")
    np.testing.assert_allclose(read_defocus_file(v3).defocus_um, [2.7, 3.0])
    bad = tmp_path / "c.defocus"
    bad.write_text("5 1 0.0 0.0 3000.0 2\n")
    with pytest.raises(InputFileError, match="view range"):
        read_imod_defocus(bad)


MDOC = """PixelSpacing = 6.0
Voltage = 300

[T = SerialEM: test]

[ZValue = 0]
TiltAngle = 0.0
Defocus = {d0}
TargetDefocus = -4
Voltage = 300

[ZValue = 1]
TiltAngle = 3.0
Defocus = {d1}
TargetDefocus = -4
"""


def test_mdoc_defocus_sign(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "a.mdoc"
    p.write_text(MDOC.format(d0=-3.5, d1=-3.25))
    t = read_mdoc_defocus(p)  # SerialEM: negative = underfocus
    np.testing.assert_allclose(t.defocus_um, [3.5, 3.25])
    assert (t.order, t.source, t.voltage_kv) == ("zvalue", "mdoc Defocus", 300.0)
    p.write_text(MDOC.format(d0=2.5, d1=-1.0))  # readout not zeroed: fall back to TargetDefocus, one warning
    with caplog.at_level(logging.WARNING):
        t = read_mdoc_defocus(p)
    np.testing.assert_allclose(t.defocus_um, [4.0, 4.0])
    assert "TargetDefocus" in caplog.text
    p.write_text(MDOC.format(d0=2.5, d1=1.0).replace("TargetDefocus = -4\n", ""))
    with pytest.raises(InputFileError, match="no usable defocus"):
        read_mdoc_defocus(p)


def test_bad_defocus_values_are_one_line(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_text("1 -30000.0 -30000.0 0 0 0 0\n")  # negative: overfocus or the wrong sign
    with pytest.raises(InputFileError, match="underfocus of -3") as exc:
        read_ctffind(p)
    assert "\n" not in str(exc.value)
    p.write_text("1 30000.0 abc\n")
    with pytest.raises(CryocareError, match="line 1"):
        read_ctffind(p)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata (real side files) is not beside this checkout")
def test_real_files(caplog: pytest.LogCaptureFixture) -> None:
    t = read_ctffind(REAL / "cryoet_alignment_meta" / "tests" / "data" / "test_CTF.txt")
    assert t.defocus_um.shape == (3,)
    assert t.defocus_um[0] == pytest.approx((25951.41 + 24469.37) / 2e4)
    with caplog.at_level(logging.WARNING):  # EMPIAR-10164 TS_01: Defocus +1.2..+2.8 readouts, TargetDefocus -4
        m = read_mdoc_defocus(REAL / "mdocfile" / "tests" / "test_data" / "tilt_series.mdoc")
    assert m.defocus_um.shape == (41,) and np.allclose(m.defocus_um, 4.0) and "TargetDefocus" in caplog.text


def _band_corr(a: torch.Tensor, b: torch.Tensor, lo: float, hi: float) -> float:
    """Correlation of the Fourier coefficients of ``a`` and ``b`` with |k| in [lo, hi) cycles/voxel."""
    fa, fb = torch.fft.fftn(a.double()), torch.fft.fftn(b.double())
    f = [torch.fft.fftfreq(n, dtype=torch.float64) for n in a.shape]
    r = torch.sqrt(f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2)
    m = (r >= lo) & (r < hi)
    return float((fa[m] * fb[m].conj()).real.sum() / torch.sqrt((fa[m].abs() ** 2).sum() * (fb[m].abs() ** 2).sum()))


def test_phaseflip_corrects_the_reversed_band_of_a_reconstruction() -> None:
    """Simulated tilts at 5 um (+-0.3 per tilt, defocus gradient across tilted views), 6 A pixels. Between the
    first and second CTF zeros the tilts carry reversed contrast: by hand, the first zero at 5.3 um is at
    1/sqrt(lambda 53000 A) = 0.186 cycles/pixel and the second at 4.7 um at sqrt(2/(lambda 47000 A)) = 0.279
    (Cs shifts both up slightly). In 0.20-0.26 cycles/voxel the uncorrected tomogram barely correlates with
    the object; phase flipping with the true per-tilt defocus must make that band agree."""
    cfg = SimulateConfig(shape=(32, 64, 64), pixel_size=6.0, defocus_um=5.0, defocus_gradient=True,
                         defocus_spread_um=0.3, tilt_step=6.0, n_complexes=12, n_filaments=2, seed=5)
    pad = required_lateral_pad((32, 64, 64), 60.0)
    phantom = make_phantom(cfg, lateral_pad=pad)
    ts = simulate_tilt_series(phantom, cfg)
    assert ts.defocus_um is not None
    assert float((ts.defocus_um - 5.0).abs().max()) <= 0.3 and float(ts.defocus_um.std()) > 0.05
    tilts = ts.normalised("clean")
    truth = phantom.density[..., pad : pad + 64]
    vc = ViewCtf("phaseflip", ts.defocus_um.numpy(), ts.angles.numpy(), 6.0, np.zeros(len(ts.angles)))
    flipped = torch.stack([vc.correct(t, i) for i, t in enumerate(tilts)])
    raw = _band_corr(-weighted_backprojection(tilts, ts.angles, 32), truth, 0.20, 0.26)
    fixed = _band_corr(-weighted_backprojection(flipped, ts.angles, 32), truth, 0.20, 0.26)
    assert raw < 0.15 and fixed > raw + 0.2, (raw, fixed)
