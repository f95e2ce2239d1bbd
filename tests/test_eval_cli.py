"""``cryocare fsc``, ``baseline`` and ``evaluate`` as a user runs them (in-process, small volumes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.io.mrc import read_meta, read_volume, write_volume
from cryocare_torch.report.inputs import read_centres
from cryocare_torch.report.scoring import parse_methods, run_baseline

PNG = b"\x89PNG\r\n\x1a\n"


def _volume(tmp_path: Path, name: str = "map.mrc", shape: tuple[int, ...] = (16, 32, 32), vs: float = 10.0) -> Path:
    rng = np.random.default_rng(1)
    return write_volume(tmp_path / name, rng.normal(size=shape).astype(np.float32), voxel_size=vs)


def test_fsc_of_a_map_with_itself_reaches_nyquist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _volume(tmp_path)
    outs = [tmp_path / n for n in ("fsc.json", "fsc.csv", "fsc.png")]
    code = main(["fsc", str(a), str(a), "--json", str(outs[0]), "--csv", str(outs[1]), "--plot", str(outs[2])])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("resolution at FSC")]
    assert len(lines) == 2 and all("reaches Nyquist" in ln and "2.000 nm" in ln for ln in lines), out
    data = json.loads(outs[0].read_text())
    assert data["res_0_5_reaches_nyquist"] and data["res_0_143_reaches_nyquist"]
    assert data["nyquist_nm"] == pytest.approx(2.0) and np.allclose(data["fsc"], 1.0, atol=1e-5)
    rows = list(csv.reader(outs[1].open()))
    assert rows[0][:4] == ["shell", "frequency_per_nm", "resolution_nm", "fsc"] and len(rows) == 1 + 16 // 2 + 1
    assert outs[2].read_bytes()[:8] == PNG
    # outputs are never replaced silently
    assert main(["fsc", str(a), str(a), "--json", str(outs[0])]) == 5
    assert "--overwrite" in capsys.readouterr().err


def test_fsc_of_independent_noise_crosses_and_mask_crop_options(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    a = _volume(tmp_path, "a.mrc")
    b = write_volume(tmp_path / "b.mrc", np.random.default_rng(2).normal(size=(16, 32, 32)).astype(np.float32),
                     voxel_size=10.0)
    mask = write_volume(tmp_path / "m.mrc", np.ones((16, 32, 32), np.float32), voxel_size=10.0)
    code = main(["fsc", str(a), str(b), "--mask", str(mask), "--soft-edge", "2", "--crop", "16", "--voxel-size", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "Nyquist 1 nm" in out and out.count("reaches Nyquist") == 0, out
    assert "not a resolution" not in out
    ra, rb = (_volume(tmp_path, f"restored_{h}.mrc") for h in ("even", "odd"))
    assert main(["fsc", str(ra), str(rb)]) == 0
    assert "not a resolution" in capsys.readouterr().out  # halves restored by one network: said so


def test_baseline_keeps_voxel_size_and_origin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _volume(tmp_path, "tomo.mrc", (12, 20, 20), vs=7.5)
    out = tmp_path / "median.mrc"
    assert main(["baseline", str(src), "--method", "median", "--size", "3", "--output", str(out)]) == 0
    assert read_meta(out).voxel_size == pytest.approx((7.5, 7.5, 7.5))
    vol, _ = read_volume(out)
    assert vol.shape == (12, 20, 20) and vol.std() < read_volume(src)[0].std()
    rng = np.random.default_rng(2)
    sig = rng.normal(size=(12, 20, 20)).astype(np.float32)  # one signal, independent noise: a usable pair
    even, odd = (write_volume(tmp_path / n, sig + rng.normal(size=sig.shape).astype(np.float32), voxel_size=4.0)
                 for n in ("t_even.mrc", "t_odd.mrc"))
    for method, extra in (("gaussian", ["--sigma", "1.5"]), ("nad", ["--iterations", "2"])):
        dst = tmp_path / f"{method}.mrc"
        code = main(["baseline", "--even", str(even), "--odd", str(odd), "--method", method, "--output", str(dst),
                     *extra])
        assert code == 0 and read_meta(dst).voxel_size == pytest.approx((4.0, 4.0, 4.0))
    capsys.readouterr()
    # refusals: existing output, both an input and halves, an even median size
    assert main(["baseline", str(src), "--method", "median", "--output", str(out)]) == 5
    assert main(["baseline", str(src), "--even", str(even), "--odd", str(odd), "--method", "median",
                 "--output", str(tmp_path / "x.mrc")]) == 2
    assert main(["baseline", str(src), "--method", "median", "--size", "4", "--output", str(tmp_path / "y.mrc")]) == 2
    err = capsys.readouterr().err
    assert err.count("cryocare: error:") == 3 and "Traceback" not in err


def _run_files(tmp_path: Path) -> dict[str, Path]:
    """A tiny run: truth with blobs, noisy halves, a 'restored' (smoothed average), labels and centres."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    shape = (24, 40, 32)
    centres = np.array([[12, 8, 10], [12, 16, 22], [10, 28, 12], [14, 34, 22]], float)
    zz, yy, xx = np.indices(shape)
    truth = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int8)
    for c in centres:
        inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9
        truth[inside] = -1.0
        labels[inside] = 3
    truth = ndimage.gaussian_filter(truth, 1.0).astype(np.float32)
    even = truth + rng.normal(scale=0.3, size=shape).astype(np.float32)
    odd = truth + rng.normal(scale=0.3, size=shape).astype(np.float32)
    restored = ndimage.gaussian_filter(0.5 * (even + odd), 1.0).astype(np.float32)
    files = {name: write_volume(tmp_path / f"{name}.mrc", v, voxel_size=8.0) for name, v in
             (("tomo_even", even), ("tomo_odd", odd), ("tomo_clean", truth), ("labels", labels),
              ("restored", restored))}
    files["centres"] = tmp_path / "decorations.csv"
    files["centres"].write_text("z,y,x,filament\n" + "".join(f"{c[0]},{c[1]},{c[2]},0\n" for c in centres))
    return files


def test_evaluate_writes_metrics_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _run_files(tmp_path)
    out = tmp_path / "eval"
    args = ["evaluate", "--restored", str(f["restored"]), "--even", str(f["tomo_even"]), "--odd", str(f["tomo_odd"]),
            "--truth", str(f["tomo_clean"]), "--labels", str(f["labels"]), "--centres", str(f["centres"]),
            "--output-dir", str(out), "--methods", "median", "gaussian", "--downstream-steps", "2",
            "--threads", "1", "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["fsc"]) == {"raw halves", "raw average vs truth", "cryocare-torch vs truth"}
    names = [r["name"] for r in m["quality"]]
    assert names == ["raw average", "median", "Gaussian", "cryocare-torch"]
    rows = {r["name"]: r for r in m["quality"]}
    assert rows["cryocare-torch"]["psnr"] > rows["raw average"]["psnr"]
    assert m["baselines"]["median"]["tuned"] and m["voxel_size_angstrom"] == 8.0
    assert set(m["downstream"]["best"]) == {"raw average", "cryocare-torch"} and m["downstream"]["n_centres"] == 4
    directional = m["directional_fsc_truth"]
    assert set(directional) == {"raw average", "cryocare-torch", "truth less its z profile"}
    # the truth less its mean over each z section, on the central region (10% border)
    t = read_volume(f["tomo_clean"])[0].astype(np.float64)
    sl = tuple(slice(n // 10, n - n // 10) for n in t.shape)
    expected = np.corrcoef((t - t.mean(axis=(1, 2), keepdims=True))[sl].ravel(), t[sl].ravel())[0, 1]
    assert directional["truth less its z profile"]["correlation"] == pytest.approx(expected, abs=1e-5)
    assert directional["cryocare-torch"]["correlation"] > directional["raw average"]["correlation"]
    assert directional["raw average"]["ratio_z_over_x_0_5"] > 0 and directional["raw average"]["half_angle_deg"] == 30
    for name in m["figures"].values():
        assert (out / name).read_bytes()[:8] == PNG
    assert set(m["figures"]) == {"slices", "slices_baselines", "fsc", "precision_recall"}
    assert "cryocare report" in capsys.readouterr().out
    # a second run into the same folder needs --overwrite
    assert main(args) == 5
    assert "metrics.json" in capsys.readouterr().err


def test_evaluate_refuses_mismatched_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _run_files(tmp_path)
    small = _volume(tmp_path, "small.mrc", (8, 8, 8), 8.0)
    code = main(["evaluate", "--restored", str(small), "--even", str(f["tomo_even"]), "--odd", str(f["tomo_odd"]),
                 "--output-dir", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 4 and "small.mrc" in err and len(err.strip().splitlines()) == 1
    code = main(["evaluate", "--restored", str(f["restored"]), "--even", str(f["tomo_even"]), "--odd",
                 str(f["tomo_odd"]), "--labels", str(f["labels"]), "--output-dir", str(tmp_path / "e")])
    assert code == 2 and "--centres" in capsys.readouterr().err
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_nad_oracle_and_defaults_and_method_names(tmp_path: Path) -> None:
    f = _run_files(tmp_path)
    raw = 0.5 * (read_volume(f["tomo_even"])[0] + read_volume(f["tomo_odd"])[0])
    truth = read_volume(f["tomo_clean"])[0]
    tuned = run_baseline("nad", raw[:16, :16, :16], truth[:16, :16, :16])
    assert tuned.tuned and tuned.params["iterations"] in (4, 8, 16) and "oracle" in tuned.describe()
    plain = run_baseline("median", raw, None)
    assert not plain.tuned and plain.params == {"size": 3} and plain.volume.shape == raw.shape
    assert parse_methods(["NAD,median", "median"]) == ("nad", "median")
    with pytest.raises(Exception, match="unknown baseline"):
        parse_methods(["bm3d"])
    assert read_centres(f["centres"]).shape == (4, 3)


def test_evaluate_estimates_the_fsc_against_the_truth_on_the_validation_slab(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A tiny model trained on files: evaluate --model scores the slab it recorded (the last 16 of 48 y
    voxels; patches of 16, val_fraction 0.1), predicting the restored halves there; without a model and
    with the restored halves beside the restored file, it uses the whole volume and warns that it is biased."""
    from scipy import ndimage

    from cryocare_torch.config import CryocareConfig
    from cryocare_torch.train import train

    rng = np.random.default_rng(0)
    shape = (24, 48, 48)
    truth = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0).astype(np.float32)
    truth /= truth.std()
    files = {n: write_volume(tmp_path / f"{n}.mrc", v, voxel_size=8.0) for n, v in (
        ("tomo_even", truth + rng.normal(size=shape).astype(np.float32)),
        ("tomo_odd", truth + rng.normal(size=shape).astype(np.float32)), ("tomo_clean", truth))}
    cfg = CryocareConfig.model_validate({"model": {"n_first": 4, "gaussian_skip": False, "depth": 2},
                                         "patches": {"patch_size": 16, "n_patches": 40},
                                         "train": {"epochs": 1, "batch_size": 4, "steps_per_epoch": 3,
                                                   "precision": "fp32", "num_threads": 1}})
    train([(files["tomo_even"], files["tomo_odd"])], tmp_path / "model", cfg, progress=False)
    restored, moved = tmp_path / "restored.mrc", tmp_path / "elsewhere" / "restored.mrc"
    moved.parent.mkdir()
    for out_path, extra in ((restored, []), (moved, ["--write-halves"])):
        assert main(["predict", "--model", str(tmp_path / "model" / "best.pt"), "--even", str(files["tomo_even"]),
                     "--odd", str(files["tomo_odd"]), "--output", str(out_path), "--threads", "1", *extra]) == 0
    base = ["evaluate", "--restored", str(restored), "--even", str(files["tomo_even"]), "--odd",
            str(files["tomo_odd"]), "--truth", str(files["tomo_clean"]), "--methods", "gaussian", "--box", "24",
            "--threads", "1", "--device", "cpu"]
    capsys.readouterr()
    assert main([*base, "--model", str(tmp_path / "model"), "--output-dir", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr()
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    est = m["estimated_fsc_truth"]
    assert est["region"] == [[0, 24], [32, 48], [0, 48]] and est["biased"] is False
    assert len(est["fsc"]) == len(est["frequency_per_nm"]) == 16 // 2 + 1 and len(est["true_fsc"]) == 9
    assert est["res_0_143_nm"] > 0 and "description" in est and "fsc_truth" in m["figures"]
    assert "restored vs truth, estimated" in out.out and "y32-48" in out.out and "predicting" in out.err
    assert "biased" not in out.err
    base[2] = str(moved)  # its restored halves beside it, no model: whole volume, from the halves on disk
    assert main([*base, "--output-dir", str(tmp_path / "ev2")]) == 0
    out = capsys.readouterr()
    m = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert "Not a resolution" in m["fsc"]["restored halves"]["note"] and "not a resolution" in out.out
    err = out.err
    est = m["estimated_fsc_truth"]
    assert est["region"] == [[0, 24], [0, 48], [0, 48]] and est["biased"] is True
    assert sum("biased upwards" in line and line.startswith("warning: ") for line in err.splitlines()) == 1
