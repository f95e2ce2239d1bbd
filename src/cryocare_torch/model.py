"""The cryo-CARE U-Net (Buchholz et al. 2019; CSBDeep-style) for 2D images and 3D volumes.

Input and output are ``(B, 1, *spatial)`` with ``spatial`` = ``(h, w)`` or ``(d, h, w)``; every
spatial size must be a multiple of :attr:`UNet.size_multiple` (``2**depth``).

Layout, per level ``i`` with ``c_i = n_first * 2**i`` channels:

* encoder: two ``k``-convs (``c_i``), then 2x max-pool;
* bottom: ``c_depth`` then ``c_{depth-1}`` channels;
* decoder: nearest 2x up-sampling, concatenation with the skip, two convs (the second one halves the
  channels so that the next concatenation is again ``2 c_i`` wide - cheap at full resolution);
* a *linear* 1x1 conv to one channel; with ``residual`` the input is added (the network learns a
  correction to the noisy half, which makes an untrained net start at the identity-ish);
* with ``skip_sigma`` (and no ``residual``) a Gaussian-smoothed input is added instead and the last conv
  starts at zero, so the untrained net *is* that Gaussian filter and learns a correction to it. The
  widths come from the data (:mod:`cryocare_torch.train.smoothing`) and travel in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .config import ModelConfig
from .filters import gaussian_smooth

Norm = Literal["none", "batch", "group"]
Activation = Literal["relu", "leaky_relu"]


def _conv(ndim: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return nn.Conv3d if ndim == 3 else nn.Conv2d


def _norm(ndim: int, norm: Norm, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm3d(channels) if ndim == 3 else nn.BatchNorm2d(channels)
    if norm == "group":
        groups = max(1, min(8, channels // 4))
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def _act(activation: Activation) -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True) if activation == "leaky_relu" else nn.ReLU(inplace=True)


class ConvBlock(nn.Sequential):
    """Two ``kernel_size`` convolutions (same padding), each followed by norm and activation."""

    def __init__(
        self, ndim: int, c_in: int, c_mid: int, c_out: int, kernel_size: int, norm: Norm, activation: Activation
    ) -> None:
        conv = _conv(ndim)
        pad = kernel_size // 2
        bias = norm == "none"
        super().__init__(
            conv(c_in, c_mid, kernel_size, padding=pad, bias=bias),
            _norm(ndim, norm, c_mid),
            _act(activation),
            conv(c_mid, c_out, kernel_size, padding=pad, bias=bias),
            _norm(ndim, norm, c_out),
            _act(activation),
        )


class UNet(nn.Module):
    """U-Net mapping ``(B, 1, *spatial)`` to ``(B, 1, *spatial)``; see the module docstring."""

    def __init__(
        self,
        ndim: int,
        depth: int = 2,
        n_first: int = 16,
        kernel_size: int = 3,
        residual: bool = True,
        norm: Norm = "none",
        activation: Activation = "relu",
        skip_sigma: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.ndim = ndim
        self.depth = depth
        self.residual = residual
        ch = [n_first * 2**i for i in range(depth + 1)]
        args = (kernel_size, norm, activation)
        self.down = nn.ModuleList()
        c_prev = 1
        for i in range(depth):
            self.down.append(ConvBlock(ndim, c_prev, ch[i], ch[i], *args))
            c_prev = ch[i]
        self.pool = nn.MaxPool3d(2) if ndim == 3 else nn.MaxPool2d(2)
        self.bottom = ConvBlock(ndim, ch[depth - 1], ch[depth], ch[depth - 1], *args)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.ModuleList(
            ConvBlock(ndim, 2 * ch[i], ch[i], ch[max(i - 1, 0)], *args) for i in reversed(range(depth))
        )
        self.last = _conv(ndim)(ch[0], 1, 1)
        self.skip_sigma = None if residual or skip_sigma is None else tuple(float(v) for v in skip_sigma)
        if self.skip_sigma is not None:
            if len(self.skip_sigma) != ndim:
                raise ValueError(f"skip_sigma needs {ndim} widths, got {self.skip_sigma}")
            nn.init.zeros_(self.last.weight)
            if self.last.bias is not None:
                nn.init.zeros_(self.last.bias)

    @property
    def size_multiple(self) -> int:
        """Every spatial input size must be a multiple of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.ndim + 2 or x.shape[1] != 1:
            spatial = "d, h, w" if self.ndim == 3 else "h, w"
            raise ValueError(f"expected input of shape (B, 1, {spatial}), got {tuple(x.shape)}")
        m = self.size_multiple
        if any(s % m for s in x.shape[2:]):
            raise ValueError(f"spatial size {tuple(x.shape[2:])} is not a multiple of {m} (2**depth); pad the input")
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for block, skip in zip(self.dec, reversed(skips), strict=True):
            h = block(torch.cat([self.up(h), skip], dim=1))
        out = self.last(h)
        if self.residual:  # in the input's precision (float32 under bf16 autocast): keeps fine detail
            out = out.to(x.dtype) + x
        elif self.skip_sigma is not None:
            out = out.to(x.dtype) + gaussian_smooth(x, self.skip_sigma)
        return out


def build_model(cfg: ModelConfig, ndim: int) -> UNet:
    """The U-Net described by ``cfg`` for 2D (``ndim=2``) or 3D (``ndim=3``) data."""
    return UNet(
        ndim,
        depth=cfg.depth,
        n_first=cfg.n_first,
        kernel_size=cfg.kernel_size,
        residual=cfg.residual,
        norm=cfg.norm,
        activation=cfg.activation,
        skip_sigma=cfg.skip_sigma if cfg.gaussian_skip else None,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
