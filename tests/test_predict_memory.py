"""Host memory of tiled prediction does not grow with the number of z-slabs (issue 16).

The resident anonymous memory (``RssAnon`` of ``/proc/self/status``) is read as every slab after the first
starts (the previous slab written, its freed pages given back): it must stay flat from the early slabs to the
last ones (within 10 MB). Read there it is the same to the MB in every run (200 MB throughout, 6 runs of 6);
read inside ``write``, before the engine gives freed pages back, it swung by 20-40 MB with the allocator's
state and the test failed about one run in four. The engine before issue 16 (new slab buffers per slab, no
``malloc_trim``; c9a6fe4's parent, adapted to this read point) grows by 16-26 MB over these slabs. The same run
with a writer that keeps each slab's output (memory not released) must show the growth (+32 MB), so the
measurement can see it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from cryocare_torch.predict.engine import Forward, run_tiled
from cryocare_torch.tiling import make_grid

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

SHAPE = (200, 256, 256)  # 0.25 MB per section: 17 slabs of 16 sections, 4 MB per slab buffer
MB = 2**20


def rss_anon_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


class PointwiseNet(nn.Module):
    """Per-voxel layers (4 channels, then 1): tile-sized activations at little compute."""

    ndim = 3
    size_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, 4).view(1, 4, 1, 1, 1))
        self.v = nn.Parameter(torch.full((1, 4, 1, 1, 1), 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.relu(x * self.w) * self.v).sum(1, keepdim=True)


def anon_after_each_slab(keep_outputs: bool) -> list[float]:
    torch.manual_seed(0)
    grid = make_grid(SHAPE, (16, 256, 256), (4, 8, 8))
    fwd = Forward(PointwiseNet().eval(), 3, torch.device("cpu"), torch.float32, batch_size=8)
    kept: list[torch.Tensor] = []
    after: list[float] = []

    def read(k: int, z0: int, z1: int, out: torch.Tensor) -> None:
        if k == 0 and z0 > 0:  # a slab starts: the previous one is written and its freed pages given back
            after.append(rss_anon_mb())
        out.fill_(float(z0 + k))

    def write(z0: int, parts: Sequence[torch.Tensor]) -> None:
        if keep_outputs:  # the defect this test guards against: per-slab memory kept alive
            kept.extend(p.clone() for p in parts)

    run_tiled(fwd, grid, read, write, n_inputs=2, average=True)
    return after


def growth_mb(after: list[float]) -> float:
    """Resident anonymous memory at the last quarter of the slabs minus at the first quarter (the first reading
    excluded: it follows the slab that allocated the buffers and warmed the allocator)."""
    q = max(1, len(after) // 4)
    return float(np.median(after[-q:]) - np.median(after[1 : 1 + q]))


def test_resident_memory_stays_flat_over_slabs() -> None:
    after = anon_after_each_slab(keep_outputs=False)
    assert len(after) >= 12
    assert growth_mb(after) < 10.0, f"RssAnon after each slab (MB): {[round(a) for a in after]}"


def test_the_measurement_sees_memory_that_is_not_released() -> None:
    after = anon_after_each_slab(keep_outputs=True)
    per_slab = 12 * SHAPE[1] * SHAPE[2] * 4 / MB  # ~12 finished sections kept per slab
    assert growth_mb(after) > 0.5 * per_slab * (len(after) // 2), [round(a) for a in after]
