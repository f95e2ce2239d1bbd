"""Weighted back-projection: amplitude, handedness, missing wedge, chunking, angular weights, files."""

from __future__ import annotations

import math
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryocare_torch.errors import DataError, OutputError
from cryocare_torch.io.imod import write_tlt, write_xf
from cryocare_torch.io.mrc import read_volume, write_volume
from cryocare_torch.tomo.align import apply_xf, invert_xf, make_xf
from cryocare_torch.tomo.backproject import (
    Backprojector,
    filter_rows,
    imod_pad_length,
    ramp_filter,
    reconstruct_file,
    taper_pad,
    weighted_backprojection,
)
from cryocare_torch.tomo.projector import project


def _ball(d: int, h: int, w: int, r: float, centre: tuple[float, float, float] | None = None) -> torch.Tensor:
    cz, cy, cx = centre if centre is not None else ((d - 1) / 2, (h - 1) / 2, (w - 1) / 2)
    z, y, x = torch.meshgrid(torch.arange(d) - cz, torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")
    return ((x**2 + y**2 + z**2) <= r**2).float()


def _core_mean(rec: torch.Tensor, ball_radius: float) -> float:
    """Mean of the reconstruction well inside a centred ball (away from the blurred edge)."""
    return float(rec[_ball(*rec.shape, ball_radius - 3) > 0].mean())


@pytest.fixture(scope="module")
def ball_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    vol = _ball(40, 21, 48, 12.0)
    angles = torch.arange(-90.0, 90.5, 1.0)
    return vol, angles, project(vol, angles, detector_width=72)


def test_radial_weighting_is_imods() -> None:
    """IMOD ``flib/tilt/tilt.f90`` for a row of nx = 200 pixels and ``RADIAL 0.35 0.035``, worked by hand.

    Padding (main program): ``npad = min(50, 2 * max(8, nx / 20)) = 20``; ``nprpad = niceframe(2 * ((200 + 20) / 2),
    2, 19) = 220`` (220 = 2^2 5 11). ``inputParameters``: ``irmax = 0.35`` truncates to 0, so
    ``irmax = 200 * 0.35 = 70``, ``ifall = 200 * 0.035 = 7``. ``RADWT``: ``stretch = 220 / 200 = 1.1``,
    ``irmax = nint(77.0) = 77``, ``ifall = nint(7.7) = 8``; weight ``0.2`` at I = 1, ``I - 1`` for I <= 77, then
    ``76 exp(-((I - 77) / 8)^2)``; the FFT frequency of index I is ``(I - 1) / 220`` cycles/pixel.
    """
    resp = ramp_filter(220, radial=(0.35, 0.035), nx=200)
    assert resp.shape == (111,)
    i = torch.arange(1, 112, dtype=torch.float64)
    expected = torch.where(i <= 77, i - 1, 76 * torch.exp(-(((i - 77) / 8) ** 2)))
    expected[0] = 0.2
    torch.testing.assert_close(resp, expected / 220, rtol=1e-12, atol=0)
    # IMOD's Gaussian is exp(-(d/sigma)^2): 8 indices past the cutoff it has fallen to 1/e, not exp(-1/2)
    assert float(resp[84] / resp[76]) == pytest.approx(math.exp(-1.0), rel=1e-9)
    # tilt's default (no RADIAL): irmax = nx / 2 + 1, no roll-off: the plain ramp to Nyquist
    plain = ramp_filter(220, radial=None, nx=200)
    torch.testing.assert_close(plain[1:], (i[1:] - 1) / 220, rtol=1e-12, atol=0)
    assert imod_pad_length(200) == 220 and imod_pad_length(1000) == 1050  # 1000 + 50 = 2 3 5^2 7


def test_rows_are_padded_with_tilts_taper_and_rays_off_the_detector_get_its_fill() -> None:
    # taperEndToStart: pad pixel ipad = 1..npad gets f * (mean of the first 3) + (1 - f) * (mean of the last 3),
    # f = ipad / (npad + 1)
    row = torch.arange(200, dtype=torch.float64)[None]
    padded = taper_pad(row, 220)
    f = torch.arange(1, 21, dtype=torch.float64) / 21
    torch.testing.assert_close(padded[0, 200:], f * 1.0 + (1 - f) * 198.0)
    # a constant row is scaled by the zero-frequency weight 0.2 / 220
    torch.testing.assert_close(filter_rows(torch.full((1, 200), 3.0, dtype=torch.float64)),
                               torch.full((1, 200), 3.0 * 0.2 / 220, dtype=torch.float64))
    # one view at 60 degrees through a slab 120 thick: voxels whose ray leaves the 200-pixel detector get
    # tilt's edgeFill = stack mean * zeroWeight (0.2 / 220), times the view's weight, whatever the edge holds
    bp = Backprojector([60.0], 200, 120, 200, angular_weights=False)
    rows = torch.zeros(1, 1, 200)
    rows[0, 0, :5] = 50.0  # a bright edge that replicate padding would smear over the off-detector rays
    rec = bp(rows, fill_mean=2.0)[:, 0]
    # voxel (z, x) = (119, 199): u = 99.5 + 99.5 cos 60 + 59.5 sin 60 = 200.8 > 199: off the detector
    assert 99.5 + 99.5 * 0.5 + 59.5 * math.sqrt(3) / 2 > 199
    assert float(rec[119, 199]) == pytest.approx(2.0 * 0.2 / 220 * float(bp.view_scale[0]), rel=1e-5)


def test_wbp_of_full_range_recovers_the_ball(ball_data) -> None:  # type: ignore[no-untyped-def]
    vol, angles, proj = ball_data
    for radial in (None, (0.35, 0.035)):
        rec = weighted_backprojection(proj, angles, 40, width=48, radial=radial)
        assert rec.shape == vol.shape
        corr = float(torch.corrcoef(torch.stack([rec.flatten(), vol.flatten()]))[0, 1])
        assert corr > 0.95
        assert _core_mean(rec, 12.0) == pytest.approx(1.0, abs=0.05)
        assert float(rec[vol == 0].mean()) == pytest.approx(0.0, abs=0.03)


def _same_to_float32_rounding(a: torch.Tensor, b: torch.Tensor) -> None:
    # The sparse kernel's summation order depends on how many rows a chunk holds (MKL vectorises across
    # them), so chunked and whole results agree to float32 rounding, not bit for bit on every CPU.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6 * float(a.abs().max()))


def test_y_chunked_equals_whole(ball_data) -> None:  # type: ignore[no-untyped-def]
    _, angles, proj = ball_data
    whole = weighted_backprojection(proj[::6], angles[::6], 40, width=48)
    _same_to_float32_rounding(whole, weighted_backprojection(proj[::6], angles[::6], 40, width=48, y_chunk=4))
    _same_to_float32_rounding(whole[:, 5:9], weighted_backprojection(proj[::6, 5:9], angles[::6], 40, width=48))


def test_large_operator_path_is_blocked_and_identical(ball_data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cryocare_torch.tomo import backproject

    _, angles, proj = ball_data
    whole = weighted_backprojection(proj[::9], angles[::9], 40, width=48)
    monkeypatch.setattr(backproject, "_CACHE_NNZ", 0)  # rebuild per chunk ...
    monkeypatch.setattr(backproject, "_BLOCK_NNZ", 5000)  # ... in many z-blocks
    bp = backproject.Backprojector(angles[::9], 72, 40, 48)
    assert len(bp.blocks) > 5 and all(mat is None for *_, mat in bp.blocks)
    _same_to_float32_rounding(whole, weighted_backprojection(proj[::9], angles[::9], 40, width=48, y_chunk=8))


def test_decimated_and_uneven_tilts_keep_the_amplitude(ball_data) -> None:  # type: ignore[no-untyped-def]
    _, angles, proj = ball_data
    full = _core_mean(weighted_backprojection(proj, angles, 40, width=48), 12.0)
    half = _core_mean(weighted_backprojection(proj[::2], angles[::2], 40, width=48), 12.0)
    assert half == pytest.approx(full, rel=0.02)
    # the even-numbered acquisitions of a dose-symmetric scheme (0, +3, -3, -6, +6, ...) are unevenly spaced
    order = [0.0]
    for k in range(1, 31):
        order += [3.0 * k, -3.0 * k] if k % 2 else [-3.0 * k, 3.0 * k]
    even = torch.tensor(order[::2])
    sub = proj[(even + 90).long()]
    rec = weighted_backprojection(sub, even, 40, width=48)
    assert _core_mean(rec, 12.0) == pytest.approx(full, rel=0.05)


@pytest.mark.parametrize("tilt_range", [(0.0, 60.0), (-60.0, 0.0), (-60.0, 60.0)])
def test_point_reconstructs_at_its_voxel(tilt_range: tuple[float, float]) -> None:
    vol = torch.zeros(32, 3, 48)
    vol[22, 1, 30] = 1.0
    angles = torch.arange(tilt_range[0], tilt_range[1] + 0.1, 2.0)
    rec = weighted_backprojection(project(vol, angles), angles, 32)
    assert torch.nonzero(rec == rec.max())[0].tolist() == [22, 1, 30]
    if tilt_range[0] == 0.0:  # back-projecting with the opposite angle sign puts it elsewhere
        wrong = weighted_backprojection(project(vol, angles), -angles, 32)
        assert torch.nonzero(wrong == wrong.max())[0].tolist() != [22, 1, 30]
        # a projector and back-projector both mirrored round-trip to the same voxel: this test cannot see that
        # mistake; test_angle_offset_rotates_the_section_as_imods_delang and tests/test_geometry.py do


def _peak_centroid(sec: torch.Tensor) -> tuple[float, float]:
    """``(x, z)`` centroid of the positive part within 4 voxels of the maximum of a ``(d, w)`` section."""
    z0, x0 = (int(v) for v in torch.nonzero(sec == sec.max())[0])
    zz, xx = torch.meshgrid(torch.arange(sec.shape[0]), torch.arange(sec.shape[1]), indexing="ij")
    m = sec.clamp(min=0) * (((zz - z0) ** 2 + (xx - x0) ** 2) <= 16)
    return float((m * xx).sum() / m.sum()), float((m * zz).sum() / m.sum())


def _rotate_by_delang(xr: float, zr: float, delta: float) -> tuple[float, float]:
    """Where IMOD's ``tilt`` puts a point ``(xr, zr)`` (from the centre, final tomogram) seen at angles ``theta``
    and reconstructed at ``theta + delta`` (tilt's OFFSET DELANG), derived from IMOD's code.

    ``flib/tilt/tilt.f90`` ``PROJECT``: output voxel ``(X, ZZ)`` (column and thickness row ``I`` from the
    slice centre) is summed from the projection at ``X cos(theta) - ZZ sin(theta)`` (``sinBeta = -sin``). The
    point reconstructs where all its rays meet: ``X' cos(t + d) - ZZ' sin(t + d) = X cos t - ZZ sin t`` for
    every ``t``; writing ``t = (t + d) - d`` gives ``X' = X cos d + ZZ sin d``, ``ZZ' = ZZ cos d - X sin d``.
    ``clip rotx`` (``trimvol -rx``; ``clip/clip_proc.c``) makes the final ``z = d - I`` (1-based): ``ZZ = -zr``.
    (Seen with row ``I`` upward this turns the section clockwise for ``d > 0``; ``autodoc/tilt.adoc`` says
    "DELANG positive rotates reconstructed sections anticlockwise", true with row ``I`` drawn downward.)
    """
    t = math.radians(delta)
    zz = -zr
    x_new = xr * math.cos(t) + zz * math.sin(t)
    zz_new = zz * math.cos(t) - xr * math.sin(t)
    return x_new, -zz_new


def test_angle_offset_rotates_the_section_as_imods_delang() -> None:
    d = w = 48
    centre = (d - 1) / 2
    xr, zr, delta = 10.0, 4.0, 20.0
    vol = _ball(d, 1, w, 2.0, centre=(centre + zr, 0.0, centre + xr))
    angles = torch.arange(-90.0, 90.0, 2.0)
    ex, ez = _rotate_by_delang(xr, zr, delta)
    assert (ex, ez) == pytest.approx((8.03, 7.18), abs=0.01)  # by hand: 10 cos 20 - 4 sin 20, 4 cos 20 + 10 sin 20

    def located(rec: torch.Tensor) -> tuple[float, float]:
        x, z = _peak_centroid(rec[:, 0])
        return x - centre, z - centre

    ours = located(weighted_backprojection(project(vol, angles), angles + delta, d))
    assert ours == pytest.approx((ex, ez), abs=0.3)
    # controls, each a named mistake that must move the point: both projector and back-projector mirrored in z
    # (a consistent handedness error, invisible to a projection/back-projection round trip) ...
    mirrored = weighted_backprojection(project(vol.flip(0), angles), angles + delta, d).flip(0)
    assert math.dist(located(mirrored), (ex, ez)) > 3.0
    # ... and the back-projector alone using the opposite angle sign
    flipped = weighted_backprojection(project(vol, angles), -(angles + delta), d)
    assert math.dist(located(flipped), (ex, ez)) > 3.0


def _spread_z_over_x(img: torch.Tensor) -> float:
    """Ratio of the RMS extents along z and x of the part above 20% of the maximum."""
    m = img * (img > 0.2 * img.max())
    z = torch.arange(img.shape[0], dtype=torch.float32) - (img.shape[0] - 1) / 2
    x = torch.arange(img.shape[1], dtype=torch.float32) - (img.shape[1] - 1) / 2
    return float(((m.sum(1) * z**2).sum() / (m.sum(0) * x**2).sum()).sqrt())


def test_missing_wedge_elongates_along_z() -> None:
    vol = _ball(48, 1, 48, 5.0)
    wedge = torch.arange(-60.0, 60.5, 2.0)
    full = torch.arange(-90.0, 90.5, 2.0)
    rec_wedge = weighted_backprojection(project(vol, wedge), wedge, 48)[:, 0]
    rec_full = weighted_backprojection(project(vol, full), full, 48)[:, 0]
    # theory for a +/-60 wedge: sqrt((a + sin a cos a) / (a - sin a cos a)) = 1.55 with a = 60 degrees
    assert _spread_z_over_x(rec_wedge) > 1.3
    assert _spread_z_over_x(rec_full) == pytest.approx(1.0, abs=0.05)


def test_plain_backprojection_and_bad_inputs(ball_data) -> None:  # type: ignore[no-untyped-def]
    vol, angles, proj = ball_data
    plain = weighted_backprojection(proj[::10], angles[::10], 40, width=48, weighting="none")
    assert float(plain[vol > 0].mean()) > float(plain[vol == 0].mean()) > 0
    with pytest.raises(DataError, match="one angle per view"):
        weighted_backprojection(proj, angles[:-1], 40)


def test_reconstruct_file(tmp_path: Path) -> None:
    vol = _ball(24, 20, 40, 7.0, centre=(11.5, 9.5, 22.0))
    angles = torch.arange(-60.0, 60.5, 4.0)
    aligned = project(vol, angles)
    xf = torch.stack([make_xf(0.2 * float(a), (0.05 * float(a), 1.0)) for a in angles])
    stack = write_volume(tmp_path / "ts.mrc", apply_xf(aligned, invert_xf(xf)).numpy(), voxel_size=4.0)
    ali = write_volume(tmp_path / "ts.ali", aligned.numpy(), voxel_size=4.0)
    tlt = write_tlt(tmp_path / "ts.tlt", angles.numpy())
    xf_path = write_xf(tmp_path / "ts.xf", xf.numpy())
    ref = weighted_backprojection(aligned, angles, 24)

    out = reconstruct_file(ali, tlt, tmp_path / "rec.mrc", 24, progress=False, y_chunk=3, device="cpu")
    assert mrcfile.validate(str(out))
    rec, meta = read_volume(out)
    assert rec.shape == (24, 20, 40) and meta.voxel_size == pytest.approx((4.0, 4.0, 4.0))
    _same_to_float32_rounding(torch.from_numpy(rec), ref)  # the file path chunks by 3 rows

    out = reconstruct_file(stack, angles, tmp_path / "rec_xf.mrc", 24, xf=xf_path, progress=False)
    rec_xf, _ = read_volume(out)
    assert np.corrcoef(rec_xf.ravel(), ref.numpy().ravel())[0, 1] > 0.98

    out = reconstruct_file(stack, tlt, tmp_path / "rec_bin2.mrc", 12, xf=xf, binning=2, progress=False)
    assert mrcfile.validate(str(out))
    rec2, meta2 = read_volume(out)
    assert rec2.shape == (12, 10, 20) and meta2.voxel_size == pytest.approx((8.0, 8.0, 8.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ts.mrc", "ts.ali", "ts.tlt", "ts.xf", "rec.mrc", "rec_xf.mrc", "rec_bin2.mrc"])  # no temporary left

    with pytest.raises(OutputError):
        reconstruct_file(ali, tlt, tmp_path / "rec.mrc", 24, progress=False)
    with pytest.raises(DataError, match="one angle per view"):
        reconstruct_file(ali, angles[1:], tmp_path / "other.mrc", 24, progress=False)
