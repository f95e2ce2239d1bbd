"""The CLI as a user meets it: help, config, and one-line errors with distinct exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from cryocare_torch.io.mrc import write_volume


def _one_line_error(proc, needle: str) -> None:  # type: ignore[no-untyped-def]
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cryocare: error:") and needle in err, err


def test_help_lists_commands(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("train", "predict", "denoise", "demo", "simulate", "config"):
        assert cmd in proc.stdout


def test_config_round_trip(tmp_path: Path, cli) -> None:
    proc = cli("config", "--set", "train.epochs=7", "--set", "model.depth=3")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["train"]["epochs"] == 7 and cfg["model"]["depth"] == 3
    f = tmp_path / "c.yaml"
    f.write_text(proc.stdout)
    again = yaml.safe_load(cli("config", "--config", str(f)).stdout)
    assert again == cfg


def test_bad_config_values_exit_2(tmp_path: Path, cli) -> None:
    _one_line_error(proc := cli("config", "--set", "train.epochs=-1"), "train.epochs")
    assert proc.returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {nonsense: 1}\n")
    _one_line_error(proc := cli("config", "--config", str(bad)), str(bad))
    assert proc.returncode == 2
    proc = cli("denoise", "--no-such-option")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_missing_input_exit_3(tmp_path: Path, cli) -> None:
    proc = cli("denoise", "--even", str(tmp_path / "e.mrc"), "--odd", str(tmp_path / "o.mrc"),
                   "--output", str(tmp_path / "out.mrc"))
    assert proc.returncode == 3
    _one_line_error(proc, str(tmp_path / "e.mrc"))
    assert not (tmp_path / "out.mrc").exists()


def test_mismatched_halves_exit_4(tmp_path: Path, cli) -> None:
    e = write_volume(tmp_path / "e.mrc", np.zeros((8, 16, 16), np.float32), voxel_size=5.0)
    o = write_volume(tmp_path / "o.mrc", np.zeros((8, 16, 18), np.float32), voxel_size=5.0)
    proc = cli("denoise", "--even", str(e), "--odd", str(o), "--output", str(tmp_path / "out.mrc"))
    assert proc.returncode == 4
    _one_line_error(proc, "differ in shape")
    proc = cli("denoise", "--even", str(e), "--odd", str(e), "--output", str(tmp_path / "out.mrc"))
    assert proc.returncode == 4


def test_output_equal_to_input_refused(tmp_path: Path, cli) -> None:
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(8, 16, 16)).astype(np.float32)  # a usable pair: the output check is what refuses
    e = write_volume(tmp_path / "e.mrc", sig + rng.normal(size=sig.shape).astype(np.float32), voxel_size=5.0)
    o = write_volume(tmp_path / "o.mrc", sig + rng.normal(size=sig.shape).astype(np.float32), voxel_size=5.0)
    before = e.read_bytes()
    proc = cli("denoise", "--even", str(e), "--odd", str(o), "--output", str(e), "--overwrite")
    assert proc.returncode == 5
    _one_line_error(proc, "same as an input")
    assert e.read_bytes() == before
