"""Tiled prediction: exactness, conv equivalence, file round trips, atomic failure, refusals."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cryocare_torch.config import PredictConfig
from cryocare_torch.errors import CheckpointError, ConfigError, DataError, DeviceError, OutputError
from cryocare_torch.io.mrc import read_meta, read_volume, write_volume
from cryocare_torch.predict import (
    TilePlan,
    choose_tiling,
    predict_files,
    predict_pair_arrays,
    predict_tensor,
)
from cryocare_torch.predict.arrays import run_with_retry
from cryocare_torch.predict.engine import TileTooLarge
from cryocare_torch.predict.memory import bytes_per_voxel, device_budget_bytes, slab_bytes_per_section
from cryocare_torch.tiling import pad_end


class Identity(nn.Module):
    def __init__(self, ndim: int = 3, multiple: int = 4) -> None:
        super().__init__()
        self.ndim, self.size_multiple = ndim, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == self.ndim + 2 and all(s % self.size_multiple == 0 for s in x.shape[2:])
        return x.clone()


class TwoConvs(nn.Module):
    """Zero-padded 3x3(x3) convs; receptive-field radius 2."""

    def __init__(self, ndim: int = 3, multiple: int = 4) -> None:
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        torch.manual_seed(0)
        self.net = nn.Sequential(conv(1, 4, 3, padding=1), nn.Tanh(), conv(4, 1, 3, padding=1))
        self.ndim, self.size_multiple = ndim, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FailOnBatch(Identity):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("boom")
        return x.clone()


def bundle(model: nn.Module, ndim: int = 3, mean: float = 0.0, std: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(model=model, ndim=ndim, normalization={"mean": mean, "std": std}, config=None)


def fast(**kw: object) -> PredictConfig:
    return PredictConfig(**{"tile_size": 16, "overlap": 8, "batch_size": 3, "device": "cpu", "precision": "fp32",
                            "num_threads": 1, **kw})


# --------------------------------------------------------------------------- in memory


@pytest.mark.parametrize("shape", [(7, 33, 50), (3, 5, 9), (21, 16, 16), (40, 37, 61)])
def test_identity_3d_is_exact(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    y = predict_tensor(Identity(3), x, tile_size=16, overlap=6, batch_size=3)
    assert y.shape == x.shape and float((y - x).abs().max()) < 1e-6


@pytest.mark.parametrize("shape,ndim", [((33, 50), 2), ((5, 9), 2), ((4, 33, 50), 2)])
def test_identity_2d_image_and_stack_is_exact(shape: tuple[int, ...], ndim: int) -> None:
    x = torch.randn(shape)
    y = predict_tensor(Identity(ndim), x, tile_size=16, overlap=4, batch_size=5)
    assert y.shape == x.shape and float((y - x).abs().max()) < 1e-6


@pytest.mark.parametrize("ndim,shape", [(3, (20, 36, 44)), (2, (45, 70))])
def test_conv_tiled_equals_untiled_when_margin_covers_receptive_field(ndim: int, shape: tuple[int, ...]) -> None:
    # Blending drops the third of each overlap nearest a tile edge, so overlap 8 (margin 2) covers the
    # receptive-field radius 2 of two 3x3 convs: tiled == untiled everywhere. Untiled means what a single tile
    # sees: the data reflect-padded at the end to a multiple of 4 (the last tiles, on the multiple-of-4 grid,
    # end there too), then zero padding.
    model = TwoConvs(ndim)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = model(pad_end(x, [-(-n // 4) * 4 for n in shape])[None, None])[0, 0]
        ref = ref[tuple(slice(0, n) for n in shape)]
    y = predict_tensor(model, x, tile_size=16, overlap=8, batch_size=4)
    assert float((y - ref).abs().max()) < 1e-5
    # the check is sensitive: with overlap 4 (margin 1 < radius 2) tile edges leak into the result
    y4 = predict_tensor(model, x, tile_size=16, overlap=4, batch_size=4)
    assert float((y4 - ref).abs().max()) > 1e-4


def test_conv_on_data_smaller_than_a_tile_matches_padded_reference() -> None:
    model = TwoConvs(3, multiple=8)
    x = torch.randn(5, 11, 13)
    with torch.no_grad():
        ref = model(pad_end(x, (8, 16, 16))[None, None])[0, 0, :5, :11, :13]
    y = predict_tensor(model, x, tile_size=32, overlap=8)
    assert float((y - ref).abs().max()) < 1e-5


def test_pair_normalisation_makes_prediction_scale_invariant() -> None:
    model = TwoConvs(3)
    e, o = torch.randn(12, 20, 24), torch.randn(12, 20, 24)
    m1, e1, o1 = predict_pair_arrays(model, e, o, tile_size=16, overlap=8)
    m2, e2, o2 = predict_pair_arrays(model, 1000 * e + 50, 1000 * o + 50, tile_size=16, overlap=8)
    torch.testing.assert_close(m2, 1000 * m1 + 50, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(m1, 0.5 * (e1 + o1))
    mi, ei, oi = predict_pair_arrays(Identity(3), e, o, tile_size=16, overlap=8)
    assert float((ei - e).abs().max()) < 1e-5 and float((mi - 0.5 * (e + o)).abs().max()) < 1e-5


def test_choose_tiling_respects_budget_multiple_and_data() -> None:
    p = choose_tiling((300, 1000, 1000), 4, 600.0, 2**30)
    assert p.tile % 4 == 0 and math.prod(p.shape(3)) * 600 * p.batch_size <= 2**30 and p.overlap == p.tile // 4
    big = choose_tiling((300, 1000, 1000), 4, 600.0, 8 * 2**30)
    assert big.tile >= p.tile
    assert choose_tiling((10, 12, 9), 4, 600.0, 2**30).tile == 12  # capped by the data
    assert choose_tiling((64, 64), 4, 600.0, 2**30, tile_size=30).tile == 32
    with pytest.raises(ConfigError):
        choose_tiling((64, 64, 64), 4, 600.0, 2**30, tile_size=16, overlap=16)
    # on CPU the z-slab (input halves + accumulators, per section) shares the budget with activations
    per_z = slab_bytes_per_section((300, 1000, 1000), 1)
    s = choose_tiling((300, 1000, 1000), 4, 600.0, 2**30, slab_bytes_per_z=per_z)
    sz = s.shape(3)[0]
    assert sz < p.shape(3)[0] and math.prod(s.shape(3)) * 600 * s.batch_size + sz * per_z <= 2**30
    assert not s.over_budget
    # on a GPU activations use the GPU budget, the slab the host budget
    g = choose_tiling((300, 1000, 1000), 4, 600.0, 2**30, slab_bytes_per_z=per_z, host_budget_bytes=2**29)
    assert g.shape(3)[0] * per_z <= 2**29 and math.prod(g.shape(3)) * 600 <= 2**30
    tiny = choose_tiling((300, 1000, 1000), 4, 600.0, 2**20, slab_bytes_per_z=per_z)
    assert tiny.tile == 32 and tiny.over_budget  # never below 32 voxels (the overlap would eat the tile)
    assert choose_tiling((20, 24, 24), 4, 600.0, 2**10).tile == 24  # unless the data are smaller


def _computed_voxels(shape: tuple[int, int, int], tile: tuple[int, ...], overlap: int) -> int:
    """Voxels the network computes over ``shape`` with these tiles (edges shrunk as the planner's grid does)."""
    total = 1
    for n, t in zip(shape, tile, strict=True):
        if n <= t:
            total *= -(-n // 4) * 4
            continue
        k = math.ceil((n - t) / (t - overlap)) + 1
        total *= k * (-(-(math.ceil((n - overlap) / k) + overlap) // 4) * 4)
    return total


def test_wide_sections_get_thin_tiles_and_the_same_memory_thin_or_deep() -> None:
    # default U-Net in bf16 (232 bytes per tile voxel), 1024 x 1024 sections, 1 GiB less the fixed forward part
    budget, per_vox, ov = 2**30 - 60 * 2**20, 232.0, 28
    plans = {}
    for d in (64, 256, 1024):
        shape = (d, 1024, 1024)
        per_z = slab_bytes_per_section(shape, 1)
        p = choose_tiling(shape, 4, per_vox, budget, slab_bytes_per_z=per_z, min_overlap=ov)
        tz, t, _ = p.shape(3)
        used = min(tz, d) * t * t * per_vox + min(tz, d) * per_z
        assert used <= budget and p.overlap == ov and not p.over_budget
        plans[d] = (p, used)
        # at least as fast as every cubic tile that fits (fewest voxels computed per voxel of data)
        cubic = [c for c in range(32, 164, 4) if min(c, d) * c * c * per_vox + min(c, d) * per_z <= budget]
        best_cubic = min(_computed_voxels(shape, (c, c, c), ov) for c in cubic)
        assert _computed_voxels(shape, p.shape(3), ov) <= best_cubic
    assert plans[256][0].shape(3)[0] < plans[256][0].tile  # z-slabs dominate: thinner in z than in y/x
    peaks = [used for _, used in plans.values()]
    assert max(peaks) / min(peaks) < 1.05  # planned memory flat from 0.25 to 4 GB halves (cubic tiles: +20%)


def test_automatic_flat_tiles_give_the_untiled_result() -> None:
    model, x = TwoConvs(3), torch.randn(48, 160, 160)
    shape = tuple(x.shape)
    budget = device_budget_bytes(torch.device("cpu"), 0.05)
    plan = choose_tiling(shape, 4, bytes_per_voxel(model, torch.float32), budget,
                         slab_bytes_per_z=slab_bytes_per_section(shape, 1))
    assert plan.shape(3)[0] < plan.tile < 160  # thinner in z than in y/x, several tiles per section
    with torch.no_grad():
        ref = model(x[None, None])[0, 0]
    y = predict_tensor(model, x, memory_budget_gb=0.05)  # the same automatic plan
    assert float((y - ref).abs().max()) < 1e-5


def test_oom_retry_halves_the_tile_and_gives_up_cleanly() -> None:
    seen: list[int] = []
    logs: list[str] = []

    def attempt(p: TilePlan) -> int:
        seen.append(p.tile)
        if p.tile > 16:
            raise TileTooLarge()
        return p.tile

    assert run_with_retry(attempt, TilePlan(64, 16, 4), 4, logs.append) == 16
    assert seen == [64, 32, 16] and "tile size 32" in logs[0]

    def never(p: TilePlan) -> int:
        raise TileTooLarge()

    with pytest.raises(DeviceError):
        run_with_retry(never, TilePlan(8, 2, 1), 4, logs.append)


# --------------------------------------------------------------------------- files


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    e = rng.normal(3.0, 2.0, size=(21, 30, 37)).astype(np.float32)
    o = rng.normal(3.0, 2.0, size=(21, 30, 37)).astype(np.float32)
    meta = replace(read_meta(write_volume(tmp_path / "ref.mrc", e, voxel_size=7.5)), origin=(10.0, 20.0, 30.0))
    return write_volume(tmp_path / "even.mrc", e, meta), write_volume(tmp_path / "odd.mrc", o, meta), e, o


def test_files_round_trip_keeps_header_and_matches_in_memory(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    even, odd, e, o = pair
    out = predict_files(bundle(TwoConvs(3)), even, odd, tmp_path / "den.mrc", fast(write_halves=True),
                        progress=False)
    data, meta = read_volume(out)
    assert meta.shape == e.shape and meta.voxel_size == (7.5, 7.5, 7.5) and meta.origin == (10.0, 20.0, 30.0)
    ref = predict_pair_arrays(TwoConvs(3), e, o, tile_size=16, overlap=8, batch_size=3)
    for path, want in zip((out, tmp_path / "den_even.mrc", tmp_path / "den_odd.mrc"), ref, strict=True):
        got, _ = read_volume(path)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)  # sampled vs full statistics
    assert not list(tmp_path.glob(".*partial"))


def test_files_identity_output_is_mean_of_halves(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    even, odd, e, o = pair
    out = predict_files(bundle(Identity(3)), even, odd, tmp_path / "den.mrc", fast(overlap=2),
                        progress=False)
    np.testing.assert_allclose(read_volume(out)[0], 0.5 * (e + o), atol=1e-5)


def test_files_checkpoint_normalisation_uses_training_statistics(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    class PlusOne(Identity):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    even, odd, e, o = pair
    out = predict_files(bundle(PlusOne(3), mean=0.0, std=5.0), even, odd, tmp_path / "den.mrc",
                        fast(normalization="checkpoint"), progress=False)
    np.testing.assert_allclose(read_volume(out)[0], 0.5 * (e + o) + 5.0, atol=1e-4)
    with pytest.raises(CheckpointError):
        bad = SimpleNamespace(model=Identity(3), ndim=3, normalization=None, config=None)
        predict_files(bad, even, odd, tmp_path / "x.mrc", fast(normalization="checkpoint"), progress=False)


@pytest.mark.parametrize("shape", [(30, 37), (3, 30, 37)])
def test_files_2d_image_and_stack(tmp_path: Path, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    e, o = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    even = write_volume(tmp_path / "e.mrc", e, voxel_size=2.0)
    odd = write_volume(tmp_path / "o.mrc", o, voxel_size=2.0)
    out = predict_files(bundle(Identity(2), ndim=2), even, odd, tmp_path / "den.mrc", fast(), progress=False)
    data, meta = read_volume(out)
    assert meta.shape == shape and meta.voxel_size == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(data, 0.5 * (e + o), atol=1e-5)


def test_failure_mid_prediction_leaves_nothing(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    even, odd, _, _ = pair
    before = sorted(p.name for p in tmp_path.iterdir())
    model = FailOnBatch(3)
    with pytest.raises(RuntimeError, match="boom"):
        predict_files(bundle(model), even, odd, tmp_path / "den.mrc", fast(write_halves=True), progress=False)
    assert model.calls == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no halves, no temporary file


def test_refuses_bad_outputs_and_mismatched_inputs(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    even, odd, e, _ = pair
    b = bundle(Identity(3))
    with pytest.raises(OutputError, match="same as an input"):
        predict_files(b, even, odd, even, fast(), overwrite=True, progress=False)
    existing = write_volume(tmp_path / "exists.mrc", e)
    with pytest.raises(OutputError, match="exists"):
        predict_files(b, even, odd, existing, fast(), progress=False)
    assert predict_files(b, even, odd, existing, fast(), overwrite=True, progress=False) == existing
    other = write_volume(tmp_path / "other.mrc", e[:, :, :20], voxel_size=7.5)
    with pytest.raises(DataError, match="differ in shape") as err:
        predict_files(b, even, other, tmp_path / "a.mrc", fast(), progress=False)
    assert "even.mrc" in str(err.value) and "other.mrc" in str(err.value)
    coarse = write_volume(tmp_path / "coarse.mrc", e, voxel_size=15.0)
    with pytest.raises(DataError, match="voxel size"):
        predict_files(b, even, coarse, tmp_path / "a.mrc", fast(), progress=False)
    img = write_volume(tmp_path / "img.mrc", e[0])
    with pytest.raises(DataError, match="2D image"):
        predict_files(b, img, img, tmp_path / "a.mrc", fast(), progress=False)
    assert not (tmp_path / "a.mrc").exists()


def test_files_with_a_real_checkpoint_file(tmp_path: Path, pair, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt_mod = pytest.importorskip("cryocare_torch.train.checkpoint")
    from cryocare_torch.config import CryocareConfig, ModelConfig
    from cryocare_torch.model import build_model

    even, odd, e, _ = pair
    cfg = CryocareConfig(model=ModelConfig(depth=1, n_first=4))
    ckpt = ckpt_mod.save_checkpoint(tmp_path / "m.pt", model=build_model(cfg.model, 3), config=cfg, ndim=3,
                                    normalization={"mean": 0.0, "std": 1.0})
    logs: list[str] = []
    out = predict_files(ckpt, even, odd, tmp_path / "den.mrc", PredictConfig(device="cpu", num_threads=1),
                        progress=True, log=logs.append)
    data, meta = read_volume(out)
    assert data.shape == e.shape and np.isfinite(data).all() and meta.voxel_size == (7.5, 7.5, 7.5)
    assert any(line.startswith("running on CPU") for line in logs)
    assert any(line.startswith("tiles ") for line in logs)
    with pytest.raises(OutputError, match="same as an input"):
        predict_files(ckpt, even, odd, ckpt, PredictConfig(device="cpu"), overwrite=True, progress=False)


def test_gaussian_skip_model_has_no_seams_and_overlap_covers_its_halo() -> None:
    from cryocare_torch.config import ModelConfig
    from cryocare_torch.filters import gaussian_smooth
    from cryocare_torch.model import build_model
    from cryocare_torch.predict.memory import model_halo

    torch.manual_seed(0)
    vol = torch.randn(40, 96, 96)
    model = build_model(ModelConfig(skip_sigma=(3.0, 3.0, 3.0)), ndim=3).eval()  # untrained: exactly the filter
    assert model_halo(model) == 12
    plan = choose_tiling((40, 96, 96), 4, 100.0, 2**30, tile_size=48, min_overlap=model_halo(model))
    assert plan.overlap == 12 and plan.halved(4).overlap == 12  # also after an out-of-memory retry
    ref = gaussian_smooth(vol, (3.0, 3.0, 3.0))
    out = predict_tensor(model, vol, tile_size=64, dtype=torch.float32)
    assert float((out - ref).pow(2).mean().sqrt()) < 0.01 * float(ref.std())


class PlusRamp(Identity):
    """Adds the tile's own coordinate along one axis: a network error that does not follow a flip."""

    def __init__(self, axis: int, ndim: int = 3) -> None:
        super().__init__(ndim)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[self.axis]
        shape = [1] * x.dim()
        shape[self.axis] = n
        return x + torch.arange(n, dtype=x.dtype).reshape(shape)


@pytest.mark.parametrize(("ndim", "axis"), [(3, -1), (3, -2), (3, -3), (2, -1), (2, -2)])
def test_average_flips_undoes_each_flip_and_averages(ndim: int, axis: int) -> None:
    # 3D group {none, y, zx, zyx} (2D: {none, y, x, yx}): every axis is flipped in 2 of the 4 passes, so a ramp i
    # along it averages to (i + (n - 1 - i)) / 2 = (n - 1) / 2 everywhere; without flips the ramp stays
    from cryocare_torch.predict.engine import Forward

    shape = (2, 8, 12, 16) if ndim == 3 else (2, 1, 12, 16)
    x = torch.randn(shape)
    n = shape[axis]
    fwd = Forward(PlusRamp(axis, ndim), ndim, torch.device("cpu"), torch.float32, 2, average_flips=True)
    np.testing.assert_allclose(fwd(x).numpy(), (x + (n - 1) / 2).numpy(), atol=1e-5)
    plain = Forward(PlusRamp(axis, ndim), ndim, torch.device("cpu"), torch.float32, 2)
    ramp = torch.arange(n, dtype=torch.float32).reshape([n if i == len(shape) + axis else 1
                                                         for i in range(len(shape))])
    np.testing.assert_allclose(plain(x).numpy(), (x + ramp).numpy(), atol=1e-5)


def test_average_flips_keeps_an_equivariant_network_and_reaches_the_files(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    even, odd, e, o = pair
    out = predict_files(bundle(Identity(3)), even, odd, tmp_path / "den.mrc", fast(average_flips=True),
                        progress=False)
    np.testing.assert_allclose(read_volume(out)[0], 0.5 * (e + o), atol=1e-5)  # identity commutes with flips
    ramp = predict_files(bundle(PlusRamp(-1)), even, odd, tmp_path / "ramp.mrc", fast(average_flips=True),
                         overwrite=True, progress=False)
    got = read_volume(ramp)[0] - 0.5 * (e + o)
    # every tile's ramp became the constant (16 - 1) / 2 (in normalised units), and a blend of equal constants is
    # that constant: no trace of the ramp is left across the volume
    assert np.ptp(got) < 1e-3 * np.std(e)


def test_tiles_start_on_the_unets_pooling_grid_so_any_plan_gives_the_untiled_result() -> None:
    # A U-Net pools 2x2 blocks: it is equivariant only to shifts by 2**depth. Spread evenly, the tiles of this plan
    # would start at 0, 37, 74 (off the grid); on it (0, 28, 56, 84) every tile's interior is the untiled result,
    # and with the overlap's middle third beyond the network's reach (30 > its radius) so is every voxel.
    from cryocare_torch.config import ModelConfig
    from cryocare_torch.model import build_model

    torch.manual_seed(3)
    model = build_model(ModelConfig(depth=2, n_first=4, gaussian_skip=False), 2).eval()
    for p in model.parameters():  # weights that pass signal on (the default init nearly silences this net)
        nn.init.normal_(p, std=(2.0 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.0)
    img = torch.randn(202, 202)
    untiled = predict_tensor(model, img, tile_size=256, overlap=0, batch_size=1)
    tiled = predict_tensor(model, img, tile_size=128, overlap=90, batch_size=4)
    assert float((tiled - untiled).abs().max()) < 1e-5 * float(untiled.abs().max())
    with torch.no_grad():  # the test has teeth: off the pooling grid the same network gives another output
        shifted = model(img[None, None, 2:122, 2:122])[0, 0]
        aligned = model(img[None, None, 4:124, 4:124])[0, 0]
        ref = model(pad_end(img, (204, 204))[None, None])[0, 0]
    spread = float(ref.std())
    assert float((aligned[30:90, 30:90] - ref[34:94, 34:94]).abs().max()) < 1e-5 * spread
    assert float((shifted[30:90, 30:90] - ref[32:92, 32:92]).abs().max()) > 0.1 * spread


def test_a_missing_wedge_model_gets_the_wider_seam_overlap(tmp_path: Path, pair) -> None:  # type: ignore[no-untyped-def]
    # wedge-mode models fill low frequencies from further away: 9 voxels per U-Net level instead of 7
    # (bench/RESULTS.md, "Seams of a missing-wedge model")
    from cryocare_torch.config import CryocareConfig, ModelConfig, TrainConfig
    from cryocare_torch.model import build_model

    even, odd, _, _ = pair
    seen = {}
    for wedge in (None, (-60.0, 60.0)):
        cfg = CryocareConfig(model=ModelConfig(depth=2, n_first=4), train=TrainConfig(missing_wedge=wedge))
        ck = SimpleNamespace(model=build_model(cfg.model, 3), ndim=3, normalization=None, config=cfg)
        logs: list[str] = []
        predict_files(ck, even, odd, tmp_path / "den.mrc", PredictConfig(device="cpu", num_threads=1, tile_size=96),
                      overwrite=True, progress=False, log=logs.append)
        seen[wedge is not None] = next(line for line in logs if line.startswith("tiles "))
    assert "overlap 28," in seen[False] and "overlap 36," in seen[True]
