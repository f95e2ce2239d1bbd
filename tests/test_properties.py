"""Property-based tests (hypothesis): the tiler on random shapes, and parsers/MRC headers on random input.

Examples are bounded (``max_examples``) and small so the whole file runs in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cryocare_torch.errors import CryocareError, InputFileError
from cryocare_torch.io.aretomo import read_aln
from cryocare_torch.io.imod import read_com, read_tlt, read_xf
from cryocare_torch.io.mdoc import read_mdoc
from cryocare_torch.io.mrc import read_meta, read_slab, read_volume, write_volume
from cryocare_torch.io.pairs import read_pair_list
from cryocare_torch.io.star import read_tomograms_star
from cryocare_torch.tiling import extract, make_grid, plan_slabs, stitch

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------ tiler


@st.composite
def tilings(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int], list[int], list[int]]:
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(nd))
    tiles, overlaps, mults = [], [], []
    for _ in range(nd):
        m = draw(st.sampled_from([1, 2, 4, 8]))
        t = draw(st.integers(1, 24))
        tile = -(-t // m) * m  # plan_axis rounds the tile up to the multiple
        overlaps.append(draw(st.integers(0, tile - 1)))
        tiles.append(t)
        mults.append(m)
    return shape, tiles, overlaps, mults


@FAST
@given(tilings())
def test_tiles_cover_every_voxel_and_blend_weights_sum_to_one(case) -> None:  # type: ignore[no-untyped-def]
    shape, tiles, overlaps, mults = case
    grid = make_grid(shape, tiles, overlaps, mults)
    covered = np.zeros(grid.padded_shape, dtype=np.int32)
    weight = np.zeros(grid.padded_shape, dtype=np.float64)
    for idx in grid.indices():
        sl = grid.slices(idx)
        for s, n in zip(sl, grid.padded_shape, strict=True):
            assert s.start >= 0 and s.stop <= n  # tiles lie inside the padded data
        covered[sl] += 1
        weight[sl] += grid.weight(idx)
    inner = tuple(slice(0, n) for n in shape)
    assert covered[inner].min() >= 1
    np.testing.assert_allclose(weight[inner], 1.0, rtol=0, atol=1e-6)
    for a, t, o, m in zip(grid.axes, tiles, overlaps, mults, strict=True):
        assert a.tile % m == 0 and a.padded >= a.length
        if a.n > 1:  # neighbours share at least the requested overlap
            assert all(a.overlaps(i)[1] >= o for i in range(a.n - 1))
            if -(-t // m) * m - o >= m:  # room for aligned starts: on the U-Net's pooling grid, ending < m past
                assert all(s % m == 0 for s in a.starts) and a.padded < a.length + m
    assert grid.n_tiles == len(list(grid.indices()))


@FAST
@given(tilings(), st.integers(0, 2**31 - 1))
def test_identity_tile_then_stitch_returns_the_input(case, seed: int) -> None:  # type: ignore[no-untyped-def]
    shape, tiles, overlaps, mults = case
    grid = make_grid(shape, tiles, overlaps, mults)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))
    y = stitch(grid, extract(grid, x))
    assert y.shape == x.shape
    cover = np.zeros(grid.padded_shape, dtype=np.int32)
    for idx in grid.indices():
        cover[grid.slices(idx)] += 1
    k = torch.from_numpy(cover[tuple(slice(0, n) for n in shape)]).float()
    # y = sum_i w_i x with sum_i w_i = 1 (float64, then float32): each of the k terms is rounded once when the
    # weight is cast, once in the product and once when added, so |y - x| <= 3 k eps |x|
    eps = torch.finfo(torch.float32).eps
    assert bool(((y - x).abs() <= 3 * k * eps * x.abs()).all())
    assert torch.equal(y[k == 1], x[k == 1])  # a voxel seen by one tile is copied exactly


@FAST
@given(st.integers(1, 200), st.integers(1, 64), st.integers(0, 63), st.sampled_from([1, 4, 8]), st.integers(1, 4))
def test_slabs_partition_the_z_axis(length: int, tile: int, overlap: int, m: int, rows: int) -> None:
    tile_r = -(-tile // m) * m
    assume(overlap < tile_r)
    axis = make_grid((length,), tile, overlap, m).axes[0]
    slabs = plan_slabs(axis, rows)
    assert slabs[0].out_z0 == 0 and slabs[-1].out_z1 == length
    for a, b in zip(slabs, slabs[1:], strict=False):
        assert a.out_z1 == b.out_z0 == b.in_z0  # outputs tile the axis; the next slab starts where output ended
    for s in slabs:
        assert s.in_z0 <= s.out_z0 <= s.out_z1 <= max(s.in_z1, length)
    assert sorted(r for s in slabs for r in s.rows) == list(range(axis.n))


# ------------------------------------------------------------------------------------------------ parsers

PARSERS = {"tlt": read_tlt, "xf": read_xf, "aln": lambda p: read_aln(p), "mdoc": read_mdoc, "com": read_com,
           "txt": read_pair_list, "star": read_tomograms_star}

# text that looks like the formats: their keywords, numbers and separators, in random order
TOKENS = st.sampled_from([
    "# AreTomo Alignment / Priims bprmMn", "# RawSize = 64 64 9", "# NumPatches = 0", "# DarkFrame = 0 1 -60",
    "# SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT", "# Local Alignment", "[ZValue = 0]", "[ZValue = 1]",
    "[FrameSet = 0]", "[T = SerialEM: x]", "TiltAngle = 3.0", "TiltAngle =", "PixelSpacing = 12", "Montage = 1",
    "ExposureDose = 3", "DateTime = 30-Nov-15  15:21:38", "NumSubFrames = x", "data_global", "loop_",
    "_rlnTomoName #1", "_rlnTomoReconstructedTomogramHalf1 #2", "$tilt -StandardInput", "THICKNESS 100",
    "even odd", "a.mrc b.mrc", "1.0 0.0 0.0 1.0 2.0 3.0", "0 -3.0 1.0 0.0 0.0 1.0 1.0 1.0 0.0 -60", "nan", "inf",
    "1e308", "-0", "=", "[", "]", "#", "\t", ",", "\"", "'", "\\", "", " ", "\x00", "\ufeff", "é", "1e999",
])
TEXT = st.one_of(
    st.lists(st.one_of(TOKENS, st.text(max_size=20)), max_size=25).map("\n".join),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PARSERS)), TEXT)
def test_parsers_raise_only_input_file_errors(kind: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"fuzz.{kind}"
        p.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            PARSERS[kind](p)
        except InputFileError as exc:
            msg = str(exc)
            assert "\n" not in msg and str(p) in msg  # one line, naming the file
        except CryocareError as exc:  # pairs: a listed file that is missing is an input problem too
            raise AssertionError(f"{kind}: {type(exc).__name__} instead of InputFileError: {exc}") from None


# ------------------------------------------------------------------------------------------------ MRC headers

_GOOD: dict[str, bytes] = {}


def good_mrc() -> bytes:
    if "b" not in _GOOD:
        with tempfile.TemporaryDirectory() as d:
            data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
            _GOOD["b"] = write_volume(Path(d) / "g.mrc", data, voxel_size=2.0).read_bytes()
    return _GOOD["b"]


def check_consistent(blob: bytes) -> None:
    """read_meta either refuses with InputFileError, or its answer can be read back in full."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.mrc"
        p.write_bytes(blob)
        try:
            meta = read_meta(p)
        except InputFileError as exc:
            assert "\n" not in str(exc) and str(p) in str(exc)
            return
        assert all(s > 0 for s in meta.shape)
        assert all(np.isfinite(v) and v >= 0 for v in meta.voxel_size), meta.voxel_size  # 0 = unknown
        assert all(np.isfinite(v) for v in meta.origin), meta.origin
        need = meta.data_offset + int(np.prod(meta.shape)) * np.dtype(meta.dtype).itemsize
        assert need <= len(blob)
        arr, _ = read_volume(p)
        assert arr.shape == meta.shape and arr.dtype == np.float32
        if meta.ndim == 3:
            assert read_slab(p, meta, 0, 1).shape == (1, *meta.shape[1:])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_header_bytes(mutations: list[tuple[int, int]]) -> None:
    blob = bytearray(good_mrc())
    for off, value in mutations:
        blob[off] = value
    check_consistent(bytes(blob))


WORDS = {"nx": 0, "ny": 4, "nz": 8, "mode": 12, "mx": 28, "nsymbt": 92, "ispg": 88, "nlabl": 220}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(WORDS)), st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=3))
def test_mutated_header_fields(fields: dict[str, int]) -> None:
    blob = bytearray(good_mrc())
    for name, value in fields.items():
        blob[WORDS[name] : WORDS[name] + 4] = np.int32(value).tobytes()
    check_consistent(bytes(blob))


@FAST
@given(st.integers(0, 1200), st.binary(max_size=600))
def test_random_bytes_after_a_valid_start(keep: int, tail: bytes) -> None:
    check_consistent(good_mrc()[:keep] + tail)
