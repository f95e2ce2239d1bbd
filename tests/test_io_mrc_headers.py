"""MRC headers as other software writes them, built byte by byte from the format's published layout.

The headers are packed with :mod:`struct` at the MRC2014 / IMOD byte offsets (not by mrcfile), so the
reader is checked against the format, not against the library it uses: IMOD's stamp and unsigned
bytes, EMDB/SPIDER-style axis orders, FEI extended headers, big-endian files, a missing machine stamp,
a pre-MRC2000 header without the map ID.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from cryocare_torch.cli.main import main
from cryocare_torch.errors import InputFileError
from cryocare_torch.io.mrc import open_memmap, read_meta, read_slab, read_volume, write_volume
from cryocare_torch.io.mrc_header import IMOD_STAMP

MODES = {np.dtype(np.int8): 0, np.dtype(np.uint8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
         np.dtype(np.uint16): 6, np.dtype(np.float16): 12}


def raw_mrc(path: Path, disk: np.ndarray, *, voxel: float = 13.48, mapcrs: tuple[int, int, int] = (1, 2, 3),
            big_endian: bool = False, machst: bytes | None = None, map_id: bytes = b"MAP ",
            imod_flags: int | None = None, ext: bytes = b"", exttyp: bytes = b"\0\0\0\0", ispg: int = 1,
            origin: tuple[float, float, float] = (0.0, 0.0, 0.0), start: tuple[int, int, int] = (0, 0, 0),
            labels: tuple[str, ...] = ()) -> Path:
    """Write ``disk`` (the on-disk ``(sections, rows, columns)`` array) with a hand-packed 1024-byte header."""
    e = ">" if big_endian else "<"
    ns, nr, nc = disk.shape
    # sampling and cell along the space axes x, y, z: the counts of the disk axes naming each space axis
    counts = {mapcrs[0]: nc, mapcrs[1]: nr, mapcrs[2]: ns}
    mxyz = [counts[1], counts[2], counts[3]]
    head = bytearray(1024)
    struct.pack_into(f"{e}3i", head, 0, nc, nr, ns)
    struct.pack_into(f"{e}i", head, 12, MODES[disk.dtype])
    struct.pack_into(f"{e}3i", head, 16, *start)
    struct.pack_into(f"{e}3i", head, 28, *mxyz)
    struct.pack_into(f"{e}3f", head, 40, *(m * voxel for m in mxyz))
    struct.pack_into(f"{e}3f", head, 52, 90.0, 90.0, 90.0)
    struct.pack_into(f"{e}3i", head, 64, *mapcrs)
    struct.pack_into(f"{e}3f", head, 76, float(disk.min()), float(disk.max()), float(disk.mean()))
    struct.pack_into(f"{e}2i", head, 88, ispg, len(ext))
    head[104:108] = exttyp
    struct.pack_into(f"{e}i", head, 108, 20140)
    if imod_flags is not None:
        struct.pack_into(f"{e}2i", head, 152, IMOD_STAMP, imod_flags)
    struct.pack_into(f"{e}3f", head, 196, *origin)
    head[208:212] = map_id
    head[212:216] = machst if machst is not None else (b"\x11\x11\0\0" if big_endian else b"DA\0\0")
    struct.pack_into(f"{e}i", head, 220, len(labels))
    for i, text in enumerate(labels):
        head[224 + 80 * i : 224 + 80 * (i + 1)] = text.encode().ljust(80)
    path.write_bytes(bytes(head) + ext + disk.astype(disk.dtype.newbyteorder(e)).tobytes())
    return path


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(6, 7, 9)).astype(np.float32)


def test_imod_tomogram_int16(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(-2000, 2000, (5, 6, 7)).astype(np.int16)
    p = raw_mrc(tmp_path / "imod.rec", data, imod_flags=0, labels=("Tilt:   Fixed reconstruction",))
    meta = read_meta(p)
    assert meta.shape == (5, 6, 7) and meta.mode == 1 and meta.voxel_size == pytest.approx((13.48,) * 3)
    assert meta.labels == ("Tilt:   Fixed reconstruction",)
    assert np.array_equal(read_volume(p)[0], data.astype(np.float32))


def test_imod_unsigned_bytes_are_not_wrapped(tmp_path: Path) -> None:
    data = np.arange(5 * 6 * 9, dtype=np.int64).reshape(5, 6, 9) % 256
    unsigned = raw_mrc(tmp_path / "trimvol.mrc", data.astype(np.uint8), imod_flags=0)  # bit 0 clear: unsigned
    signed = raw_mrc(tmp_path / "signed.mrc", data.astype(np.uint8), imod_flags=1)  # bit 0 set: signed
    # no IMOD stamp, header min/max of the signed values (-128/127): IMOD reads it signed, as MRC2014 says
    plain = raw_mrc(tmp_path / "mrc2014.mrc", data.astype(np.uint8).view(np.int8))
    assert read_volume(unsigned)[0].max() == 255 and np.array_equal(read_volume(unsigned)[0], data)
    assert np.array_equal(read_slab(unsigned, read_meta(unsigned), 2, 4), data[2:4])
    wrapped = np.where(data > 127, data - 256, data)
    assert np.array_equal(read_volume(signed)[0], wrapped) and np.array_equal(read_volume(plain)[0], wrapped)


# IMOD's rule without the stamp (libcfshr/b3dutil.c, readBytesSigned), written out from its source:
#   dmin < 0 and dmax < 128 -> signed; dmin >= 0 and dmax >= 128 -> unsigned;
#   dmin < 0 and dmax >= 128 -> signed if -dmin > dmax - 128; dmin >= 0 and dmax < 128 -> unsigned.
@pytest.mark.parametrize(("dmin", "dmax", "signed"), [
    (141.0, 163.0, False),  # the TILT/COMBINEFFT/WARPVOL tomogram of issue 12
    (0.0, 255.0, False), (-128.0, 127.0, True), (-3.0, 100.0, True), (12.0, 100.0, False),
    (-100.0, 200.0, True), (-20.0, 200.0, False), (-72.0, 200.0, False), (-73.0, 200.0, True),
])
def test_bytes_without_imod_stamp_follow_imods_min_max_rule(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           dmin: float, dmax: float, signed: bool) -> None:
    stored = np.array([0, 1, 127, 128, 141, 200, 255], dtype=np.uint8).reshape(1, 1, 7)
    p = raw_mrc(tmp_path / f"b{dmin:g}_{dmax:g}.mrc", stored)
    blob = bytearray(p.read_bytes())
    struct.pack_into("<2f", blob, 76, dmin, dmax)  # only the header's evidence changes, not the bytes
    p.write_bytes(bytes(blob))
    expected = [0, 1, 127, -128, -115, -56, -1] if signed else [0, 1, 127, 128, 141, 200, 255]
    with caplog.at_level(logging.WARNING, logger="cryocare_torch.io.mrc"):
        assert read_volume(p)[0].ravel().tolist() == expected
    lines = [r.getMessage() for r in caplog.records if "mode 0" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {p}:")
    assert ("signed bytes (-128..127)" if signed else "unsigned bytes (0..255)") in lines[0]
    assert f"{dmin:g}/{dmax:g}" in lines[0]


def test_issue_12_imod_tomogram_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mode 0, no ``MAP `` ID, machine stamp 0, no imodStamp, min/max 141/163, labels from TILT/COMBINEFFT/WARPVOL."""
    data = np.random.default_rng(3).integers(141, 164, (6, 10, 12)).astype(np.uint8)
    data.flat[0], data.flat[1] = 141, 163
    labels = ("TILT: Tomographic reconstruction", "COMBINEFFT: Combined FFTs", "WARPVOL: warped volume")
    p = raw_mrc(tmp_path / "full.rec", data, map_id=b"\0\0\0\0", machst=b"\0\0\0\0", labels=labels)
    blob = bytearray(p.read_bytes())  # IMOD's old-style origin: x at 212, y at 216, z at 208 (mrcfiles.c)
    struct.pack_into("<3f", blob, 208, -30.0, 10.0, 20.0)
    p.write_bytes(bytes(blob))
    meta = read_meta(p)
    assert meta.dtype == "|u1" and meta.origin == pytest.approx((10.0, 20.0, -30.0)) and meta.labels == labels
    out = tmp_path / "g.mrc"
    assert main(["baseline", str(p), "--method", "gaussian", "--sigma", "1.0", "--output", str(out),
                 "--threads", "1"]) == 0
    g, _ = read_volume(out)
    assert float(g.min()) >= 141.0 and float(g.max()) <= 163.0  # was -115..-93 read as signed


@pytest.mark.parametrize("mapcrs", [(2, 1, 3), (3, 2, 1), (3, 1, 2), (1, 3, 2)])
def test_axis_orders_are_transposed_to_zyx(tmp_path: Path, volume: np.ndarray, mapcrs: tuple[int, int, int]) -> None:
    # disk axis k (0 sections, 1 rows, 2 columns) holds space axis (maps, mapr, mapc)[k]; zyx index = 3 - axis
    space = (mapcrs[2], mapcrs[1], mapcrs[0])
    disk = volume.transpose([3 - a for a in space])
    p = raw_mrc(tmp_path / "emdb.map", disk, mapcrs=mapcrs, origin=(-40.0, 12.5, 3.0), start=(-3, -3, 0))
    meta = read_meta(p)
    assert meta.shape == volume.shape and meta.voxel_size == pytest.approx((13.48,) * 3)
    assert meta.origin == pytest.approx((-40.0, 12.5, 3.0)) and meta.start == (-3, -3, 0)
    assert np.array_equal(read_volume(p)[0], volume)
    assert np.array_equal(np.asarray(open_memmap(p)[0]), volume)
    assert np.array_equal(read_slab(p, meta, 2, 5), volume[2:5])
    out = write_volume(tmp_path / "copy.mrc", read_volume(p)[0], meta)  # written back in standard order
    assert read_meta(out).axes == (0, 1, 2) and np.array_equal(read_volume(out)[0], volume)


def test_cli_filters_a_permuted_map_like_the_standard_one(tmp_path: Path, volume: np.ndarray) -> None:
    standard = raw_mrc(tmp_path / "standard.mrc", volume)
    permuted = raw_mrc(tmp_path / "permuted.mrc", volume.transpose(2, 1, 0), mapcrs=(3, 2, 1))
    for src in (standard, permuted):
        assert main(["baseline", str(src), "--method", "gaussian", "--sigma", "1.5", "--output",
                     str(tmp_path / f"{src.stem}_g.mrc"), "--threads", "1"]) == 0
    a, meta = read_volume(tmp_path / "standard_g.mrc")
    b, _ = read_volume(tmp_path / "permuted_g.mrc")
    np.testing.assert_allclose(b, a, atol=1e-6)
    assert meta.voxel_size == pytest.approx((13.48,) * 3)


def test_fei_extended_header_and_big_endian(tmp_path: Path, volume: np.ndarray) -> None:
    ext = bytes(range(256)) * 3
    fei = raw_mrc(tmp_path / "fei.mrc", volume, ext=ext, exttyp=b"FEI1", ispg=0)
    meta = read_meta(fei)
    assert meta.data_offset == 1024 + len(ext) and meta.is_stack
    assert np.array_equal(read_volume(fei)[0], volume)
    big = raw_mrc(tmp_path / "big.mrc", volume, big_endian=True)
    assert read_meta(big).dtype == ">f4" and np.array_equal(read_volume(big)[0], volume)
    assert np.array_equal(read_slab(big, read_meta(big), 1, 3), volume[1:3])


@pytest.mark.parametrize("big_endian", [False, True])
def test_missing_machine_stamp_is_read_with_a_warning(tmp_path: Path, volume: np.ndarray, big_endian: bool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    p = raw_mrc(tmp_path / "old.mrc", volume, big_endian=big_endian, machst=b"\0\0\0\0")
    with caplog.at_level(logging.WARNING, logger="cryocare_torch.io.mrc"):
        assert np.array_equal(read_volume(p)[0], volume)
    assert "machine stamp" in caplog.text and ("big" if big_endian else "little") in caplog.text


def test_header_without_map_id(tmp_path: Path, volume: np.ndarray) -> None:
    old = raw_mrc(tmp_path / "pre2000.mrc", volume, map_id=b"\0\0\0\0")
    assert np.array_equal(read_volume(old)[0], volume)  # exactly header + data: an old MRC
    odd = tmp_path / "odd.mrc"
    odd.write_bytes(old.read_bytes() + b"\0" * 64)  # not exactly: refused as before
    with pytest.raises(InputFileError, match="not a valid MRC file .*Map ID"):
        read_meta(odd)


def test_axis_order_must_be_a_permutation(tmp_path: Path, volume: np.ndarray) -> None:
    bad = tmp_path / "bad.mrc"
    blob = bytearray(raw_mrc(tmp_path / "std.mrc", volume).read_bytes())
    blob[64:76] = struct.pack("<3i", 1, 1, 3)
    bad.write_bytes(bytes(blob))
    with pytest.raises(InputFileError, match="not a permutation of 1, 2, 3") as err:
        read_meta(bad)
    assert str(bad) in str(err.value)
    unset = tmp_path / "unset.mrc"
    blob[64:76] = bytes(12)  # mapc/mapr/maps left 0 by the writer: standard order
    unset.write_bytes(bytes(blob))
    assert np.array_equal(read_volume(unset)[0], volume)
