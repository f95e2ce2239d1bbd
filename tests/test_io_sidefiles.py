"""IMOD, AreTomo, SerialEM and RELION side files: synthetic round trips, property tests, malformed input."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import mdocfile
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryocare_torch.errors import InputFileError
from cryocare_torch.io.aretomo import aln_to_xf, read_aln
from cryocare_torch.io.imod import (
    check_count,
    parse_exclude_list,
    read_com,
    read_tilt_com,
    read_tlt,
    read_xf,
    read_xtilt,
    write_tlt,
    write_xf,
)
from cryocare_torch.io.mdoc import read_mdoc, write_mdoc
from cryocare_torch.io.pairs import read_pair_list
from cryocare_torch.io.star import read_tomograms_star

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
angles_st = st.lists(st.floats(-90, 90, allow_nan=False), min_size=1, max_size=60)


# ---------------------------------------------------------------- IMOD
@FAST
@given(angles=angles_st)
def test_tlt_round_trip(angles: list[float]) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = write_tlt(Path(d) / "a.tlt", angles)
        np.testing.assert_allclose(read_tlt(p), angles, atol=5e-5)


@FAST
@given(xf=st.lists(st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 6), min_size=1, max_size=40))
def test_xf_round_trip(xf: list[tuple[float, ...]]) -> None:
    arr = np.array([[[a, b, dx], [c, e, dy]] for a, b, c, e, dx, dy in xf], dtype=np.float64)
    arr[:, 0, 0] += 2e4  # keep the 2x2 part invertible
    arr[:, 1, 1] += 2e4
    with tempfile.TemporaryDirectory() as d:
        back = read_xf(write_xf(Path(d) / "a.xf", arr))
    np.testing.assert_allclose(back[:, :, :2], arr[:, :, :2], atol=6e-8)
    np.testing.assert_allclose(back[:, :, 2], arr[:, :, 2], atol=6e-5)


def test_xf_row_maps_to_matrix(tmp_path: Path) -> None:
    p = tmp_path / "r.xf"
    p.write_text("   0.9   -0.1    0.2    0.8    5.5   -6.5\n")
    xf = read_xf(p)
    assert xf.shape == (1, 2, 3)
    np.testing.assert_array_equal(xf[0], [[0.9, -0.1, 5.5], [0.2, 0.8, -6.5]])
    # X' = A11 X + A12 Y + DX for the point (1, 2)
    np.testing.assert_allclose(xf[0] @ [1.0, 2.0, 1.0], [0.9 - 0.2 + 5.5, 0.2 + 1.6 - 6.5])


def test_xf_fixed_width_fields_without_spaces(tmp_path: Path) -> None:
    p = tmp_path / "w.xf"
    p.write_text("   1.0000000   0.0000000   0.0000000   1.0000000-1234567.125  123456.500\n")
    np.testing.assert_allclose(read_xf(p)[0, :, 2], [-1234567.125, 123456.5])


@pytest.mark.parametrize(
    "text,match",
    [
        ("1 2 3 4 5\n", "line 1: expected 6 numbers"),
        ("1 0 0 1 0 0\n1 0 0 1 x 0\n", "line 2: value 'x' is not a number"),
        ("0 0 0 0 1 1\n", "line 1: the 2x2 matrix is singular"),
        ("\n\n", "contains no transforms"),
        ("1 0 0 1 nan 0\n", "line 1: value is 'nan'"),
    ],
)
def test_xf_malformed(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.xf"
    p.write_text(text)
    with pytest.raises(InputFileError, match=match) as info:
        read_xf(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text,match",
    [("-60\n-57 3\n", "line 2: expected one angle"), ("10\nabc\n", "line 2: angle 'abc' is not a number"),
     ("95\n", "line 1: angle 95 is outside"), ("", "contains no angles")],
)
def test_tlt_malformed(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.tlt"
    p.write_text(text)
    with pytest.raises(InputFileError, match=match):
        read_tlt(p)


def test_missing_binary_and_folder_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_tlt(tmp_path / "none.tlt")
    (tmp_path / "b.xf").write_bytes(b"\x00\x01\x02")
    with pytest.raises(InputFileError, match="binary"):
        read_xf(tmp_path / "b.xf")
    with pytest.raises(InputFileError, match="folder"):
        read_xtilt(tmp_path)


def test_check_count(tmp_path: Path) -> None:
    check_count([1.0, 2.0], 2, tmp_path / "a.tlt")
    with pytest.raises(InputFileError, match="has 2 entries but the tilt series has 3 views"):
        check_count(np.zeros(2), 3, tmp_path / "a.tlt")


def test_exclude_list_syntax() -> None:
    assert parse_exclude_list("1-3,7") == [1, 2, 3, 7]
    assert parse_exclude_list("5 8-9") == [5, 8, 9]
    with pytest.raises(ValueError):
        parse_exclude_list("1-x")


def test_com_parsing(tmp_path: Path) -> None:
    p = tmp_path / "tilt.com"
    p.write_text("# comment\n$tilt -StandardInput\nTHICKNESS 300\nRADIAL\t0.35 0.035\nSHIFT 0.0,2.5\n"
                 "PERPENDICULAR\nEXCLUDELIST 1-3,7\nOutputFile a b.mrc\n$if (-e ./savework) ./savework\n")
    com = read_tilt_com(p)
    assert com["$program"] == "tilt" and com["THICKNESS"] == 300
    assert com["RADIAL"] == (0.35, 0.035) and com["SHIFT"] == (0.0, 2.5)
    assert com["PERPENDICULAR"] is True and com["OutputFile"] == "a b.mrc"
    assert parse_exclude_list(str(com["EXCLUDELIST"])) == [1, 2, 3, 7]
    bad = tmp_path / "bad.com"
    bad.write_text("$tilt -StandardInput\n= 3\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_com(bad)
    newst = tmp_path / "newst.com"
    newst.write_text("$newstack -StandardInput\nBinByFactor 2\n")
    with pytest.raises(InputFileError, match="expected 'tilt'"):
        read_tilt_com(newst)


# ---------------------------------------------------------------- AreTomo
ALN3 = """# AreTomo Alignment / Priims bprmMn
# RawSize = 100 100 4
# NumPatches = 1
# DarkFrame =     0    1   -60.00
# AlphaOffset =     0.00
# BetaOffset =     0.00
# Thickness = 1200
# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE     TILT
    2   -95.4040    1.00000      9.220    103.933     1.00     1.00     1.00     0.00    -30.00
    3   -95.4040    1.00000      0.000      0.000     1.00     1.00     1.00     0.00      0.00
    4   -95.4040    1.00000   -633.320   -527.601     1.00     1.00     1.00     0.00     30.00
# Local Alignment
   0   0  -558.42   -802.00   -100.07     24.43   1.0
   1   0  -558.42   -802.00   -100.07     24.43   1.0
   2   0  -558.42   -802.00   -100.07     24.43   1.0
"""


def test_aln_aretomo3_with_dark_frame_and_xf(tmp_path: Path) -> None:
    p = tmp_path / "ts.aln"
    p.write_text(ALN3)
    aln = read_aln(p)
    assert aln.format == "3" and aln.n_views == 3 and aln.thickness == 1200
    assert aln.section.tolist() == [1, 2, 3] and aln.excluded_sections == [0]
    assert aln.n_local_lines == 3 and "ignored" in aln.notes[0]
    xf = aln_to_xf(aln)
    # AreTomo3's CSaveXF: rotation by -ROT, shift = A @ (-TX, -TY)
    c, s = np.cos(np.deg2rad(-95.404)), np.sin(np.deg2rad(-95.404))
    a = np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(xf[0, :, :2], a, atol=1e-12)
    np.testing.assert_allclose(xf[0, :, 2], a @ [-9.22, -103.933], atol=1e-9)
    np.testing.assert_allclose(xf[1, :, 2], 0.0)
    # the linear part is a rotation that takes the tilt axis (ROT from +Y, counter-clockwise) onto +Y
    np.testing.assert_allclose(xf[:, :, :2] @ np.swapaxes(xf[:, :, :2], 1, 2), np.broadcast_to(np.eye(2), (3, 2, 2)),
                               atol=1e-12)
    axis = np.array([-np.sin(np.deg2rad(-95.404)), np.cos(np.deg2rad(-95.404))])
    np.testing.assert_allclose(xf[0, :, :2] @ axis, [0.0, 1.0], atol=1e-12)
    full = aln_to_xf(aln, include_dark=True)
    assert full.shape == (4, 2, 3)
    np.testing.assert_array_equal(full[0], [[1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(full[1:], xf)


def test_aln_xf_moves_shifted_point_to_origin(tmp_path: Path) -> None:
    p = tmp_path / "t.aln"
    p.write_text(ALN3)
    aln = read_aln(p)
    xf = aln_to_xf(aln)
    for i in range(aln.n_views):  # the raw point at (TX, TY) lands on the centre of the aligned view
        np.testing.assert_allclose(xf[i] @ [aln.tx[i], aln.ty[i], 1.0], [0.0, 0.0], atol=1e-9)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda t: t.replace("RawSize = 100 100 4", "RawSize = 100 100 5"), "announces 4 views"),
        (lambda t: t.replace("    3   -95.4040", "    x   -95.4040"), "line 10: SEC 'x'"),
        (lambda t: t.replace("1.00     0.00      0.00", "1.00      0.00"), "line 10: expected 10 columns"),
        (lambda t: t.replace("# AreTomo Alignment", "# Something"), "is not an AreTomo .aln"),
        (lambda t: t.split("# SEC")[0], "has no global alignment lines"),
        (lambda t: t.replace("# DarkFrame =     0    1   -60.00", "# DarkFrame = 0 1"), "line 4"),
    ],
)
def test_aln_malformed(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.aln"
    p.write_text(edit(ALN3))
    with pytest.raises(InputFileError, match=match):
        read_aln(p)


def test_aln_lenient_mode_records_problem(tmp_path: Path) -> None:
    p = tmp_path / "short.aln"
    p.write_text(ALN3.replace("RawSize = 100 100 4", "RawSize = 100 100 9"))
    aln = read_aln(p, strict=False)
    assert aln.n_views == 3 and any("announces 8 views" in n for n in aln.notes)


# ---------------------------------------------------------------- SerialEM mdoc
datetimes_st = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31)).map(
    lambda d: d.replace(microsecond=0))


@FAST
@given(data=st.data(), n=st.integers(1, 25))
def test_mdoc_round_trip(data: st.DataObject, n: int) -> None:
    angles = data.draw(st.lists(st.floats(-70, 70, allow_nan=False), min_size=n, max_size=n))
    doses = data.draw(st.lists(st.floats(0.01, 10, allow_nan=False), min_size=n, max_size=n))
    times = data.draw(st.lists(datetimes_st, min_size=n, max_size=n, unique=True))
    pixel = data.draw(st.floats(0.2, 20, allow_nan=False))
    z = list(range(n))
    subs = [f"X:\\frames\\TS_{i:03d}_{a:.1f}.tif" for i, a in enumerate(angles)]
    with tempfile.TemporaryDirectory() as d:
        p = write_mdoc(Path(d) / "ts.mrc.mdoc", angles, z, doses, pixel, times, subs, tilt_axis_angle=85.3)
        m = read_mdoc(p)
        df = mdocfile.read(p)  # the reference parser reads what we wrote
    assert m.n_tilts == n and len(df) == n
    np.testing.assert_allclose(m.tilt_angle, angles)
    np.testing.assert_allclose(df["TiltAngle"], angles)
    np.testing.assert_allclose(m.dose, doses)
    assert m.pixel_size == pytest.approx(pixel) and m.tilt_axis_angle == pytest.approx(85.3)
    assert list(m.datetime) == times
    order = sorted(range(n), key=lambda i: times[i])
    assert [int(i) for i in np.argsort(m.acquisition_order)] == order
    pre = np.zeros(n)
    pre[order] = np.concatenate([[0.0], np.cumsum(np.asarray(doses)[order])[:-1]])
    np.testing.assert_allclose(m.pre_exposure, pre)
    assert m.sub_frame_name(0) == f"TS_000_{angles[0]:.1f}.tif"
    s = m.sorted_by_angle()
    assert np.all(np.diff(s.tilt_angle) >= 0)


def _simple_mdoc(tmp_path: Path, n: int = 5, **kw) -> Path:  # type: ignore[no-untyped-def]
    angles = [0.0, 3.0, -3.0, 6.0, -6.0][:n]
    times = [datetime(2021, 10, 8, 7, 39, 5 + 10 * i) for i in range(n)]
    return write_mdoc(tmp_path / "ts.mdoc", angles, list(range(n)), [0.0] * n, 2.5, times, **kw)


def test_mdoc_exclude_and_dose_per_tilt(tmp_path: Path) -> None:
    p = _simple_mdoc(tmp_path)
    m = read_mdoc(p)
    assert m.dose_source == "unknown" and not m.dose.any()
    m = read_mdoc(p, exclude=[1, 3], dose_per_tilt=3.0)
    assert m.z_value.tolist() == [0, 2, 4] and m.excluded_z == (1, 3)
    np.testing.assert_allclose(m.pre_exposure, [0.0, 6.0, 12.0])  # excluded views still exposed the sample
    with pytest.raises(InputFileError, match=r"exclude list names ZValue\(s\) \[9\]"):
        read_mdoc(p, exclude=[9])
    with pytest.raises(InputFileError, match="removes every view"):
        read_mdoc(p, exclude=range(5))


def test_mdoc_order_falls_back_to_zvalue(tmp_path: Path) -> None:
    p = tmp_path / "nodt.mdoc"  # Windows line ends and a byte-order mark are fine
    text = "PixelSpacing = 2\n\n[ZValue = 1]\nTiltAngle = 3\n\n[ZValue = 0]\nTiltAngle = 0\n"
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    m = read_mdoc(p)
    assert m.z_value.tolist() == [0, 1] and m.acquisition_order.tolist() == [0, 1]


@pytest.mark.parametrize(
    "text,match",
    [
        ("[ZValue = 0]\nTiltAngle = abc\n", "line 2: TiltAngle 'abc' is not a finite number"),
        ("[ZValue = 0\nTiltAngle = 1\n", "line 1: section header"),
        ("[ZValue = 0]\nTiltAngle 1\n", "line 2: expected 'Key = value'"),
        ("[ZValue = 0]\nTiltAngle = 1\n[ZValue = 0]\nTiltAngle = 2\n", "line 3: ZValue 0 appears twice"),
        ("[ZValue = 0]\nDefocus = 1\n", "line 1: ZValue 0 has no TiltAngle"),
        ("PixelSpacing = 1\n", r"has no \[ZValue"),
        ("Montage = 1\n[ZValue = 0]\nTiltAngle = 1\n", "montage"),
        ("[ZValue = 0]\nTiltAngle = 1\nImageShift = a b\n", r"not a valid SerialEM .mdoc \(ImageShift"),
        ("[ZValue = x]\nTiltAngle = 1\n", "line 1: ZValue 'x'"),
    ],
)
def test_mdoc_malformed(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.mdoc"
    p.write_text(text)
    with pytest.raises(InputFileError, match=match) as info:
        read_mdoc(p)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- RELION tomograms.star
STAR = """
# version 50001

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesPixelSize #2
_rlnTomoTomogramBinning #3
_rlnTomoSizeX #4
_rlnTomoSizeY #5
_rlnTomoSizeZ #6
_rlnTomoReconstructedTomogramHalf1 #7
_rlnTomoReconstructedTomogramHalf2 #8
001 1.35 4.0 4000 4000 1000 Tomograms/job009/tomograms/rec_001_half1.mrc Tomograms/job009/tomograms/rec_001_half2.mrc
TS_02 1.35 4.0 4000 4000 1000 /abs/rec_TS_02_half1.mrc /abs/rec_TS_02_half2.mrc
"""


def test_tomograms_star_paths_and_pixel_size(tmp_path: Path) -> None:
    star = tmp_path / "Tomograms" / "job009" / "tomograms.star"
    (star.parent / "tomograms").mkdir(parents=True)
    star.write_text(STAR)
    (star.parent / "tomograms" / "rec_001_half1.mrc").write_bytes(b"")
    entries = read_tomograms_star(star)
    assert [e.name for e in entries] == ["001", "TS_02"]  # "001" stays a string
    assert entries[0].half1 == tmp_path / "Tomograms/job009/tomograms/rec_001_half1.mrc"  # found in the project
    assert entries[0].half2 == tmp_path / "Tomograms/job009/tomograms/rec_001_half2.mrc"  # project-relative guess
    assert entries[1].half1 == Path("/abs/rec_TS_02_half1.mrc")
    assert entries[0].pixel_size == pytest.approx(1.35) and entries[0].tomogram_pixel_size == pytest.approx(5.4)
    assert entries[0].size == (4000, 4000, 1000)
    other = read_tomograms_star(star, project_dir=tmp_path / "elsewhere")
    assert other[0].half2 == tmp_path / "elsewhere/Tomograms/job009/tomograms/rec_001_half2.mrc"


def test_tomograms_star_refusals(tmp_path: Path) -> None:
    p = tmp_path / "x.star"
    p.write_text("data_optics\nloop_\n_rlnVoltage #1\n300\n")
    with pytest.raises(InputFileError, match="no table with an rlnTomoName"):
        read_tomograms_star(p)
    p.write_text(STAR.replace("TS_02", "001"))
    with pytest.raises(InputFileError, match="repeated"):
        read_tomograms_star(p)


# ---------------------------------------------------------------- garbage never escapes as another type
PARSERS = [read_tlt, read_xtilt, read_xf, read_com, read_aln, read_mdoc, read_tomograms_star, read_pair_list]
MDOC_WORDS = ["[ZValue = 0]", "[ZValue = 1]", "[FrameSet = 0]", "[T = x = y]", "TiltAngle = 3", "TiltAngle = x",
              "ExposureDose = 1", "ImageSize = 1 2", "ImageSize = a", "PixelSpacing = 2", "NumSubFrames = 9",
              "FrameDosesAndNumber = 1 x", "DateTime = 31-Feb-21  10:00:00", "Montage = 0", "A = b = c", "=", "[]",
              "# SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT", "# AreTomo Alignment", "1 2 3 4 5 6", "1e999",
              "data_global", "loop_", "_rlnTomoName #1", "even odd", '"unclosed', "1 0 0 1 0 0"]


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


def _parse_all(path: Path) -> None:
    for parser in PARSERS:
        try:
            parser(path)
        except InputFileError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=300))
def test_random_bytes_raise_only_input_file_error(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "garbage"
        p.write_bytes(blob)
        _parse_all(p)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(st.sampled_from(MDOC_WORDS), TEXT), max_size=25))
def test_structured_garbage_raises_only_input_file_error(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "garbage"
        p.write_text("\n".join(lines), encoding="utf-8")
        _parse_all(p)
