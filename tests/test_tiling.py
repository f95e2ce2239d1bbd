"""Tile grids, blending weights, padding and z-slab plans (no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryocare_torch.tiling import extract, make_grid, pad_end, pad_end_, plan_axis, plan_slabs, stitch


@pytest.mark.parametrize(
    "length,tile,overlap,m",
    [(50, 16, 4, 4), (33, 16, 8, 4), (7, 16, 4, 4), (16, 16, 4, 4), (17, 16, 8, 4), (1, 16, 0, 8), (100, 24, 0, 1),
     (5, 3, 2, 1)],
)
def test_axis_tiles_cover_every_voxel_and_weights_sum_to_one(length: int, tile: int, overlap: int, m: int) -> None:
    ax = plan_axis(length, tile, overlap, m)
    assert ax.tile % m == 0 and ax.tile <= max(tile, m) + m
    assert ax.padded >= length
    covered = np.zeros(ax.padded)
    for i, s in enumerate(ax.starts):
        assert s >= 0 and s + ax.tile <= ax.padded
        w = ax.weight(i)
        assert np.all(w >= 0) and np.all(w <= 1 + 1e-12)
        covered[s : s + ax.tile] += w
    np.testing.assert_allclose(covered, 1.0, atol=1e-12)
    if length >= ax.tile:  # tiles start on multiples of m, end within m - 1 voxels past the data, share `overlap`
        assert all(st % m == 0 for st in ax.starts) and length <= ax.padded < length + m
        for i in range(ax.n - 1):
            assert ax.starts[i] + ax.tile - ax.starts[i + 1] >= overlap
    else:
        assert ax.n == 1 and ax.tile == -(-length // m) * m


def test_single_coverage_has_weight_one_and_edge_third_of_overlap_is_dropped() -> None:
    ax = plan_axis(40, 16, 8, 4)  # starts 0, 8, 16, 24
    assert ax.starts == (0, 8, 16, 24)
    w0, w1 = ax.weight(0), ax.weight(1)
    assert np.all(w0[:8] == 1)  # only tile 0 covers 0..7
    assert np.all(w1[:2] == 0) and np.all(w0[14:] == 0)  # 8 // 3 = 2 voxels of the overlap at each tile's edge
    assert np.all(w1[2:6] > 0) and np.all(w1[2:6] < 1)  # smooth ramp in between
    ax = plan_axis(20, 16, 12, 4)  # two tiles overlapping by 12: a third (4), not a quarter (3), is dropped
    assert ax.starts == (0, 4)
    w0, w1 = ax.weight(0), ax.weight(1)
    assert np.all(w0[:4] == 1) and np.all(w1[12:] == 1)
    assert np.all(w1[:4] == 0) and np.all(w0[12:] == 0)
    assert np.all(w1[4:8] > 0) and np.all(w1[4:8] < 1) and np.allclose(w0[4:16] + w1[:12], 1)


def test_overlap_must_be_smaller_than_tile() -> None:
    with pytest.raises(ValueError):
        plan_axis(100, 16, 16, 1)


@pytest.mark.parametrize(
    "shape,tile,overlap,m",
    [((7, 33, 50), 16, 6, 4), ((3, 5, 9), 16, 4, 4), ((33, 50), 16, 4, 4), ((40, 37, 61), 24, 8, 8),
     ((1, 64, 20), (1, 16, 16), (0, 4, 4), (1, 4, 4))],
)
def test_extract_then_stitch_is_identity(shape: tuple[int, ...], tile, overlap, m) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(shape)
    grid = make_grid(shape, tile, overlap, m)
    assert all(t % mm == 0 for t, mm in zip(grid.tile_shape, np.broadcast_to(m, len(shape)), strict=True))
    y = stitch(grid, extract(grid, x))
    assert y.shape == x.shape
    assert float((y - x).abs().max()) < 1e-6


def test_pad_end_reflects_where_possible_else_replicates() -> None:
    x = torch.arange(5.0)
    assert pad_end(x, (8,)).tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
    assert pad_end(x, (12,)).tolist() == [0, 1, 2, 3, 4] + [4] * 7
    y = pad_end(torch.ones(2, 1, 3), (2, 4, 5))
    assert y.shape == (2, 4, 5) and bool((y == 1).all())
    assert pad_end(x, (5,)) is x


@pytest.mark.parametrize("length,tile,overlap,rows", [(100, 16, 6, 1), (100, 16, 6, 3), (10, 16, 4, 1), (9, 1, 0, 4)])
def test_slabs_partition_output_and_chain_inputs(length: int, tile: int, overlap: int, rows: int) -> None:
    ax = plan_axis(length, tile, overlap, 1 if tile == 1 else 4)
    slabs = plan_slabs(ax, rows)
    assert [r for s in slabs for r in s.rows] == list(range(ax.n))
    assert slabs[0].out_z0 == 0 and slabs[-1].out_z1 == length
    for a, b in zip(slabs, slabs[1:], strict=False):
        assert a.out_z1 == b.out_z0 == b.in_z0  # the next slab starts where this one's output ends
        assert a.in_z1 >= a.out_z1  # carried accumulator is non-negative
    for s in slabs:
        assert s.in_z0 == ax.starts[s.rows[0]] and s.in_z1 == ax.starts[s.rows[-1]] + ax.tile
        # no later tile touches the finished output range
        later = [ax.starts[r] for t in slabs if t.rows[0] > s.rows[-1] for r in t.rows]
        assert all(z >= s.out_z1 for z in later)


@pytest.mark.parametrize("valid", [(3, 5, 4), (1, 2, 7), (4, 1, 1), (2, 3, 2)])
def test_pad_end_in_place_matches_pad_end(valid: tuple[int, ...]) -> None:
    target = (5, 7, 9)
    data = torch.arange(float(np.prod(valid))).reshape(valid)
    buf = torch.full(target, -1.0)
    buf[: valid[0], : valid[1], : valid[2]] = data
    assert torch.equal(pad_end_(buf, valid), pad_end(data, target))
    one = torch.zeros(8)
    one[:5] = torch.arange(5.0)
    assert pad_end_(one, (5,)).tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
