"""Halves that cannot be a Noise2Noise pair are refused (or warned about) before any work, through the CLI too.

Every pair is built here from a smooth random structure plus white noise, with the property each case names
(independent noise, the same noise, the full reconstruction and a half, two structures, a dead half), so the
expected verdict follows from how the pair was made, not from the check's code.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryocare_torch.errors import DataError
from cryocare_torch.io.halves import check_pair_compatible
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.io.pair_checks import CROP, check_pair_content

SHAPE = (40, 72, 72)


def _structure(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = gaussian_filter(rng.normal(size=shape), 2.5)
    return (s / s.std()).astype(np.float32)


def _noise(seed: int, shape: tuple[int, ...] = SHAPE, level: float = 2.0) -> np.ndarray:
    return (level * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _pair(tmp_path: Path, even: np.ndarray, odd: np.ndarray) -> tuple[Path, Path]:
    return (write_volume(tmp_path / "t_even.mrc", even, voxel_size=8.0),
            write_volume(tmp_path / "t_odd.mrc", odd, voxel_size=8.0))


def test_good_pair_passes_without_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = _structure(1)
    e, o = _pair(tmp_path, s + _noise(2), s + _noise(3))
    with caplog.at_level(logging.WARNING, logger="cryocare_torch.io.pairs"):
        ev = check_pair_content(e, o)
        check_pair_compatible(e, o)
    assert ev is not None and abs(ev.outer_fsc) < 0.1 and ev.low_fsc > 0.5
    assert "warning" not in caplog.text


def test_dead_half_refused_naming_it(tmp_path: Path) -> None:
    s = _structure(1)
    e, o = _pair(tmp_path, s + _noise(2), np.zeros(SHAPE, np.float32))
    with pytest.raises(DataError, match="no variance") as err:
        check_pair_content(e, o)
    assert str(o) in str(err.value) and str(e) not in str(err.value)


def test_identical_halves_refused(tmp_path: Path) -> None:
    v = _structure(1) + _noise(2)
    e, o = _pair(tmp_path, v, v.copy())
    with pytest.raises(DataError, match="is identical to"):
        check_pair_content(e, o)


def test_shared_noise_refused_with_its_figure(tmp_path: Path) -> None:
    s, n = _structure(1), _noise(2)
    e, o = _pair(tmp_path, s + n, s + n + 0.1 * _noise(3))  # the same noise, barely perturbed
    with pytest.raises(DataError, match=r"share their noise: correlation 0\.99 over the outer shells"):
        check_pair_content(e, o)


def test_full_and_half_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s, n1, n2 = _structure(1), _noise(2), _noise(3)
    e, o = _pair(tmp_path, s + n1, s + (n1 + n2) / 2)  # half 1 and the average of both: noise half shared
    with caplog.at_level(logging.WARNING, logger="cryocare_torch.io.pairs"):
        ev = check_pair_content(e, o)
    assert ev is not None and ev.outer_fsc == pytest.approx(1 / np.sqrt(2), abs=0.05)
    assert "warning:" in caplog.text and "may share part of their noise" in caplog.text


@pytest.mark.parametrize(("sign", "what"), [(1.0, "not the same object"), (-1.0, "opposite contrast")])
def test_two_objects_or_inverted_contrast_refused(tmp_path: Path, sign: float, what: str) -> None:
    other = _structure(9) if sign > 0 else -_structure(1)
    e, o = _pair(tmp_path, _structure(1) + _noise(2), other + _noise(3))
    with pytest.raises(DataError, match=what):
        check_pair_content(e, o)


def test_large_volume_is_only_sampled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A half larger than the crop is judged from a central crop: memory does not grow with the file."""
    shape = (CROP + 40, CROP + 60, CROP + 60)
    s = _structure(4, shape)
    e, o = _pair(tmp_path, s + _noise(5, shape), s + _noise(6, shape))
    seen: list[tuple[int, ...]] = []
    import cryocare_torch.io.pair_checks as pc

    real = pc.band_correlations
    monkeypatch.setattr(pc, "band_correlations", lambda a, b, nd: seen.append(a.shape) or real(a, b, nd))
    assert check_pair_content(e, o) is not None
    assert seen == [(CROP, CROP, CROP)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cryocare_torch.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("case", ["dead", "identical", "two_objects"])
def test_denoise_refuses_in_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    s = _structure(1)
    good = s + _noise(2)
    odd = {"dead": np.zeros(SHAPE, np.float32), "identical": good, "two_objects": _structure(9) + _noise(3)}[case]
    e, o = _pair(tmp_path, good, odd)
    out = tmp_path / "out"
    proc = _cli("denoise", "--even", str(e), "--odd", str(o), "--output", str(out / "r.mrc"), "--max-minutes",
                "0.1")
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryocare: error:") and str(o) in lines[0]
    assert "Traceback" not in proc.stderr and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t_even.mrc", "t_odd.mrc"]
