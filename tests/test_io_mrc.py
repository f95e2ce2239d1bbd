"""MRC I/O: round trips, real header variants, strict validation, atomic outputs."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryocare_torch.errors import InputFileError, OutputError
from cryocare_torch.io.atomic import atomic_path, check_output
from cryocare_torch.io.mrc import VolumeWriter, read_meta, read_slab, read_volume, write_volume


def test_round_trip_keeps_data_voxel_size_origin(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    src = write_volume(tmp_path / "a.mrc", data, voxel_size=(2.5, 2.5, 2.5))
    meta = read_meta(src)
    meta = type(meta)(**{**meta.__dict__, "origin": (10.0, 20.0, 30.0)})
    out = write_volume(tmp_path / "b.mrc", data * 2, meta)
    back, m2 = read_volume(out)
    assert np.array_equal(back, data * 2)
    assert m2.voxel_size == (2.5, 2.5, 2.5)
    assert m2.origin == (10.0, 20.0, 30.0)
    with open(os.devnull, "w") as sink:
        assert mrcfile.validate(str(out), print_file=sink)


@pytest.mark.parametrize("dtype,mode", [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)])
def test_reads_all_supported_modes_with_voxel_size(tmp_path: Path, dtype: type, mode: int) -> None:
    data = (np.arange(4 * 5 * 6) % 100).reshape(4, 5, 6).astype(dtype)
    p = tmp_path / f"m{mode}.mrc"
    with mrcfile.new(p) as mrc:  # written by mrcfile, as other software would
        mrc.set_data(data)
        mrc.voxel_size = 13.48
    meta = read_meta(p)
    assert meta.mode == mode and meta.shape == (4, 5, 6)
    assert meta.voxel_size == pytest.approx((13.48,) * 3, rel=1e-5)
    arr, _ = read_volume(p)
    assert arr.dtype == np.float32 and np.array_equal(arr, data.astype(np.float32))


def test_extended_header_offset(tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=(3, 4, 5)).astype(np.float32)
    p = tmp_path / "ext.mrc"
    with mrcfile.new(p) as mrc:
        mrc.set_extended_header(np.zeros(256, dtype=np.uint8))
        mrc.set_data(data)
        mrc.voxel_size = 4.0
    meta = read_meta(p)
    assert meta.data_offset == 1024 + 256
    assert np.array_equal(read_volume(p)[0], data)
    assert np.array_equal(read_slab(p, meta, 1, 3), data[1:3])


def test_image_and_stack_shapes(tmp_path: Path) -> None:
    img = write_volume(tmp_path / "img.mrc", np.ones((8, 9), np.float32), voxel_size=1.0)
    assert read_meta(img).shape == (8, 9) and read_meta(img).ndim == 2
    p = tmp_path / "stack.mrc"
    with mrcfile.new(p) as mrc:
        mrc.set_data(np.zeros((3, 8, 9), np.float32))
        mrc.set_image_stack()
    assert read_meta(p).is_stack


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty"), (b"hello", "shorter than the 1024-byte header"), (b"x" * 2048, "not a valid MRC")],
)
def test_bad_files_raise_one_line_input_error(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.mrc"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=match) as err:
        read_meta(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_truncated_and_missing(tmp_path: Path) -> None:
    p = write_volume(tmp_path / "t.mrc", np.zeros((4, 16, 16), np.float32))
    with open(p, "r+b") as fh:
        fh.truncate(1024 + 100)
    with pytest.raises(InputFileError, match="truncated"):
        read_meta(p)
    with pytest.raises(InputFileError, match="not found"):
        read_meta(tmp_path / "missing.mrc")


def test_unsupported_mode(tmp_path: Path) -> None:
    p = tmp_path / "c.mrc"
    with mrcfile.new(p) as mrc:
        mrc.set_data(np.zeros((2, 3, 4), np.complex64))
    with pytest.raises(InputFileError, match="unsupported MRC mode 4"):
        read_meta(p)


def test_volume_writer_slabs_and_header_stats(tmp_path: Path) -> None:
    data = np.random.default_rng(3).normal(size=(6, 7, 8)).astype(np.float32)
    with VolumeWriter(tmp_path / "w.mrc", data.shape) as w:
        w.write_slab(0, data[:2])
        w.write_block((2, 0, 0), data[2:, :3])
        w.write_block((2, 3, 0), data[2:, 3:])
    back, _ = read_volume(tmp_path / "w.mrc")
    assert np.array_equal(back, data)
    with mrcfile.open(tmp_path / "w.mrc", header_only=True) as mrc:
        assert mrc.header.dmin == pytest.approx(data.min())
        assert mrc.header.dmax == pytest.approx(data.max())
        assert mrc.header.dmean == pytest.approx(data.mean(), abs=1e-5)
        assert mrc.header.rms == pytest.approx(data.std(), rel=1e-4)


def test_volume_writer_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VolumeWriter(tmp_path / "x.mrc", (2, 3, 4)) as w:
        w.write_slab(0, np.zeros((1, 3, 4)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_outputs_not_overwritten_and_never_an_input(tmp_path: Path) -> None:
    p = write_volume(tmp_path / "in.mrc", np.zeros((2, 3, 4), np.float32))
    before = p.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        write_volume(p, np.ones((2, 3, 4), np.float32))
    with pytest.raises(OutputError, match="same as an input"):
        write_volume(p, np.ones((2, 3, 4), np.float32), overwrite=True, inputs=[p])
    assert p.read_bytes() == before
    with pytest.raises(OutputError, match="not enough disk space"):
        check_output(tmp_path / "huge.mrc", nbytes=2**62)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "nofolder" / "x.mrc")


def test_atomic_path_interrupted_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
