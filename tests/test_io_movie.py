"""Movies (TIFF/MRC/EER), gain references and SerialEM/MotionCor2 gain orientation."""

from __future__ import annotations

import sys
import tempfile
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cryocare_torch.errors import DataError, InputFileError
from cryocare_torch.io.mdoc import write_mdoc
from cryocare_torch.io.movie import apply_gain, orient_gain, read_gain, read_movie, serialem_orientation
from cryocare_torch.io.mrc import write_volume
from cryocare_torch.io.tiff import read_tiff_stack, write_tiff_movie


@settings(max_examples=25, deadline=None)
@given(frames=hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
                         hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=12),
                         elements={"allow_nan": False, "allow_infinity": False}))
def test_tiff_lzw_round_trip(frames: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = write_tiff_movie(Path(d) / "m.tif", frames)
        with tifffile.TiffFile(p) as tif:
            assert len(tif.pages) == frames.shape[0]
            assert all(page.compression == tifffile.COMPRESSION.LZW for page in tif.pages)
        back, meta = read_movie(p)
    assert back.dtype == frames.dtype and np.array_equal(back, frames)
    assert meta.format == "tiff" and meta.n_frames == frames.shape[0] and meta.pixel_size is None


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_other_compressions_and_single_image(tmp_path: Path, compression: str | None) -> None:
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    p = write_tiff_movie(tmp_path / "one.tif", img, compression)
    assert read_tiff_stack(p).shape == (1, 3, 4)
    with pytest.raises(Exception, match="exists"):
        write_tiff_movie(p, img)


def test_tiff_written_by_tifffile_as_serialem_would(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 4, (5, 16, 8), dtype=np.uint8)
    p = tmp_path / "serialem.tif"
    with tifffile.TiffWriter(p) as tw:  # one LZW page per frame, no shaped metadata
        for f in frames:
            tw.write(f, compression="lzw", metadata=None)
    assert np.array_equal(read_movie(p)[0], frames)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_bytes(b"II*\x00garbage" * 3), "cannot read TIFF|no readable images"),
        (lambda p: p.write_bytes(b""), "cannot read TIFF"),
        (lambda p: tifffile.imwrite(p, np.zeros((4, 4, 3), np.uint8), photometric="rgb"), "grey-scale"),
    ],
)
def test_bad_tiffs(tmp_path: Path, make, match: str) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "bad.tif"
    make(p)
    with pytest.raises(InputFileError, match=match):
        read_movie(p)


def test_ragged_tiff_pages(tmp_path: Path) -> None:
    p = tmp_path / "ragged.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(np.zeros((4, 4), np.uint8), metadata=None)
        tw.write(np.zeros((4, 5), np.uint8), metadata=None)
    with pytest.raises(InputFileError, match="page 1 has shape"):
        read_movie(p)


def test_mrc_movie_and_mdoc_sidecar(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    p = write_volume(tmp_path / "m.mrc", data, voxel_size=0.83)
    frames, meta = read_movie(p)
    assert frames.dtype == np.int16 and np.array_equal(frames, data)
    assert meta.format == "mrc" and meta.pixel_size == pytest.approx(0.83) and meta.dose_per_frame is None
    single, meta1 = read_movie(write_volume(tmp_path / "s.mrc", data[0]))
    assert single.shape == (1, 4, 5) and meta1.n_frames == 1
    tif = write_tiff_movie(tmp_path / "m.tif", data.astype(np.uint16))
    write_mdoc(tmp_path / "m.tif.mdoc", [30.0], [0], [6.0], 1.25, [datetime(2024, 1, 2, 3, 4, 5)])
    mdoc = tmp_path / "m.tif.mdoc"
    mdoc.write_text(mdoc.read_text().replace("TiltAngle = 30.0", "TiltAngle = 30.0\nNumSubFrames = 3"))
    _, tmeta = read_movie(tif)
    assert tmeta.pixel_size == pytest.approx(1.25) and tmeta.dose_per_frame == pytest.approx(2.0)
    assert read_movie(tif, use_mdoc=False)[1].pixel_size is None


def test_unsupported_and_missing_movies(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_movie(tmp_path / "none.tif")
    with pytest.raises(InputFileError, match="not found"):
        read_movie(tmp_path / "none.mrc")
    (tmp_path / "a.avi").write_bytes(b"x")
    with pytest.raises(InputFileError, match="unsupported movie format '.avi'"):
        read_movie(tmp_path / "a.avi")


def test_eer_needs_optional_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "m.eer"
    p.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "eerfile", None)  # import fails even if installed
    with pytest.raises(InputFileError, match=r"pip install 'cryocare-torch\[eer\]'"):
        read_movie(p)
    fake = types.ModuleType("eerfile")
    fake.read = lambda path: np.ones((7, 4, 4), np.uint8)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "eerfile", fake)
    frames, meta = read_movie(p)
    assert frames.shape == (7, 4, 4) and meta.format == "eer"

    def broken(path: Path) -> None:
        raise RuntimeError("bad EER header")

    fake.read = broken  # type: ignore[attr-defined]
    with pytest.raises(InputFileError, match="cannot read EER movie .bad EER header"):
        read_movie(p)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_read_gain(tmp_path: Path) -> None:
    g = np.random.default_rng(1).uniform(0.5, 1.5, (6, 8)).astype(np.float32)
    assert np.array_equal(read_gain(write_volume(tmp_path / "g.mrc", g)), g)
    assert np.array_equal(read_gain(write_tiff_movie(tmp_path / "g.tif", g, None)), g)
    (tmp_path / "g.dm4").write_bytes(b"x")
    with pytest.raises(InputFileError, match="dm2mrc"):
        read_gain(tmp_path / "g.dm4")
    bad = g.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        read_gain(write_volume(tmp_path / "nan.mrc", bad))
    with pytest.raises(InputFileError, match="has 2 images"):
        read_gain(write_tiff_movie(tmp_path / "two.tif", np.stack([g, g])))


G = np.array([[1.0, 2.0], [3.0, 4.0]])  # row 0 is y = 0 (bottom when y points up)


def test_orientation_conventions() -> None:
    # y up: the picture is  3 4 / 1 2 ; a quarter turn counter-clockwise gives  4 2 / 3 1
    np.testing.assert_array_equal(orient_gain(G, rotation_k=1), [[3.0, 1.0], [4.0, 2.0]])
    np.testing.assert_array_equal(orient_gain(G, rotation_k=2), G[::-1, ::-1])
    np.testing.assert_array_equal(orient_gain(G, rotation_k=-1), orient_gain(G, rotation_k=3))
    np.testing.assert_array_equal(orient_gain(G, flip="y"), G[::-1])  # upside down (MotionCor2 -FlipGain 1)
    np.testing.assert_array_equal(orient_gain(G, flip="x"), G[:, ::-1])  # left-right (-FlipGain 2)
    rect = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(orient_gain(rect, flip="y", rotation_k=1), np.rot90(rect, -1)[::-1])  # rotate first
    with pytest.raises(ValueError):
        orient_gain(G, flip="z")  # type: ignore[arg-type]


@pytest.mark.parametrize("op", range(8))
def test_serialem_operation_matches_flip_before_rotation(op: int) -> None:
    g = np.arange(12.0).reshape(3, 4)
    k = op % 4
    expected = np.rot90(g[:, ::-1] if op >= 4 else g, -k)  # IMOD rotateflip: flip around Y, then rotate CCW
    flip, rot = serialem_orientation(op)
    np.testing.assert_array_equal(orient_gain(g, flip=flip, rotation_k=rot), expected)


def test_serialem_operations_are_eight_distinct_orientations() -> None:
    g = np.arange(16.0).reshape(4, 4)
    seen = {orient_gain(g, flip=f, rotation_k=k).tobytes() for f, k in map(serialem_orientation, range(8))}
    assert len(seen) == 8
    with pytest.raises(ValueError):
        serialem_orientation(8)


def test_apply_gain_multiplies_oriented_gain() -> None:
    frames = np.ones((3, 2, 3), np.uint8) * 2
    gain = np.arange(6.0).reshape(3, 2)
    out = apply_gain(frames, gain, rotation_k=1)
    assert out.dtype == np.float32 and out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[1], 2 * np.rot90(gain, -1))
    with pytest.raises(DataError, match="try rotation_k=1 or 3"):
        apply_gain(frames, gain)
    with pytest.raises(DataError, match="does not match"):
        apply_gain(frames, np.ones((5, 5)))


@settings(max_examples=40, deadline=None)
@given(blob=st.binary(max_size=400), header=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00"]))
def test_random_tiff_bytes_raise_only_input_file_error(blob: bytes, header: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "garbage.tif"
        p.write_bytes(header + blob)
        for reader in (read_movie, read_gain):
            try:
                reader(p)
            except InputFileError as exc:
                assert "\n" not in str(exc)
