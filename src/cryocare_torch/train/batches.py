"""Seeded, stateless batch streams over :class:`~cryocare_torch.patches.PatchPairs`.

Batch ``k`` of epoch ``e`` depends only on ``(seed, e, k)``: a run resumed in the middle of an epoch
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..patches import PatchPairs, augment_batch


def train_batches(
    data: PatchPairs,
    *,
    epoch: int,
    batch_size: int,
    steps: int,
    seed: int,
    augment: bool = True,
    start: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input, target) batches ``(B, 1, *spatial)`` for steps ``start..steps-1`` of ``epoch``.

    Stateless: batch ``k`` of epoch ``e`` depends only on ``(seed, e, k)``, so a resumed run sees the
    same batches as an uninterrupted one. Indices run through shuffled passes over all patches.
    """
    n = len(data)
    if n == 0:
        return
    rng = np.random.default_rng([seed, epoch, 1])
    passes = -(-steps * batch_size // n)
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    for k in range(start, steps):
        batch = data.get_batch(order[k * batch_size : (k + 1) * batch_size])
        if augment:
            batch = augment_batch(batch, np.random.default_rng([seed, epoch, k, 2]))
        yield batch[:, 0:1], batch[:, 1:2]


def val_batches(data: PatchPairs, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validation batches in order, no augmentation: input = even half, target = odd half."""
    for s in range(0, len(data), batch_size):
        batch = data.get_batch(np.arange(s, min(s + batch_size, len(data))))
        yield batch[:, 0:1], batch[:, 1:2]
