"""Hot/dead pixels and gain orientation found from the movie itself (prepare.defects), and the detector model.

Expected values come from the construction of each movie (where the defects were put, how the gain was
stored), not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryocare_torch.cli.main import main
from cryocare_torch.io.movie import orient_gain
from cryocare_torch.io.mrc import VolumeMeta, write_volume
from cryocare_torch.prepare.defects import (
    ORIENTATIONS,
    check_gain_orientation,
    fill_defect_pixels,
    find_defect_pixels,
    gain_orientation_scores,
)
from cryocare_torch.simulate.detector import Detector


def _specimen(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.fft.rfft2(torch.randn(n, n, generator=g))
    fy, fx = torch.fft.fftfreq(n)[:, None], torch.fft.rfftfreq(n)[None]
    x = torch.fft.irfft2(x * torch.exp(-2 * (np.pi * 2.0) ** 2 * (fy**2 + fx**2)), s=(n, n))
    return (1 + 0.3 * (x - x.mean()) / x.std()).clamp(min=0)  # contrast 0.3: features must not be flagged


def test_hot_and_dead_pixels_found_and_replaced() -> None:
    det = Detector(mtf=True, hot_fraction=0.002, hot_counts=10.0, dead_fraction=0.001, seed=3)
    lam = 3.0 * _specimen(128, 1).expand(20, -1, -1)  # 60 e-/px over 20 frames
    frames = det.count(lam, torch.Generator().manual_seed(0))
    truth = det.defects((128, 128))
    assert 20 < int(truth.sum()) < 80
    found = find_defect_pixels(frames)
    # a hot pixel at +10 counts/frame adds 200 to a total of ~60 +- 8 (Poisson) +- 18 (contrast): found;
    # no specimen pixel is flagged
    assert bool(found.mask[truth].all()) and int((found.mask & ~truth).sum()) == 0
    assert found.n_hot + found.n_dead == int(truth.sum())
    filled = fill_defect_pixels(frames, found.mask)
    assert torch.equal(filled[:, ~found.mask], frames[:, ~found.mask].float())
    total = filled.sum(0)
    assert float((total[truth] - lam.sum(0)[truth]).abs().mean()) < 20  # back to the neighbours' level


def test_pure_poisson_flat_field_has_no_defects() -> None:
    frames = torch.poisson(torch.full((10, 256, 256), 0.5), generator=torch.Generator().manual_seed(1))
    assert int(find_defect_pixels(frames).mask.sum()) == 0  # 65k pixels, 8-sigma threshold


def test_rotated_and_flipped_gain_found() -> None:
    det = Detector(mtf=False, gain_sd=0.05, seed=7)
    lam = 2.0 * _specimen(96, 2).expand(30, -1, -1)
    raw = det.count(lam, torch.Generator().manual_seed(0)).sum(0).numpy()
    for flip, k in (("none", 1), ("x", 0), ("y", 3)):
        stored = det.gain_reference((96, 96), rotation_k=k, flip=flip)
        scores = gain_orientation_scores(raw, stored)
        assert len(scores) == len(ORIENTATIONS)
        best = min(scores, key=scores.__getitem__)
        # the orientation that restores the detector's map, whatever name it has among the 8
        assert np.array_equal(orient_gain(stored, flip=best[0], rotation_k=best[1]),
                              orient_gain(stored, flip=flip, rotation_k=k))  # type: ignore[arg-type]
        assert check_gain_orientation(raw, stored, flip, k) == ""
        wrong = check_gain_orientation(raw, stored, "none", (k + 2) % 4)
        assert wrong.startswith("warning: movie: the gain orientation given (flip none, rotation ")
        assert "rougher than flip" in wrong


def test_detector_mtf_is_pixel_sinc() -> None:
    # a cosine at 1/4 cycle per pixel along x keeps sinc(1/4) = 0.9003 of its amplitude
    n = 64
    x = torch.arange(n, dtype=torch.float32)
    lam = (100.0 + 50.0 * torch.cos(2 * np.pi * x / 4))[None].expand(n, n)[None]
    counts = Detector(mtf=True).count(lam.expand(400, -1, -1), torch.Generator().manual_seed(0)).mean(0)
    amp = float(torch.fft.rfft(counts.mean(0))[n // 4].abs()) * 2 / n
    assert abs(amp / 50.0 - np.sinc(0.25)) < 0.01


def test_cli_warns_about_wrong_gain_orientation_and_hot_pixels(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    det = Detector(mtf=True, gain_sd=0.05, hot_fraction=0.003, hot_counts=10.0, seed=4)
    raw = det.count(3.0 * _specimen(96, 5).expand(12, -1, -1), torch.Generator().manual_seed(1))
    movie = write_volume(tmp_path / "movie.mrc", raw.numpy().astype(np.float32),
                         VolumeMeta(shape=(12, 96, 96), voxel_size=(8.0,) * 3, is_stack=True))
    gain = write_volume(tmp_path / "gain.mrc", det.gain_reference((96, 96), rotation_k=1), voxel_size=8.0)
    assert main(["prepare", "motion", str(movie), "--output", str(tmp_path / "a"), "--gain", str(gain)]) == 0
    err = capsys.readouterr().err
    assert "warning: movie.mrc: the gain orientation given (flip none, rotation 0)" in err
    assert "hot and 0 dead pixels" in err  # 0.3% of the pixels: worth a warning
    assert main(["prepare", "motion", str(movie), "--output", str(tmp_path / "b"), "--gain", str(gain),
                 "--gain-rotation", "1"]) == 0
    assert "gain orientation" not in capsys.readouterr().err
    rows = (tmp_path / "b_shifts.csv").read_text().splitlines()
    assert rows[0] == "frame,dy_px,dx_px,group_size,peak_z,error_px,reliable" and len(rows) == 13
    # --defect-z far above any pixel: no defects found; --error-fraction tiny: no drift estimate is good enough,
    # so the movie is left unshifted (every frame's reliable flag 0)
    assert main(["prepare", "motion", str(movie), "--output", str(tmp_path / "c"), "--gain", str(gain),
                 "--gain-rotation", "1", "--defect-z", "1e6", "--error-fraction", "1e-6"]) == 0
    err = capsys.readouterr().err
    assert "hot and" not in err and "unshifted" in err
    rows = (tmp_path / "c_shifts.csv").read_text().splitlines()
    assert [r.rsplit(",", 1)[1] for r in rows[1:]] == ["0"] * 12


def test_thin_bright_line_and_filled_border_are_not_defects() -> None:
    # a 1-pixel bright filament (3x the background) ends at a frame border filled with one value (no counts):
    # each line pixel stands far above its neighbours' median, but not above the line pixels beside it
    lam = torch.full((8, 48, 48), 20.0)
    lam[:, 30, :] = 60.0
    frames = torch.poisson(lam, generator=torch.Generator().manual_seed(4))
    frames[:, 31:] = 20.0  # the filled border, right below the line
    found = find_defect_pixels(frames)
    assert int(found.mask.sum()) == 0
    frames[3, 10, 10] += 400.0  # one real hot pixel is still found
    assert torch.nonzero(find_defect_pixels(frames).mask).tolist() == [[10, 10]]
