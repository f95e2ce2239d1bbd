"""Downstream detection check, part 1: a small 3D U-Net segmenter and the connected-component pipeline.

As in cryo-CARE (Buchholz et al. 2019), restoration is judged by what it does for a downstream task:
a segmentation network is trained on raw and on restored tomograms with the same labels, and its
output is turned into detections the paper's way -- normalise the probability map, threshold it with
Otsu's method, split the foreground into 26-connected components and keep those above a size
threshold. Matching detections to the truth and the comparison itself live in :mod:`.detection`.

* :func:`train_segmenter` -- a :class:`Segmenter` (the project's :class:`~cryocare_torch.model.UNet`
  giving logits, no residual) trained with BCE on random patches that lie entirely inside
  ``train_region``; half of them are centred on target voxels because targets are sparse.
* :func:`segment` -- the probability map over a region, tiled with :func:`cryocare_torch.predict.predict_tensor`.
* :func:`find_components` / :func:`detections_by_size` -- Otsu, 26-connectivity, sizes and centroids.

Volumes are ``(d, h, w)`` numpy arrays or torch tensors; coordinates are ``(z, y, x)`` voxels of the
full volume. Regions are one ``slice`` per axis.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu
from torch import nn

from ..errors import ConfigError, DataError
from ..logs import Log
from ..model import UNet
from ..predict import predict_tensor
from ..runtime import resolve_device

ArrayLike = np.ndarray | torch.Tensor
Region = tuple[slice, slice, slice]
_logger = logging.getLogger("cryocare_torch.evaluate.segmentation")


def to_numpy(x: ArrayLike, dtype: type | None = np.float32) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return a if dtype is None else a.astype(dtype, copy=False)


def as_region(slices: Sequence[slice]) -> Region:
    """Three slices ``(z, y, x)`` as a :data:`Region` (raises ValueError for another count)."""
    z, y, x = slices
    return z, y, x


def resolve_region(shape: Sequence[int], region: Sequence[slice] | None) -> Region:
    """``region`` as three non-empty ``slice(start, stop)`` within ``shape`` (``None`` = everything)."""
    if region is None:
        return as_region([slice(0, int(n)) for n in shape])
    sl = tuple(region)
    if len(sl) != 3 or not all(isinstance(s, slice) for s in sl):
        raise ConfigError(f"a region must be three slices (z, y, x), got {region!r}")
    out = []
    for s, n in zip(sl, shape, strict=True):
        if s.step not in (None, 1):
            raise ConfigError(f"region slices must have step 1, got {s}")
        lo, hi, _ = s.indices(int(n))
        if hi <= lo:
            raise ConfigError(f"region {region!r} is empty for a volume of shape {tuple(shape)}")
        out.append(slice(lo, hi))
    return as_region(out)


class Segmenter(nn.Module):
    """A U-Net giving one logit per voxel, with the intensity normalisation it was trained with."""

    norm: torch.Tensor  # buffer: (mean, std)

    def __init__(self, depth: int = 2, n_first: int = 8, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.unet = UNet(3, depth=depth, n_first=n_first, residual=False)
        self.ndim = 3
        self.depth = depth  # read by the predict package (size multiple, memory)
        self.register_buffer("norm", torch.tensor([float(mean), float(std)]))

    @property
    def size_multiple(self) -> int:
        return self.unet.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for an already normalised ``(B, 1, d, h, w)`` input."""
        return self.unet(x)

    def normalise(self, volume: np.ndarray) -> np.ndarray:
        mean, std = (float(v) for v in self.norm)
        return ((volume - mean) / std).astype(np.float32, copy=False)


def _patch_shape(region: Region, patch_size: int, multiple: int) -> tuple[int, int, int]:
    shape: list[int] = []
    for s in region:
        n = min(int(patch_size), s.stop - s.start) // multiple * multiple
        if n < multiple:
            raise DataError(
                f"the training region {region} is thinner than {multiple} voxels along an axis; enlarge it"
            )
        shape.append(n)
    d, h, w = shape
    return d, h, w


def _sample_corners(
    region: Region, patch: Sequence[int], positives: np.ndarray, n: int, pos_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """``n`` patch corners fully inside ``region``; a ``pos_fraction`` of them centred on a target voxel."""
    lo = np.array([s.start for s in region])
    hi = np.array([s.stop for s in region]) - np.asarray(patch)  # largest corner
    corners = rng.integers(lo, hi + 1, size=(n, 3))
    if len(positives):
        centred = rng.random(n) < pos_fraction
        picks = positives[rng.integers(0, len(positives), size=int(centred.sum()))]
        corners[centred] = np.clip(picks - np.asarray(patch) // 2, lo, hi)
    return corners


def _training_region(vol: np.ndarray, mask: np.ndarray, train_region: Sequence[slice] | None, steps: int,
                     batch_size: int, pos_weight: float, pos_fraction: float) -> tuple[Region, float, float]:
    """The checked training region and the mean and std of its voxels (the segmenter's normalisation)."""
    if vol.ndim != 3 or vol.shape != mask.shape:
        raise DataError(f"volume {vol.shape} and labels {mask.shape} must be the same (d, h, w) shape")
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    region = resolve_region(vol.shape, train_region)
    sub, sub_mask = vol[region], mask[region]
    if not np.isfinite(sub).all():
        raise DataError("the training region contains NaN or infinite values")
    mean, std = float(sub.mean()), float(sub.std())
    if std <= 0:
        raise DataError("the training region is constant; nothing to segment")
    if int(sub_mask.sum()) == 0:
        raise DataError("the training region contains no target voxel; choose another region or label")
    if pos_weight <= 0 or not 0 <= pos_fraction <= 1:
        raise ConfigError(f"pos_weight must be > 0 and pos_fraction in [0, 1], got {pos_weight} and {pos_fraction}")
    return region, mean, std


def _batch(norm_vol: np.ndarray, mask: np.ndarray, corners: np.ndarray, patch: tuple[int, int, int],
           rng: np.random.Generator, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches at ``corners`` of the normalised volume and of the target, each flipped at random along z, y, x."""
    xs, ys = [], []
    for c in corners:
        sl = tuple(slice(int(a), int(a) + p) for a, p in zip(c, patch, strict=True))
        x, y = norm_vol[sl], mask[sl]
        flips = tuple(i for i in range(3) if rng.random() < 0.5)
        if flips:
            x, y = np.flip(x, flips), np.flip(y, flips)
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    xb = torch.from_numpy(np.stack(xs))[:, None].to(dev)
    yb = torch.from_numpy(np.stack(ys).astype(np.float32))[:, None].to(dev)
    return xb, yb


def train_segmenter(
    volume: ArrayLike,
    labels: ArrayLike,
    train_region: Sequence[slice] | None = None,
    *,
    steps: int = 1000,
    batch_size: int = 4,
    patch_size: int = 32,
    n_first: int = 8,
    depth: int = 2,
    learning_rate: float = 2e-3,
    pos_weight: float = 1.0,
    pos_fraction: float = 0.5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log: Log | None = None,
) -> Segmenter:
    """Train a :class:`Segmenter` for the boolean target ``labels`` (``(d, h, w)``, nonzero = target).

    Only voxels of ``train_region`` (default: everything) are ever read, images and labels alike.
    Patches are up to ``patch_size`` per axis. Sparse targets are balanced by sampling: ``pos_fraction``
    of the patches are centred on target voxels (about 4x the voxel prior of the simulator's decorations
    in 32^3 patches). ``pos_weight`` further weighs target voxels in the BCE loss; values well above 1
    inflate the probability of every ambiguous voxel, and on the simulator (decorations touching their
    filament) the Otsu foreground then joins decorations to the filament: sqrt(background/target) ~ 12
    gave best F1 0.33 on the noise-free tomogram where 1 gave 0.78. The default 1000 steps matter: on
    the noise-free 64 x 320 x 320 simulator tomogram (24 nm decoration period) 300 steps never reached a
    probability of 0.5 (best F1 0.36), 1000 steps gave best F1 0.90 (one fold). Augmentation flips z, y and x, which
    keeps a missing wedge in place. The intensity normalisation (mean, std of the region) is stored in
    the model.
    """
    log = log or _logger.info
    vol = to_numpy(volume)
    mask = to_numpy(labels, None) != 0
    region, mean, std = _training_region(vol, mask, train_region, steps, batch_size, pos_weight, pos_fraction)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device) if isinstance(device, str) else device
    model = Segmenter(depth=depth, n_first=n_first, mean=mean, std=std).to(dev)
    patch = _patch_shape(region, patch_size, model.size_multiple)
    positives = np.argwhere(mask[region]) + np.array([s.start for s in region])
    norm_vol = model.normalise(vol)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=dev))
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=learning_rate * 0.05)
    model.train()
    running = 0.0
    for step in range(steps):
        corners = _sample_corners(region, patch, positives, batch_size, pos_fraction, rng)
        xb, yb = _batch(norm_vol, mask, corners, patch, rng, dev)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
            log(f"segmenter step {step + 1}/{steps}: BCE {running / max(1, (step % max(1, steps // 5)) + 1):.4f}")
            running = 0.0
    return model.eval()


def segment(
    model: Segmenter,
    volume: ArrayLike,
    *,
    region: Sequence[slice] | None = None,
    context: int = 8,
    device: str | torch.device = "cpu",
    tile_size: int | None = None,
) -> np.ndarray:
    """Target probability for every voxel of ``region`` (default: everything), shape of the region.

    The network sees ``context`` extra voxels around the region (image only) to avoid edge effects.
    """
    vol = to_numpy(volume)
    if vol.ndim != 3:
        raise DataError(f"expected a (d, h, w) volume, got shape {vol.shape}")
    reg = resolve_region(vol.shape, region)
    outer = tuple(
        slice(max(0, s.start - context), min(n, s.stop + context)) for s, n in zip(reg, vol.shape, strict=True)
    )
    logits = predict_tensor(model, model.normalise(vol[outer]), tile_size=tile_size, device=device)
    inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(reg, outer, strict=True))
    return torch.sigmoid(logits[inner]).numpy()


@dataclass(frozen=True)
class Components:
    """26-connected foreground components of a thresholded probability map."""

    labels: np.ndarray
    """int32 ``(d, h, w)`` component index per voxel (0 = background, k = ``sizes[k - 1]``)."""
    sizes: np.ndarray
    """``(n,)`` int64 voxel counts."""
    centroids: np.ndarray
    """``(n, 3)`` float64 zyx centres of mass (unweighted), in the coordinates of the full volume."""
    threshold: float
    """The threshold applied to the normalised map (Otsu's unless given)."""


def normalise_map(prob: ArrayLike) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant map becomes all zeros)."""
    p = to_numpy(prob, np.float64)
    lo, hi = float(p.min()), float(p.max())
    return (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)


def find_components(
    prob: ArrayLike, *, threshold: float | None = None, offset: Sequence[int] = (0, 0, 0)
) -> Components:
    """Normalise ``prob`` ``(d, h, w)``, threshold it (Otsu by default), label 26-connected components.

    ``offset`` is the position of ``prob``'s first voxel in the full volume (``region`` starts), added
    to the centroids. A constant map has no components.
    """
    p = normalise_map(prob)
    if p.ndim != 3:
        raise DataError(f"expected a (d, h, w) probability map, got shape {p.shape}")
    if threshold is None:
        threshold = float(threshold_otsu(p)) if p.max() > p.min() else 1.0
    fg = p > threshold
    lab, n = ndimage.label(fg, structure=ndimage.generate_binary_structure(3, 3))
    lab = lab.astype(np.int32, copy=False)
    coords = np.nonzero(lab)
    idx = lab[coords]
    sizes = np.bincount(idx, minlength=n + 1)[1:].astype(np.int64)
    centroids = np.zeros((n, 3))
    if n:
        for axis in range(3):
            sums = np.bincount(idx, weights=coords[axis].astype(np.float64), minlength=n + 1)[1:]
            centroids[:, axis] = sums / sizes + offset[axis]
    return Components(labels=lab, sizes=sizes, centroids=centroids, threshold=float(threshold))


def detections_by_size(components: Components, size_thresholds: Sequence[int]) -> list[np.ndarray]:
    """For each threshold, the ``(k, 3)`` centroids of the components of at least that many voxels."""
    return [components.centroids[components.sizes >= t] for t in size_thresholds]
