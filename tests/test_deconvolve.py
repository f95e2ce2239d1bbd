"""``cryocare deconvolve``: the Wiener filter against tom_deconv's formulas, recovery of a CTF-blurred object, files.

Expected values are computed here in tom_deconv's own convention (D. Tegunov's MATLAB ``tom_deconv`` / ``tom_ctf1d``,
also in IsoNet's ``IsoNet/util/deconvolution.py``): a negative defocus for underfocus, the phase
``w = pi/2 (Cs l^3 k^4 + 2 l dz k^2)`` and ``CTF = -sqrt(1 - A^2) sin(w) + A cos(w)``, frequencies as fractions of
Nyquist and the wavelength from CODATA constants -- not with the code under test.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryocare_torch.cli.main import main
from cryocare_torch.config import CryocareConfig, SimulateConfig
from cryocare_torch.predict.deconvolve import ctf_deconvolve, wiener_1d
from cryocare_torch.predict.deconvolve_files import header_warnings
from cryocare_torch.simulate import write_dataset
from cryocare_torch.workflows.demo import run_demo

H, M0, E, C = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0


def tom_ctf(f: np.ndarray, px: float, defocus_um: float, kv: float = 300.0, cs_mm: float = 2.7,
            amp: float = 0.07) -> np.ndarray:
    """tom_ctf1d's CTF at fractions of Nyquist ``f``, in its units (metres, negative defocus for underfocus)."""
    v = kv * 1e3
    lam = H / math.sqrt(2 * M0 * E * v * (1 + E * v / (2 * M0 * C * C)))
    k = f / (2 * px * 1e-10)  # 1/m
    dz, cs = -defocus_um * 1e-6, cs_mm * 1e-3
    w = math.pi / 2 * (cs * lam**3 * k**4 + 2 * lam * dz * k**2)
    return -math.sqrt(1 - amp**2) * np.sin(w) + amp * np.cos(w)


def tom_wiener(f: np.ndarray, px: float, defocus_um: float, strength: float, falloff: float, hp: float,
               flipped: bool = False) -> np.ndarray:
    """tom_deconv's filter at fractions of Nyquist ``f``."""
    ctf = tom_ctf(f, px, defocus_um)
    if flipped:
        ctf = np.abs(ctf)
    highpass = 1 - np.cos(np.minimum(1, f / hp) * math.pi)
    snr = np.exp(-f * falloff * 100 / px) * 10 ** (3 * strength) * highpass
    with np.errstate(divide="ignore"):
        return np.where(snr > 0, ctf / (ctf * ctf + 1 / np.where(snr > 0, snr, 1)), 0.0)


@pytest.mark.parametrize(("px", "dz", "strength", "falloff", "flipped"),
                         [(8.0, 3.0, 1.0, 1.0, False), (5.4, 4.5, 0.5, 0.3, False), (10.0, 2.0, 1.0, 1.0, True)])
def test_filter_matches_tom_deconv(px: float, dz: float, strength: float, falloff: float, flipped: bool) -> None:
    f = np.linspace(0, 1, 513)
    expected = tom_wiener(f, px, dz, strength, falloff, 0.02, flipped)
    got = wiener_1d(torch.from_numpy(f), px, dz, strength=strength, snr_falloff=falloff, highpass_nyquist=0.02,
                    phase_flipped=flipped).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert abs(got[0]) < 1e-9  # the high-pass removes the mean
    assert (got >= 0).all() if flipped else (got < 0).any()  # the reversed bands stay reversed unless flipped


def _ctf_blur(x: np.ndarray, px: float, dz: float, flip: bool = False) -> np.ndarray:
    """``x`` through the 3D transfer CTF(|k|) (or |CTF|), on the full FFT grid in tom_ctf1d's convention."""
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape], indexing="ij")
    ctf = tom_ctf(2 * np.sqrt(sum(g**2 for g in grids)), px, dz)  # fraction of Nyquist
    return np.real(np.fft.ifftn(np.fft.fftn(x) * (np.abs(ctf) if flip else ctf)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_deconvolution_recovers_a_ctf_blurred_object() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 48, 40))
    spec = np.fft.fftn(x)
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape], indexing="ij")
    f = 2 * np.sqrt(sum(g**2 for g in grids))
    x = np.real(np.fft.ifftn(spec * ((f > 0.1) & (f < 0.6))))  # band-limited, between the high-pass and the zero
    y = _ctf_blur(x, px=10.0, dz=1.0)  # 1 um at 10 A: the first zero lies beyond Nyquist
    out = ctf_deconvolve(torch.from_numpy(y).float(), 10.0, 1.0, strength=2.0, snr_falloff=0.0).numpy()
    def rel_err(a: np.ndarray) -> float:
        return float(np.linalg.norm(a - x) / np.linalg.norm(x))

    assert rel_err(y) > 0.4  # the CTF damps the band (0.07 at k = 0, 0.59 at Nyquist)
    assert rel_err(out) < 0.01 and _corr(out, x) > 0.999
    # phase-flipped input of a series whose CTF reverses contrast: |CTF| undoes it, the signed CTF would not
    flipped = _ctf_blur(x, px=10.0, dz=6.0, flip=True)
    good = ctf_deconvolve(torch.from_numpy(flipped).float(), 10.0, 6.0, strength=2.0, snr_falloff=0.0,
                          phase_flipped=True).numpy()
    bad = ctf_deconvolve(torch.from_numpy(flipped).float(), 10.0, 6.0, strength=2.0, snr_falloff=0.0).numpy()
    assert _corr(good, x) > 0.999 and _corr(bad, x) < 0.9


def _write(path: Path, data: np.ndarray, voxel: float) -> None:
    with mrcfile.new(path) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = voxel


def test_cli_writes_the_deconvolved_tomogram_and_keeps_the_input(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    vol = rng.standard_normal((16, 32, 24)).astype(np.float32)
    src, out = tmp_path / "restored.mrc", tmp_path / "deconv.mrc"
    _write(src, vol, 7.5)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    defocus = tmp_path / "ts.defocus"  # IMOD .defocus v2: view range, angles, defocus in nm; median 3.5 um
    defocus.write_text("1 1 -30.0 -30.0 3000 2\n2 2 0.0 0.0 3500\n3 3 30.0 30.0 4000\n")
    assert main(["deconvolve", str(src), "--output", str(out), "--defocus-file", str(defocus),
                 "--strength", "0.8"]) == 0
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    with mrcfile.open(out) as m:
        got, voxel = m.data.copy(), float(m.voxel_size.x)
    assert voxel == pytest.approx(7.5)
    np.testing.assert_allclose(got, ctf_deconvolve(torch.from_numpy(vol), 7.5, 3.5, strength=0.8).numpy(), atol=1e-5)
    assert "underfocus 3.5 um" in capsys.readouterr().err
    # one line, no traceback, nothing written: no defocus; both kinds; no voxel size
    for args, code, words in (([], 2, "needs the defocus"), (["--defocus", "3", "--defocus-file", str(defocus)], 2,
                              "not both")):
        assert main(["deconvolve", str(src), "--output", str(tmp_path / "x.mrc"), *args]) == code
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and not (tmp_path / "x.mrc").exists()
    _write(tmp_path / "novox.mrc", vol, 0.0)
    assert main(["deconvolve", str(tmp_path / "novox.mrc"), "--output", str(tmp_path / "x.mrc"), "--defocus", "3"]) != 0
    assert "--voxel-size" in capsys.readouterr().err and not (tmp_path / "x.mrc").exists()


def test_header_labels_of_prepare_warn_about_the_wrong_filter() -> None:
    flipped = ("cryocare-torch: normalised, aligned, CTF phaseflip views", "cryocare-torch predict")
    assert any("--phase-flipped" in w for w in header_warnings(flipped, False))
    assert header_warnings(flipped, True) == []
    assert any("over-corrects" in w for w in header_warnings(("x", "cryocare-torch: normalised, aligned, CTF wiener "
                                                                   "views"), False))
    assert header_warnings(("cryocare-torch: normalised views",), False) == []


def test_demo_compares_plain_wedge_and_deconvolved_against_the_object(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sim = SimulateConfig(shape=(32, 64, 64), seed=3, tilt_step=10.0, n_membranes=1, n_filaments=1, n_complexes=2)
    cfg = CryocareConfig.model_validate({"patches": {"patch_size": 32, "n_patches": 8},
                                         "train": {"epochs": 1, "batch_size": 2, "num_threads": 2}})
    run_demo(tmp_path, cfg, minutes=0.05, simulation=sim, missing_wedge=True)
    scores = json.loads((tmp_path / "demo_modes.json").read_text())["scores_against_object"]
    assert set(scores) == {"plain", "missing wedge", "plain + CTF deconvolution", "missing wedge + CTF deconvolution"}
    assert all(-1 <= s["correlation"] <= 1 for s in scores.values())
    assert 0 < json.loads((tmp_path / "demo_modes.json").read_text())["correlation_without_z_profile"] < 1
    assert (tmp_path / "demo_modes.png").stat().st_size > 10_000 and (tmp_path / "restored_wedge.mrc").is_file()
    with mrcfile.open(tmp_path / "restored_wedge.mrc") as m:
        assert m.data.shape == (32, 64, 64)
    assert "against the true object" in capsys.readouterr().out


def test_denoise_with_a_defocus_file_deconvolves_its_restoration(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """One command, wedge then CTF: the simulator's .mdoc carries SerialEM's Defocus (negative = under), which
    ``denoise --defocus-file`` reads; the output is the CTF-deconvolved restoration, kept beside it unfiltered."""
    sim = SimulateConfig(shape=(32, 64, 64), seed=5, tilt_step=10.0, n_membranes=1, n_filaments=1, n_complexes=2,
                         defocus_um=2.5, defocus_spread_um=0.4)
    paths = write_dataset(sim, tmp_path / "sim")
    mdoc = paths["mdoc"].read_text()
    readouts = [float(line.split("=")[1]) for line in mdoc.splitlines() if line.startswith("Defocus =")]
    assert len(readouts) == 13 and all(-2.9 <= d <= -2.1 for d in readouts) and len(set(readouts)) > 1
    out = tmp_path / "out" / "tomo.mrc"
    before = hashlib.sha256(paths["mdoc"].read_bytes()).hexdigest()
    assert main(["denoise", "--even", str(paths["tomo_even"]), "--odd", str(paths["tomo_odd"]), "--output", str(out),
                 "--defocus-file", str(paths["mdoc"]), "--missing-wedge", "-60", "60", "--threads", "2",
                 "--set", "patches.patch_size=32", "--set", "patches.n_patches=8", "--set", "train.epochs=1",
                 "--set", "train.batch_size=2"]) == 0
    assert hashlib.sha256(paths["mdoc"].read_bytes()).hexdigest() == before
    restored = out.with_name("tomo_restored.mrc")
    with mrcfile.open(restored) as m:
        rest, voxel = m.data.copy(), float(m.voxel_size.x)
    with mrcfile.open(out) as m:
        got = m.data.copy()
    expected = ctf_deconvolve(torch.from_numpy(rest), voxel, float(np.median(-np.array(readouts)))).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4 * float(np.abs(expected).max()))
    assert f"median of {len(readouts)} views in tilts.mdoc" in capsys.readouterr().err
    # both kinds of defocus: one line before any training, nothing written
    assert main(["denoise", "--even", str(paths["tomo_even"]), "--odd", str(paths["tomo_odd"]), "--output",
                 str(tmp_path / "x.mrc"), "--defocus", "3", "--defocus-file", str(paths["mdoc"])]) == 2
    err = capsys.readouterr().err
    assert "not both" in err and "Traceback" not in err and not (tmp_path / "x_model").exists()
