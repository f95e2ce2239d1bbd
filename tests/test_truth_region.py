"""Where ``cryocare evaluate`` estimates the FSC against the truth: the slab the network never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryocare_torch.config import CryocareConfig
from cryocare_torch.io.atomic import atomic_torch_save
from cryocare_torch.report.truth_estimate import unseen_region
from cryocare_torch.train import train
from cryocare_torch.train.checkpoint import read_checkpoint

SHAPE = (16, 32, 48)  # x longer than y, like K3 data


def test_region_from_the_checkpoint_and_from_an_older_checkpoint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(SHAPE).astype(np.float32)
    pair = (base + rng.standard_normal(SHAPE).astype(np.float32), base + rng.standard_normal(SHAPE).astype(np.float32))
    cfg = CryocareConfig.model_validate({"model": {"n_first": 4, "gaussian_skip": False, "depth": 2},
                                         "patches": {"patch_size": 16, "n_patches": 16},
                                         "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2,
                                                   "precision": "fp32", "num_threads": 1}})
    model = train([pair], tmp_path / "m", cfg, progress=False).best.parent
    even = tmp_path / "even.mrc"  # not the training file's name: found by shape
    # val_fraction 0.1 of 32 = 4 < patch 16: the last 16 voxels of y
    region = unseen_region(model, even, SHAPE)
    assert region.ranges == [[0, 16], [16, 32], [0, 48]] and not region.biased
    assert "recorded" in region.source and region.normalization is not None
    # a checkpoint written before the region was recorded: recomputed with its rule (longer axis x first)
    raw = read_checkpoint(model / "best.pt")
    for p in raw["normalization"]["pairs"]:
        del p["validation_region"]
    atomic_torch_save(raw, model / "best.pt")
    region = unseen_region(model, even, SHAPE)
    assert region.ranges == [[0, 16], [0, 32], [32, 48]] and not region.biased and "older" in region.source
    # a tomogram of another shape was never seen: whole volume, unbiased; no model: whole volume, biased
    assert unseen_region(model, even, (16, 40, 48)).ranges == [[0, 16], [0, 40], [0, 48]]
    assert not unseen_region(model, even, (16, 40, 48)).biased
    assert unseen_region(None, even, SHAPE).biased
