"""Same seed, data and device give the same patches, the same trained weights and the same output bytes;
another seed gives other patches and weights (so the checks can fail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from badfiles import noisy_pair
from cryocare_torch.cli.main import main
from cryocare_torch.io.mrc import open_memmap
from cryocare_torch.patches import build_patch_data
from cryocare_torch.train.batches import train_batches
from cryocare_torch.train.checkpoint import read_checkpoint

TINY = ["--patch-size", "16", "--n-patches", "24", "--epochs", "2", "--batch-size", "4", "--depth", "1",
        "--set", "model.n_first=4", "--precision", "fp32", "--threads", "1"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return noisy_pair(tmp_path_factory.mktemp("det"), shape=(20, 40, 40), seed=2)


def _patches(pair: tuple[Path, Path], seed: int, cache_gb: float = 1.0):  # noqa: ANN202
    vols = [open_memmap(p)[0] for p in pair]
    return build_patch_data([tuple(vols)], ndim=3, patch_size=16, n_patches=40, val_fraction=0.2, seed=seed,
                            cache_gb=cache_gb)


def test_same_seed_same_patches(pair: tuple[Path, Path]) -> None:
    a, b, c = _patches(pair, 7), _patches(pair, 7), _patches(pair, 8)
    assert np.array_equal(a.train.index, b.train.index) and np.array_equal(a.val.index, b.val.index)
    assert not np.array_equal(a.train.index, c.train.index)
    assert a.stats == b.stats
    everything = np.arange(len(a.train))
    assert torch.equal(a.train.get_batch(everything), b.train.get_batch(everything))
    # read from the inputs per batch instead of cached: the same values (both round to float16)
    uncached = _patches(pair, 7, cache_gb=0.0)
    assert not uncached.train.cached and a.train.cached
    assert torch.equal(a.train.get_batch(everything), uncached.train.get_batch(everything))
    # the batch stream depends only on (seed, epoch, step): a stream started at step 3 matches
    full = list(train_batches(a.train, epoch=1, batch_size=4, steps=6, seed=7))
    tail = list(train_batches(b.train, epoch=1, batch_size=4, steps=6, seed=7, start=3))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(full[3:], tail, strict=True))
    other = list(train_batches(a.train, epoch=2, batch_size=4, steps=6, seed=7))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(full, other, strict=True))


def test_same_seed_same_weights_and_prediction_bytes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    e, o = (str(p) for p in pair)
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["train", "--even", e, "--odd", o, "--model-dir", str(tmp_path / name), *TINY,
                     "--seed", seed]) == 0
    ck = {n: read_checkpoint(tmp_path / n / "best.pt") for n in "abc"}
    sa, sb, sc = (ck[n]["model_state"] for n in "abc")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [h["val_loss"] for h in ck["a"]["history"]] == [h["val_loss"] for h in ck["b"]["history"]]
    assert ck["a"]["normalization"] == ck["b"]["normalization"]

    outs = []
    for name in ("a", "b", "c"):
        out = tmp_path / f"{name}.mrc"
        # default precision (bf16 autocast where the CPU has it), several tiles, halves written too
        assert main(["predict", "--model", str(tmp_path / name / "best.pt"), "--even", e, "--odd", o, "--output",
                     str(out), "--tile-size", "16", "--threads", "1", "--write-halves"]) == 0
        outs.append([out.read_bytes(), out.with_name(f"{name}_even.mrc").read_bytes()])
    assert outs[0] == outs[1]
    assert outs[0][0] != outs[2][0]
