"""A specimen read from a volume file (``cryocare simulate --phantom``): placement, scaling and bad input.

Expected values are written out by hand or built with numpy's own symmetric padding, not with the module's
``fit_axis``."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryocare_torch.io.mrc import write_volume
from cryocare_torch.simulate.file_phantom import fit_axis, phantom_potential


def test_fit_axis_crops_the_centre_and_mirrors_at_both_ends() -> None:
    assert fit_axis(np.arange(10), 0, 4).tolist() == [3, 4, 5, 6]
    assert fit_axis(np.arange(3), 0, 7).tolist() == [1, 0, 0, 1, 2, 2, 1]  # half-sample mirror, by hand
    a = np.arange(20 * 3).reshape(20, 3)
    assert np.array_equal(fit_axis(a, 0, 32), np.pad(a, ((6, 6), (0, 0)), mode="symmetric"))
    assert np.array_equal(fit_axis(a, 0, 45), np.pad(a, ((12, 13), (0, 0)), mode="symmetric"))


def test_potential_is_ice_plus_the_standardised_volume() -> None:
    vol = np.array([0.0, 0.0, 0.0, 3.0], dtype=np.float32).reshape(1, 1, 4)
    ice = torch.ones(1, 1, 4)
    out = phantom_potential(vol, ice, ice_potential=4.5, contrast_v=1.0)
    # median 0, std sqrt(((3 * 0.75**2) + 2.25**2) / 4) = 1.29904
    assert out.flatten().tolist() == pytest.approx([4.5, 4.5, 4.5, 4.5 + 3 / 1.29904], abs=1e-4)
    inv = phantom_potential(vol, ice * 0.5, ice_potential=4.5, contrast_v=1.0, invert=True)
    # inverted: [0, 0, 0, -3], median 0, same std; times the ice fraction 0.5
    assert inv.flatten().tolist() == pytest.approx([2.25, 2.25, 2.25, 0.5 * (4.5 - 3 / 1.29904)], abs=1e-4)
    # twice the contrast would take the last voxel to 4.5 - 4.62 V: below vacuum, so clipped to 0
    assert phantom_potential(vol, ice, ice_potential=4.5, contrast_v=2.0, invert=True)[0, 0, 3] == 0.0


def test_simulate_from_a_phantom_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[None, :, None], (16, 20, 50)).copy()  # rises along y
    src = write_volume(tmp_path / "phantom.mrc", ramp, voxel_size=8.0)
    before = src.read_bytes()
    proc = cli("simulate", str(tmp_path / "sim"), "--shape", "16", "32", "32", "--phantom", str(src), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert src.read_bytes() == before  # the input is never modified
    truth = mrcfile.read(tmp_path / "sim" / "truth_density.mrc")
    # y: 20 -> 32 by mirroring 6 rows at each end; constant in z and x, so the statistics are the column's
    col = np.pad(np.arange(20, dtype=np.float64), (6, 6), mode="symmetric")
    expected = 4.5 + (col - np.median(col)) / col.std()
    mid = truth[8]  # the slab's centre (12.8 voxels of ice in 16): ice fraction 1 to 1e-4
    assert np.allclose(mid, expected[:, None], atol=2e-3), np.abs(mid - expected[:, None]).max()
    assert truth[0].mean() < 0.3 * truth[8].mean() and truth[-1].mean() < 0.3 * truth[8].mean()  # slab edges
    labels = mrcfile.read(tmp_path / "sim" / "labels.mrc")
    assert set(np.unique(labels).tolist()) <= {0, 5}  # background and ice only: no generated objects
    assert len((tmp_path / "sim" / "complexes.csv").read_text().strip().splitlines()) <= 1  # header at most


def test_a_2d_phantom_is_refused_in_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    flat = write_volume(tmp_path / "flat.mrc", np.zeros((1, 32, 32), np.float32) + np.arange(32.0, dtype=np.float32),
                        voxel_size=8.0)
    proc = cli("simulate", str(tmp_path / "sim"), "--shape", "16", "32", "32", "--phantom", str(flat))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "flat.mrc" in lines[0] and "3D" in lines[0], proc.stderr


def test_phantom_axes_that_are_no_permutation_are_refused_in_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    vol = write_volume(tmp_path / "v.mrc", np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8), voxel_size=8.0)
    proc = cli("simulate", str(tmp_path / "sim"), "--shape", "16", "32", "32", "--phantom", str(vol),
               "--phantom-axes", "0", "0", "1")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "phantom_axes" in lines[0] and "permutation" in lines[0], proc.stderr
    assert not (tmp_path / "sim" / "object.mrc").exists()
