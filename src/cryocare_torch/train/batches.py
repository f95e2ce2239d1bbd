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
    part: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input, target) batches ``(B, 1, *spatial)`` for steps ``start..steps-1`` of ``epoch``.

    Stateless: batch ``k`` of epoch ``e`` depends only on ``(seed, e, k)``, so a resumed run sees the
    same batches as an uninterrupted one. Indices run through shuffled passes over all patches.
    ``part=(rank, world)``: only that rank's ``batch_size // world`` samples of each global batch, with
    the flips and swaps those samples get in the whole batch (the ranks' parts concatenate to it).
    """
    n = len(data)
    if n == 0:
        return
    rank, world = part
    local = batch_size // world
    rng = np.random.default_rng([seed, epoch, 1])
    passes = -(-steps * batch_size // n)
    order = np.concatenate([rng.permutation(n) for _ in range(passes)])
    for k in range(start, steps):
        first = k * batch_size + rank * local
        batch = data.get_batch(order[first : first + local])
        if augment:
            aug_rng = np.random.default_rng([seed, epoch, k, 2])
            aug_rng.random(rank * local * (batch.dim() - 1))  # skip the draws of the lower ranks' samples
            batch = augment_batch(batch, aug_rng)  # (augment_batch draws 1 + spatial-dims numbers per sample)
        yield batch[:, 0:1], batch[:, 1:2]


def val_batches(
    data: PatchPairs, batch_size: int, part: tuple[int, int] = (0, 1)
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Validation batches in order, no augmentation: input = even half, target = odd half.

    ``part=(rank, world)``: every ``world``-th batch, starting at batch ``rank``.
    """
    rank, world = part
    for s in range(rank * batch_size, len(data), world * batch_size):
        batch = data.get_batch(np.arange(s, min(s + batch_size, len(data))))
        yield batch[:, 0:1], batch[:, 1:2]
