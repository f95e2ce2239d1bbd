"""Parse the real side files in ../shared/realdata (SerialEM, IMOD, AreTomo, RELION) and check values read from them.

Skipped with a reason when the folder is absent; every parser also has synthetic tests in test_io_sidefiles.py.
"""

from __future__ import annotations

from pathlib import Path

import mdocfile
import numpy as np
import pytest

from cryocare_torch.errors import InputFileError
from cryocare_torch.io.aretomo import aln_to_xf, read_aln
from cryocare_torch.io.imod import (
    check_count,
    read_newst_com,
    read_tilt_com,
    read_tlt,
    read_xf,
    read_xtilt,
)
from cryocare_torch.io.mdoc import read_mdoc
from cryocare_torch.io.mrc import read_meta
from cryocare_torch.io.star import read_tomograms_star


def test_serialem_tilt_series_mdoc(realdata: Path) -> None:
    p = realdata / "mdocfile/tests/test_data/tilt_series.mdoc"
    m = read_mdoc(p)
    assert m.n_tilts == 41 and m.z_value.tolist() == list(range(41))
    assert m.tilt_angle[0] == pytest.approx(0.000999877) and m.tilt_angle[-1] == pytest.approx(60.0006)
    assert m.tilt_angle.min() == pytest.approx(-59.9986)
    assert m.pixel_size == pytest.approx(5.4) and m.tilt_axis_angle == pytest.approx(85.3)
    assert m.image_size == (924, 958)
    assert m.sub_frame_name(0) == "TS_01_000_0.0.mrc" and m.sub_frame_name(40) == "TS_01_040_60.0.mrc"
    assert m.num_sub_frames.tolist() == [8] * 41 and np.allclose(m.exposure_time, 0.8)
    assert m.dose_source == "unknown"  # ExposureDose = 0 throughout this file
    assert m.acquisition_order.tolist() == list(range(41))  # DateTime increases with ZValue here
    assert m.datetime[0] is not None and m.datetime[0].strftime("%Y-%m-%d %H:%M:%S") == "2015-11-30 15:21:38"
    df = mdocfile.read(p)  # agree with the reference parser
    np.testing.assert_allclose(m.tilt_angle, df["TiltAngle"].to_numpy())
    s = m.sorted_by_angle()
    assert s.tilt_angle[0] == pytest.approx(-59.9986) and s.z_value[0] == 39


def test_serialem_dose_symmetric_cumulative(realdata: Path) -> None:
    m = read_mdoc(realdata / "mdocfile/tests/test_data/tilt_series.mdoc", dose_per_tilt=2.5, exclude=[40])
    assert m.n_tilts == 40 and m.excluded_z == (40,)
    np.testing.assert_allclose(m.pre_exposure, 2.5 * np.arange(40))


def test_serialem_frame_set_mdocs(realdata: Path) -> None:
    single = read_mdoc(realdata / "mdocfile/tests/test_data/frame_set_single.mdoc")
    assert single.n_tilts == 1 and single.tilt_angle[0] == pytest.approx(32.984)
    assert single.pixel_size == pytest.approx(1.2827) and single.dose[0] == pytest.approx(7.65892)
    assert single.num_sub_frames[0] == 12
    assert single.sub_frame_name(0) == "s_mmm_00993_33.0_Oct08_07.39.05.tif"
    multi = read_mdoc(realdata / "mdocfile/tests/test_data/frame_set_multiple.mdoc")
    assert multi.n_tilts == len(mdocfile.read(realdata / "mdocfile/tests/test_data/frame_set_multiple.mdoc")) - 1
    assert multi.dose_source == "ExposureDose" and multi.dose[0] == pytest.approx(7.66184)
    np.testing.assert_allclose(multi.pre_exposure[:3], [0.0, 7.66184, 15.3237])  # PriorRecordDose


@pytest.mark.parametrize("name", ["montage_section.mdoc", "montage_section_multiple.mdoc"])
def test_serialem_montage_refused(realdata: Path, name: str) -> None:
    with pytest.raises(InputFileError, match="montage"):
        read_mdoc(realdata / "mdocfile/tests/test_data" / name)


def test_imod_etomo_set(realdata: Path) -> None:
    d = realdata / "etomofiles/test_data/TS_001"
    tlt, raw, xtilt, xf = (read_tlt(d / "TS_001.tlt"), read_tlt(d / "TS_001.rawtlt"), read_xtilt(d / "TS_001.xtilt"),
                           read_xf(d / "TS_001.xf"))
    assert tlt.shape == raw.shape == xtilt.shape == (40,) and xf.shape == (40, 2, 3)
    assert tlt[0] == pytest.approx(-57.12) and tlt[-1] == pytest.approx(59.84)
    assert raw[0] == pytest.approx(-60.0) and raw[-1] == pytest.approx(56.99)
    assert xtilt[0] == -0.01 and xtilt[-1] == 0.0 and np.all(np.abs(xtilt) <= 0.01)
    np.testing.assert_allclose(xf[0], [[0.1020875, 0.9947760, 2.395], [-0.9947760, 0.1020875, -3.871]])
    n_views = read_meta(d / "TS_001.st").shape[0]  # a 40 x 1 x 1 stub stack
    for values, f in ((tlt, "TS_001.tlt"), (xf, "TS_001.xf"), (xtilt, "TS_001.xtilt")):
        check_count(values, n_views, d / f)
    # xf rotates by minus the tilt-axis angle etomo recorded (Setup.ImageRotationA=83.9 in the .edf)
    edf = (d / "TS_001.edf").read_text()
    axis = float(edf.split("Setup.ImageRotationA=")[1].split()[0])
    rot = np.degrees(np.arctan2(xf[:, 1, 0], xf[:, 0, 0]))
    assert axis == pytest.approx(83.9) and np.all(np.abs(rot + axis) < 1.0)


def test_imod_xf_and_counts(realdata: Path) -> None:
    xf = read_xf(realdata / "imod_xf/tests/test_data/xf_file.xf")
    assert xf.shape == (41, 2, 3)
    np.testing.assert_allclose(xf[0, 0], [0.0858208, 0.9963112, 342.263])
    np.testing.assert_allclose(xf[-1, 1], [-0.9971007, 0.0760996, -63.963])
    base = realdata / "cryoet_alignment_meta/tests/data"
    assert read_tlt(base / "test.rawtlt").tolist() == [-66.0, -64.5, -63.0]
    small = read_xf(base / "test.xf")
    check_count(small, 3, base / "test.xf")
    assert small[0, 0, 2] == pytest.approx(22.751)
    with pytest.raises(InputFileError, match="has 3 entries but the tilt series has 59 views"):
        check_count(small, 59, base / "test.xf")


def test_imod_com_files(realdata: Path) -> None:
    d = realdata / "cryoet_alignment_meta/tests/data/convert/imod_1"
    tilt = read_tilt_com(d / "tilt.com")
    assert tilt["THICKNESS"] == 2000 and tilt["IMAGEBINNED"] == 4 and tilt["XAXISTILT"] == 0.0
    assert tilt["RADIAL"] == (0.35, 0.035) and tilt["SHIFT"] == (0.0, 0.0) and tilt["OFFSET"] == 0.0
    assert tilt["FULLIMAGE"] == (3708, 3832) and tilt["TILTFILE"] == "mka2018-10-01-1.tlt"
    assert tilt["PERPENDICULAR"] is True
    newst = read_newst_com(d / "newst.com")
    assert newst["BinByFactor"] == 4 and newst["SizeToOutputInXandY"] == (928, 958)
    assert newst["TransformFile"] == "mka2018-10-01-1.xf"
    tlt, xf, xtilt = read_tlt(d / "tilt_1.tlt"), read_xf(d / "tilt_1.xf"), read_xtilt(d / "tilt_1.xtilt")
    assert len(tlt) == len(xf) == len(xtilt) == 59 and tlt[0] == pytest.approx(-52.24)
    top = realdata / "cryoet_alignment_meta/tests/data"
    assert read_tilt_com(top / "tilt.com")["THICKNESS"] == 900
    assert read_newst_com(top / "newst.com")["BinByFactor"] == 2
    with pytest.raises(InputFileError, match="expected 'tilt'"):
        read_tilt_com(top / "newst.com")


def test_aretomo_1_2_and_1_3(realdata: Path) -> None:
    d = realdata / "aretomo_aln/tests/test_data"
    a12, a13 = read_aln(d / "example_v1_2_0.aln"), read_aln(d / "example_v1_3_0.aln")
    assert (a12.format, a13.format) == ("1.2", "1.3")
    assert a12.n_views == a13.n_views == 41 and a13.raw_size == (5760, 4092, 41)
    assert a12.section.tolist() == list(range(41)) and not a12.dark_frames
    assert a12.rot[0] == pytest.approx(-93.7196) and a12.tx[0] == pytest.approx(155.235)
    assert a12.ty[0] == pytest.approx(708.750) and a12.tilt[[0, -1]].tolist() == [-51.98, 68.0]
    assert a12.tx[20] == pytest.approx(-5.234) and a12.ty[20] == pytest.approx(-82.498)
    assert np.all(a13.rot == pytest.approx(-93.6692)) and a13.tilt[17] == pytest.approx(-0.99)
    xf = aln_to_xf(a13)
    assert xf.shape == (41, 2, 3) and np.allclose(xf[17, :, 2], 0.0)  # the reference view has no shift
    np.testing.assert_allclose(np.degrees(np.arctan2(xf[:, 1, 0], xf[:, 0, 0])), 93.6692, atol=1e-9)


def test_aretomo3_dark_frames_and_truncation(realdata: Path) -> None:
    p = realdata / "cryoet_alignment_meta/tests/data/test.aln"
    with pytest.raises(InputFileError, match="has 4 global alignment lines but its header announces 86 views"):
        read_aln(p)  # a 4-line excerpt of a 90-view file
    aln = read_aln(p, strict=False)
    assert aln.format == "3" and aln.raw_size == (2032, 2032, 90) and aln.n_patches == 16
    assert [d.tilt for d in aln.dark_frames] == [-66.0, -64.5, 66.0, 67.5]
    assert aln.excluded_sections == [1, 2, 88, 89]  # "DarkFrame = frame 0 tilt": old 0-based layout
    assert aln.rot[0] == pytest.approx(-12.6611) and aln.tx[0] == pytest.approx(24.786)
    assert aln.n_local_lines == 6


def test_relion_star_files_are_not_tomograms_star(realdata: Path) -> None:
    stars = sorted((realdata / "starfile/tests/data").rglob("*.star"))
    assert len(stars) >= 5
    for star in stars:
        with pytest.raises(InputFileError, match="rlnTomoName|not a readable STAR"):
            read_tomograms_star(star)
