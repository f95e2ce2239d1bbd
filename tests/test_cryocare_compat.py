"""cryoCARE's three scripts as RELION 5's Denoise job runs them, with the JSON configs RELION writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tomllib
from scipy import ndimage

from cryocare_torch.cli.cryocare_json import flag, gpu_device, resolve_pairs
from cryocare_torch.errors import ConfigError
from cryocare_torch.io.mrc import write_volume

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"cryoCARE_extract_train_data.py": "extract_train_data", "cryoCARE_train.py": "train",
           "cryoCARE_predict.py": "predict"}


# --- RELION 5's JSON, written from 3dem/relion src/tomography_python_programs/denoise/cryoCARE/_utils.py ----------
# generate_train_data_config_json: 10 % of the sub-volumes for normalisation, split 0.9, tilt axis "Y",
# overwrite as the string "True"; generate_train_config_json: 100 epochs x 200 steps of 16, kernel 3, depth 3,
# 16 first channels, learning rate 0.0004, "path" = the job's output directory; generate_predict_json: "path" = the
# model .tar.gz, "output" = output_directory / "tomograms". save_json writes json.dump(indent=4).
def relion_train_data_config(even: list[str], odd: list[str], training_dir: Path, n_sub: int, side: int) -> dict:
    return {"even": even, "odd": odd, "patch_shape": [side, side, side], "num_slices": n_sub, "split": 0.9,
            "tilt_axis": "Y", "n_normalization_samples": round(n_sub * 0.1), "path": str(training_dir),
            "overwrite": "True"}


def relion_train_config(training_dir: Path, output_directory: Path, model_name: str, gpu: list[int] | None) -> dict:
    conf = {"train_data": str(training_dir), "epochs": 100, "steps_per_epoch": 200, "batch_size": 16,
            "unet_kern_size": 3, "unet_n_depth": 3, "unet_n_first": 16, "learning_rate": 0.0004,
            "model_name": model_name, "path": str(output_directory), "overwrite": "True"}
    if gpu is not None:
        conf["gpu_id"] = gpu
    return conf


def relion_predict_config(even: list[str], odd: list[str], model: Path, output_directory: Path,
                          n_tiles: tuple[int, int, int]) -> dict:
    return {"path": str(model), "even": even, "odd": odd, "n_tiles": list(n_tiles),
            "output": str(output_directory / "tomograms"), "overwrite": "True"}


def save_json(training_dir: Path, obj: dict, prefix: str) -> Path:
    path = training_dir / f"{prefix}.json"
    path.write_text(json.dumps(obj, indent=4))
    return path


def run_script(name: str, conf: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed console script where setup.sh installed this checkout, else the same function."""
    exe = Path(sys.executable).parent / name
    cmd = [str(exe)] if exe.exists() and os.environ.get("PYTHONPATH") is None else [
        sys.executable, "-c", f"import sys; from cryocare_torch.cli.cryocare_scripts import {SCRIPTS[name]} as f; "
        "sys.exit(f())"]
    return subprocess.run([*cmd, "--conf", str(conf)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def psnr(x: np.ndarray, truth: np.ndarray) -> float:
    """PSNR after the least-squares affine fit of x to the truth (scale and offset differ between methods)."""
    a = np.vstack([x.ravel(), np.ones(x.size)]).T
    coef, *_ = np.linalg.lstsq(a, truth.ravel(), rcond=None)
    mse = float(np.mean((a @ coef - truth.ravel()) ** 2))
    return 10 * np.log10(float(truth.max() - truth.min()) ** 2 / mse)


@pytest.fixture
def relion_project(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A RELION project with one tomogram's half reconstructions (blobs + independent noise, 7.5 A voxels)."""
    rng = np.random.default_rng(3)
    truth = ndimage.gaussian_filter(rng.normal(size=(40, 96, 96)), 2.0).astype(np.float32)
    truth /= truth.std()
    tomo_dir = tmp_path / "Tomograms" / "job007" / "tomograms"
    tomo_dir.mkdir(parents=True)
    for half in ("half1", "half2"):
        noisy = truth + rng.normal(scale=1.5, size=truth.shape).astype(np.float32)
        write_volume(tomo_dir / f"rec_TS_01_{half}.mrc", noisy, voxel_size=7.5)
    return tmp_path, truth


def test_relion_denoise_job_runs_through_the_three_scripts(relion_project: tuple[Path, np.ndarray]) -> None:
    proj, truth = relion_project
    even = ["Tomograms/job007/tomograms/rec_TS_01_half1.mrc"]  # rlnTomoReconstructedTomogramHalf1, project-relative
    odd = ["Tomograms/job007/tomograms/rec_TS_01_half2.mrc"]
    output_directory = Path("Denoise/job008")  # create_denoising_directory_structure
    training_dir = output_directory / "external" / "training"
    (proj / training_dir).mkdir(parents=True)
    (proj / output_directory / "tomograms").mkdir(parents=True)
    env = {"CRYOCARE_TORCH_SET": "train.max_minutes=0.15;train.num_threads=2;predict.num_threads=2"}

    conf = save_json(proj / training_dir, relion_train_data_config(even, odd, training_dir, 40, 32),
                     "train_data_config")
    r = run_script("cryoCARE_extract_train_data.py", conf, proj, env)
    assert r.returncode == 0, r.stderr
    conf = save_json(proj / training_dir, relion_train_config(training_dir, output_directory, "denoising_model", None),
                     "train_config")
    r = run_script("cryoCARE_train.py", conf, proj, env)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr  # not a terminal: plain lines only
    model = output_directory / "denoising_model.tar.gz"  # RELION's cryoCARE/train.py checks exactly this file
    assert (proj / model).is_file()
    with tarfile.open(proj / model) as tar:
        assert {"denoising_model/best.pt", "denoising_model/norm.json"} <= set(tar.getnames())

    conf = save_json(proj / training_dir, relion_predict_config(even, odd, model, output_directory, (1, 1, 1)),
                     "predict_config")
    r = run_script("cryoCARE_predict.py", conf, proj, env)
    assert r.returncode == 0, r.stderr
    out = proj / output_directory / "tomograms" / "rec_TS_01_half1.mrc"  # named as the even file
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    # RELION's rename_predicted_tomograms strips EVEN_SUFFIX '_half1'; add_denoised_tomo_to_global_star expects
    # {tomogram_dir}/rec_{rlnTomoName}.mrc
    assert out.name.replace("_half1", "") == "rec_TS_01.mrc"
    with mrcfile.open(out, permissive=False) as m:
        assert m.header.mode == 2 and m.data.dtype == np.float32
        assert np.allclose([m.voxel_size.x, m.voxel_size.y, m.voxel_size.z], 7.5)
        restored = np.array(m.data)
    with mrcfile.open(proj / even[0]) as a, mrcfile.open(proj / odd[0]) as b:
        raw = 0.5 * (a.data + b.data)
    gain = psnr(restored, truth) - psnr(raw, truth)
    print(f"RELION configs: raw average {psnr(raw, truth):.2f} dB, restored {psnr(restored, truth):.2f} dB vs truth")
    assert gain > 3.0, gain


def test_tensorflow_model_archive_is_refused_with_retrain_message(relion_project: tuple[Path, np.ndarray],
                                                                 tmp_path: Path) -> None:
    proj, _ = relion_project
    tf_dir = tmp_path / "tf" / "denoising_model"  # what TensorFlow cryoCARE 0.3 packs (csbdeep model folder)
    tf_dir.mkdir(parents=True)
    for name in ("config.json", "weights_best.h5", "weights_last.h5", "norm.json", "history.dat"):
        (tf_dir / name).write_bytes(b"{}")
    model = tmp_path / "tf" / "denoising_model.tar.gz"
    with tarfile.open(model, "w:gz") as tar:
        tar.add(tf_dir, arcname="denoising_model")
    even = ["Tomograms/job007/tomograms/rec_TS_01_half1.mrc"]
    odd = ["Tomograms/job007/tomograms/rec_TS_01_half2.mrc"]
    conf = save_json(tmp_path, relion_predict_config(even, odd, model, tmp_path / "out", (1, 1, 1)), "predict_config")
    r = run_script("cryoCARE_predict.py", conf, proj)
    assert r.returncode == 6, r.stderr
    assert "TensorFlow" in r.stderr and "retrain" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "out").glob("*.mrc"))


def test_folders_are_paired_by_name_not_listing_order(tmp_path: Path) -> None:
    even_dir, odd_dir = tmp_path / "even", tmp_path / "odd"
    even_dir.mkdir()
    odd_dir.mkdir()
    for i, name in enumerate(("TS_10", "TS_2", "TS_1")):  # created out of order; glob order is the directory's
        write_volume(even_dir / f"{name}_half1.mrc", np.full((4, 8, 8), i, np.float32), voxel_size=1.0)
        write_volume(odd_dir / f"{name}_half2.mrc", np.full((4, 8, 8), i, np.float32), voxel_size=1.0)
    pairs = resolve_pairs(str(even_dir), str(odd_dir), tmp_path)
    assert len(pairs) == 3
    for e, o in pairs:
        assert e.parent == even_dir and o.parent == odd_dir
        assert e.name.replace("_half1", "") == o.name.replace("_half2", "")
    with pytest.raises(ConfigError):
        resolve_pairs([str(even_dir / "TS_1_half1.mrc")], [], tmp_path)


def test_overwrite_strings_and_gpu_id_as_cryocare_reads_them() -> None:
    assert flag("True", "overwrite", False) is True
    assert flag("False", "overwrite", True) is False  # cryoCARE's own truth test would take "False" as true
    assert flag(None, "overwrite", True) is True and flag(False, "overwrite", True) is False
    with pytest.raises(ConfigError):
        flag("maybe", "overwrite", False)
    assert gpu_device(1) == ("cuda:1", None)
    device, note = gpu_device([2, 3])
    assert device == "cuda:2" and note and "torchrun" in note
    assert gpu_device(None) == (None, None)
    for bad in ([], "0", 1.5, [0, "1"]):
        with pytest.raises(ConfigError):
            gpu_device(bad)


def test_existing_output_folder_without_overwrite_is_refused(relion_project: tuple[Path, np.ndarray]) -> None:
    proj, _ = relion_project
    conf = relion_predict_config(["Tomograms/job007/tomograms/rec_TS_01_half1.mrc"],
                                 ["Tomograms/job007/tomograms/rec_TS_01_half2.mrc"], proj / "m.tar.gz", proj, (1, 1, 1))
    (proj / "tomograms").mkdir()
    conf["overwrite"] = "False"
    r = run_script("cryoCARE_predict.py", save_json(proj, conf, "predict_config"), proj)
    assert r.returncode == 5 and "overwrite" in r.stderr, r.stderr


def test_console_scripts_are_declared() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, func in SCRIPTS.items():
        assert scripts[name] == f"cryocare_torch.cli.cryocare_scripts:{func}"
