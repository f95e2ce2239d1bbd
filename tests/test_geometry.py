"""Tilt geometry (IMOD convention), the forward projector and IMOD .xf transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryocare_torch.errors import DataError
from cryocare_torch.tomo.align import apply_xf, bin_images, compose_xf, invert_xf, make_xf
from cryocare_torch.tomo.geometry import angular_intervals, as_angles, detector_x, rotation_y
from cryocare_torch.tomo.projector import Projector, project


def _imod_u(x: float, z: float, theta: float, w: int, d: int, det: int) -> float:
    """Detector column (0-based) of volume voxel ``(x, z)`` (0-based, final tomogram), written in IMOD's terms.

    ``flib/tilt/tilt.f90``, routine ``PROJECT``: output pixel ``j`` (1-based column) of row ``I`` (1-based,
    the thickness axis of tilt's X-Z output slice) takes the projection at ``XPROJ8 = zPART + X * CBETA`` with
    ``X = j - xcenOut``, ``zPART = ZZ * SBETA + xcenIn``, ``ZZ = I - ycenOut``; the trig table sets
    ``cosBeta = cos(theta)``, ``sinBeta = -sin(theta)``; centres (1-based) ``xcenIn = nxfull / 2. + 0.5``,
    ``xcenOut = iwidth / 2 + 0.5``, ``ycenOut = ithickBP / 2 + 0.5`` (integer division). ``clip rotx`` (what
    ``trimvol -rx`` runs; ``clip/clip_proc.c``) writes output section ``k`` (0-based) from input line
    ``nz - 1 - k``: the final tomogram's ``z`` is tilt's ``I = d - z`` (1-based). Sizes here are even, where
    the integer divisions are exact (for odd output sizes IMOD's centre is half a voxel off ours: see
    ``prepare/geometry.py``).
    """
    assert w % 2 == 0 and d % 2 == 0
    j, i_row = x + 1, d - z
    xcen_in, xcen_out, ycen_out = det / 2 + 0.5, w // 2 + 0.5, d // 2 + 0.5
    cos_b, sin_b = math.cos(math.radians(theta)), -math.sin(math.radians(theta))
    xproj = (i_row - ycen_out) * sin_b + xcen_in + (j - xcen_out) * cos_b
    return xproj - 1


def _point(d: int, h: int, w: int, z: int, y: int, x: int) -> torch.Tensor:
    v = torch.zeros(d, h, w)
    v[z, y, x] = 1.0
    return v


@pytest.mark.parametrize("theta", [0.0, 90.0, -90.0, 30.0, -30.0])
def test_point_lands_where_imod_puts_it(theta: float) -> None:
    # width 48, thickness 32, detector 49: voxel (x, z) = (24, 26) lands at u = 24 + 0.5 cos + 10.5 sin
    d, h, w, det = 32, 3, 48, 49
    u = _imod_u(24, 26, theta, w, d, det)
    p = project(_point(d, h, w, z=26, y=1, x=24), [theta], detector_width=det)[0]
    row = p[1]
    centroid = float((row * torch.arange(det)).sum() / row.sum())
    # exact where the ray meets the voxel's axis at 0 or 90 degrees; a single voxel's linear-interpolation
    # footprint is sampled unevenly at other angles (sub-pixel accuracy is checked on a blob below)
    assert centroid == pytest.approx(u, abs=1e-4 if theta % 90 == 0 else 0.15)
    assert float(p[0].abs().max()) == 0.0 and float(p[2].abs().max()) == 0.0  # rows are independent


@pytest.mark.parametrize("theta", [30.0, -30.0, 12.5, -52.0, 75.0])
def test_blob_centroid_matches_imod_subpixel(theta: float) -> None:
    d, w, det = 32, 48, 64
    zz, xx = torch.meshgrid(torch.arange(d, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    blob = torch.exp(-((zz - 9.0) ** 2 + (xx - 31.0) ** 2) / (2 * 1.5**2))[:, None, :]  # centre z=9, x=31
    row = project(blob, [theta], detector_width=det)[0, 0]
    centroid = float((row * torch.arange(det)).sum() / row.sum())
    assert centroid == pytest.approx(_imod_u(31, 9, theta, w, d, det), abs=0.02)
    assert centroid == pytest.approx(float(detector_x(31, 9, theta, width=w, thickness=d, detector_width=det)),
                                     abs=0.02)
    assert float(row.sum()) == pytest.approx(float(blob.sum()), rel=5e-3)  # mass is conserved


def test_rotation_y_gives_the_detector_coordinate() -> None:
    p = torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64)  # (x, y, z) from the centre
    for theta in (-60.0, 30.0):
        u = (rotation_y(theta) @ p)[0]
        t = math.radians(theta)
        assert float(u) == pytest.approx(3 * math.cos(t) + 5 * math.sin(t))


def test_slab_projects_to_its_path_length() -> None:
    d, h, w = 10, 2, 64
    slab = torch.ones(d, h, w)
    p = project(slab, [0.0, 30.0, -45.0, 60.0])
    mid = p[:, :, 24:40]
    assert torch.allclose(mid[0], torch.full_like(mid[0], float(d)))
    for i, theta in enumerate((0.0, 30.0, -45.0, 60.0)):  # Joseph sampling of the slab's edges: within 2%
        assert torch.allclose(mid[i], torch.full_like(mid[i], d / math.cos(math.radians(theta))), rtol=0.02)


def test_projector_chunks_equal_whole_and_reusable() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.rand(12, 9, 20, generator=g)
    angles = torch.linspace(-70, 70, 9)
    whole = project(v, angles, detector_width=26)
    assert whole.shape == (9, 9, 26)
    # chunks change the sparse kernel's summation order: equal to float32 rounding
    tol = {"rtol": 0.0, "atol": 1e-6 * float(whole.abs().max())}
    torch.testing.assert_close(whole, project(v, angles, detector_width=26, y_chunk=2), **tol)
    proj = Projector(tuple(v.shape), angles, detector_width=26)
    torch.testing.assert_close(whole, proj(v * 1.0, y_chunk=4), **tol)


def test_angular_intervals() -> None:
    even = torch.arange(-60.0, 61.0, 3.0)
    iv = angular_intervals(even)
    assert torch.allclose(iv, torch.full_like(iv, math.radians(3.0)))
    assert torch.allclose(angular_intervals(even[::2]), torch.full((21,), math.radians(6.0), dtype=torch.float64))
    full = angular_intervals(torch.arange(-90.0, 90.5, 1.0))
    assert float(full.sum()) == pytest.approx(math.pi, rel=0.01)
    shuffled = torch.tensor([10.0, -20.0, 0.0, 40.0])  # input order is kept
    assert torch.allclose(angular_intervals(shuffled), torch.deg2rad(torch.tensor([20.0, 20.0, 15.0, 30.0])).double())


def test_angle_validation() -> None:
    with pytest.raises(DataError, match="one angle per view"):
        as_angles([0.0, 3.0], n_views=3)
    with pytest.raises(DataError, match="NaN"):
        as_angles([0.0, float("nan")])
    with pytest.raises(DataError, match="radians"):
        as_angles([0.0, 200.0])


def _smooth_images(n: int, h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    rng = np.random.default_rng(1)
    out = torch.zeros(n, h, w)
    for i in range(n):
        for _ in range(6):
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            out[i] += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 5.0**2))
    return out


def test_xf_roundtrip_restores_aligned_views() -> None:
    aligned = _smooth_images(3, 72, 80)
    true_xf = torch.stack([make_xf(12.0, (3.5, -2.25)), make_xf(-85.0, (1.0, 2.0), 1.02), make_xf(0.0, (0.5, 0.0))])
    raw = apply_xf(aligned, invert_xf(true_xf))
    assert (raw - aligned).abs().max() > 0.1  # the raw views really are misaligned
    back = apply_xf(raw, true_xf)
    err = (back - aligned)[:, 20:-20, 20:-20].abs().max()
    assert float(err) < 0.01 * float(aligned.max())


def _newstack_position(xf: list[float], x: float, y: float, nx: int, ny: int) -> tuple[float, float]:
    """Where ``newstack -xform`` puts the raw pixel ``(x, y)`` (0-based indices), from IMOD's own formula.

    IMOD ``libcfshr/cubinterp.c`` (doc comment): ``Xo = a11 (Xi - Xc) + a12 (Yi - Yc) + nxb/2 + xt`` (and the same
    for Y), "where Xi is a coordinate running from 0 at the left edge of the first pixel to nxa at the right
    edge of the last pixel"; ``flib/image/newstack.f90`` calls it with ``Xc = nx / 2.``, ``Yc = ny / 2.`` and
    ``xt, yt`` = the .xf line's DX, DY (same-size output). Pixel index ``i`` spans ``[i, i + 1]`` in those
    coordinates, so its centre is at ``Xi = i + 0.5``.
    """
    a11, a12, a21, a22, dx, dy = xf
    xi, yi = x + 0.5, y + 0.5
    xo = a11 * (xi - nx / 2) + a12 * (yi - ny / 2) + nx / 2 + dx
    yo = a21 * (xi - nx / 2) + a22 * (yi - ny / 2) + ny / 2 + dy
    return xo - 0.5, yo - 0.5


@pytest.mark.parametrize("shape", [(64, 80), (63, 81)])
@pytest.mark.parametrize("xf_line", [
    [0.0698, -0.9976, 0.9976, 0.0698, 1.5, -2.0],  # an etomo-like ~86 degree rotation with a shift
    [-0.0523, 1.0188, -1.0188, -0.0523, 0.0, 0.0],  # -93 degrees, magnification 1.02
    [1.0, 0.0, 0.0, 1.0, -3.25, 0.75],  # pure shift
])
def test_xf_moves_a_point_where_newstack_puts_it(shape: tuple[int, int], xf_line: list[float]) -> None:
    ny, nx = shape
    x0, y0 = 45.3, 27.6  # a sub-pixel Gaussian blob in the raw image
    yy, xx = torch.meshgrid(torch.arange(ny, dtype=torch.float64), torch.arange(nx, dtype=torch.float64),
                            indexing="ij")
    raw = torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0**2))
    a11, a12, a21, a22, dx, dy = xf_line
    # bilinear: its weights reproduce a linear function, so the centroid is unbiased (cubic kernels with
    # a = -0.75 (torch) or -1 (IMOD) shift a blob's centroid by up to ~0.04 px at fractional offsets)
    out = apply_xf(raw, torch.tensor([[a11, a12, dx], [a21, a22, dy]]), fill=0.0, mode="bilinear")
    mass = out.sum()
    got = (float((out * xx).sum() / mass), float((out * yy).sum() / mass))
    expected = _newstack_position(xf_line, x0, y0, nx, ny)
    assert got == pytest.approx(expected, abs=0.01)
    # the mistake this test names: rotating about nx/2 (0-based) moves the point by (I - A)(0.5, 0.5)
    wrong = (expected[0] + 0.5 * (1 - a11 - a12), expected[1] + 0.5 * (1 - a21 - a22))
    if math.hypot(wrong[0] - expected[0], wrong[1] - expected[1]) > 0.1:
        assert math.hypot(got[0] - wrong[0], got[1] - wrong[1]) > 0.1


def test_xf_algebra() -> None:
    a = torch.stack([make_xf(17.0, (2.0, -1.0), 1.1), make_xf(-3.0, (0.0, 4.0))])
    b = torch.stack([make_xf(-40.0, (1.0, 1.0)), make_xf(5.0, (-2.0, 0.5), 0.9)])
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(compose_xf(a, invert_xf(a)), eye.expand(2, 2, 3), atol=1e-12)
    p = torch.tensor([3.0, -7.0, 1.0], dtype=torch.float64)
    ab = compose_xf(a, b)
    for i in range(2):  # a first, then b
        step = b[i] @ torch.cat([a[i] @ p, torch.ones(1, dtype=torch.float64)])
        assert torch.allclose(ab[i] @ p, step)


def test_bin_images() -> None:
    img = torch.arange(30.0).reshape(1, 5, 6)
    out = bin_images(img, 2)
    assert out.shape == (1, 2, 3)
    assert float(out[0, 0, 0]) == pytest.approx((0 + 1 + 6 + 7) / 4)
