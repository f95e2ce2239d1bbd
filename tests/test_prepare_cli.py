"""``cryocare prepare ...`` end to end on tiny simulated raw data (in-process, as the console script runs it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.io.mrc import read_meta, read_volume, write_volume

TINY_TRAIN = ["--epochs", "1", "--patch-size", "16", "--n-patches", "16", "--batch-size", "4", "--seed", "1"]


def run(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "raw"
    assert run("prepare", "simulate-raw", out, "--shape", "24", "64", "64", "--tilt-step", "15", "--n-frames", "4",
               "--seed", "3", "--set", "simulate.contrast_scale=3") == 0
    return out


def raw_args(raw: Path, *extra: str) -> list[str]:
    return ["--mdoc", str(raw / "TS_01.mdoc"), "--gain", str(raw / "gain.mrc"), "--xf", str(raw / "TS_01.xf"),
            "--tlt", str(raw / "TS_01.tlt"), *extra]


def test_prepare_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("prepare", "--help") == 0
    out = capsys.readouterr().out
    for cmd in ("motion", "tiltseries", "t2t", "p2p", "halves", "p2p-reconstruct", "simulate-raw"):
        assert cmd in out


def test_t2t_regimes_and_denoise(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prep"
    assert run("prepare", "t2t", "--output-dir", out, "--regime", "df", "--thickness", "12", "--binning", "2",
               *raw_args(raw)) == 0
    meta = read_meta(out / "TS_01_t2t_df_even.mrc")
    assert meta.shape == (12, 32, 32) and meta.voxel_size == (24.0, 24.0, 24.0) and not meta.is_stack
    assert run("prepare", "t2t", "--output-dir", out, "--regime", "eoa", "--thickness", "24", *raw_args(raw)) == 0
    assert "next: cryocare denoise" in capsys.readouterr().out
    even, odd = out / "TS_01_t2t_eoa_even.mrc", out / "TS_01_t2t_eoa_odd.mrc"
    assert read_meta(odd).voxel_size == (12.0, 12.0, 12.0)
    assert run("denoise", "--even", even, "--odd", odd, "--output", tmp_path / "den.mrc", *TINY_TRAIN) == 0
    den, dmeta = read_volume(tmp_path / "den.mrc")
    assert den.shape == (24, 64, 64) and dmeta.voxel_size == (12.0, 12.0, 12.0) and np.isfinite(den).all()
    # the pair list is what 'cryocare batch' and find_pairs read
    assert (out / "TS_01_t2t_eoa_pairs.txt").read_text().splitlines()[1].split() == [
        "TS_01_t2t_eoa", "TS_01_t2t_eoa_even.mrc", "TS_01_t2t_eoa_odd.mrc"]


def test_p2p_regimes(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    for regime in ("df", "ip", "tap"):
        assert run("prepare", "p2p", "--output-dir", out, "--regime", regime, *raw_args(raw)) == 0
    n = read_meta(raw / "TS_01.mrc").shape[0]
    for name, views in (("tiltseries/TS_01_even", n), ("tiltseries/TS_01_firsthalf", n), ("TS_01_p2p_tap_odd", n - 1),
                        ("TS_01_p2p_tap_aligned", n)):
        meta = read_meta(out / f"{name}.mrc")
        assert meta.is_stack and meta.shape == (views, 64, 64) and meta.voxel_size[0] == 12.0


def test_p2p_then_reconstruct(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p2p"
    assert run("prepare", "p2p-reconstruct", "--output-dir", out, "--thickness", "24", *raw_args(raw),
               *TINY_TRAIN, "--ctf", "phaseflip") == 0
    assert "CTF phaseflip: underfocus 3.00-3.00 um over 9 views" in capsys.readouterr().err  # the restored tilts
    rec, meta = read_volume(out / "TS_01_p2p_rec.mrc")
    assert rec.shape == (24, 64, 64) and meta.voxel_size == (12.0, 12.0, 12.0) and np.isfinite(rec).all()
    assert read_meta(out / "TS_01_p2p_restored.mrc").is_stack
    assert (out / "TS_01_p2p_df_model" / "best.pt").is_file()


def test_tiltseries_motion_and_halves(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = read_meta(raw / "TS_01.mrc").shape[0]
    out = tmp_path / "ts"
    assert run("prepare", "tiltseries", "--output-dir", out, "--mdoc", raw / "TS_01.mdoc", "--stack",
               raw / "TS_01.mrc", "--movie-dir", tmp_path, "--exclude", "0,3", "--xf", raw / "TS_01.xf") == 0
    meta = read_meta(out / "tiltseries" / "TS_01_sum.mrc")
    assert meta.shape[0] == n - 2 and meta.voxel_size[0] == 12.0
    halves = [read_meta(out / "tiltseries" / f"TS_01_eoa_{h}.mrc").shape[0] for h in ("even", "odd")]
    assert sum(halves) == n - 2 and (out / "tiltseries" / "TS_01_eoa_odd.xf").is_file()
    movie = sorted((raw / "frames").glob("*.tif"))[0]
    assert run("prepare", "motion", movie, "--output", tmp_path / "mc" / "m", "--gain", raw / "gain.mrc",
               "--pixel-size", "12") == 0
    assert read_meta(tmp_path / "mc" / "m_even.mrc").voxel_size[0] == 12.0
    src = tmp_path / "halves"
    src.mkdir()
    for h in ("even", "odd"):
        shutil.copy(tmp_path / "mc" / f"m_{h}.mrc", src / f"img_{h}.mrc")
    capsys.readouterr()
    assert run("prepare", "halves", src, "--output", tmp_path / "pairs.txt") == 0
    assert "1 pair(s)" in capsys.readouterr().out and (tmp_path / "pairs.txt").is_file()


def test_errors_are_one_line(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack, meta = read_volume(raw / "TS_01.mrc")
    short = write_volume(tmp_path / "short.mrc", stack[:-2], meta)
    code = run("prepare", "tiltseries", "--output-dir", tmp_path / "o", "--mdoc", raw / "TS_01.mdoc", "--stack",
               short, "--movie-dir", tmp_path)
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "views but TS_01.mdoc describes" in err
    code = run("prepare", "t2t", "--output-dir", tmp_path / "o", "--mdoc", raw / "TS_01.mdoc", "--movie-dir",
               tmp_path, "--thickness", "8")
    err = capsys.readouterr().err.strip()
    assert code == 3 and "--movie-dir" in err and len(err.splitlines()) == 1
    assert run("prepare", "t2t", "--output-dir", tmp_path / "o", *raw_args(raw, "--exclude", "x-1"),
               "--thickness", "8") == 2


def test_t2t_ctf_phaseflip(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The simulator writes each tilt's defocus into the .mdoc (SerialEM sign: Defocus = -3 for 3 um under);
    --ctf phaseflip reads it and CTF-corrects the aligned views of both halves; bad combinations are one line."""
    mdoc = (raw / "TS_01.mdoc").read_text()
    assert mdoc.splitlines().count("Defocus = -3.0") == mdoc.count("[ZValue") == 9
    out = tmp_path / "prep"
    assert run("prepare", "t2t", "--output-dir", out, "--regime", "eoa", "--stack", raw / "TS_01.mrc",
               "--thickness", "24", *raw_args(raw), "--ctf", "phaseflip") == 0
    assert "CTF phaseflip: underfocus 3.00-3.00 um" in capsys.readouterr().err
    flipped = read_volume(out / "TS_01_t2t_eoa_even.mrc")[0]
    ctffind = tmp_path / "ctf.txt"
    ctffind.write_text("".join(f"{i + 1} 40000 40000 0 0 0 10\n" for i in range(9)))  # 4 um, one row per view
    assert run("prepare", "t2t", "--output-dir", out, "--regime", "eoa", "--stack", raw / "TS_01.mrc",
               "--thickness", "24", *raw_args(raw), "--ctf", "wiener", "--defocus-file", ctffind,
               "--overwrite") == 0
    assert "CTF wiener: underfocus 4.00-4.00 um" in capsys.readouterr().err
    wiener = read_volume(out / "TS_01_t2t_eoa_even.mrc")[0]
    assert flipped.shape == wiener.shape == (24, 64, 64) and np.isfinite(flipped).all()
    assert 0.3 < float(np.corrcoef(flipped.ravel(), wiener.ravel())[0, 1]) < 0.9999  # two corrections, one object
    for extra in (["--ctf", "phaseflip", "--defocus", "3", "--defocus-file", ctffind], ["--defocus-file", ctffind],
                  ["--ctf", "phaseflip", "--defocus", "-2"]):
        code = run("prepare", "t2t", "--output-dir", out, "--regime", "eoa", "--stack", raw / "TS_01.mrc",
                   "--thickness", "24", *raw_args(raw), "--overwrite", *extra)
        err = capsys.readouterr().err.strip()
        assert code != 0 and len(err.splitlines()) == 1 and ("defocus" in err.lower()), err
