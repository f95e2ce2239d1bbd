"""U-Net: shapes, size constraints, residual identity, parameter counts."""

from __future__ import annotations

import pytest
import torch

from cryocare_torch.config import ModelConfig
from cryocare_torch.model import UNet, build_model, count_parameters


@pytest.mark.parametrize(
    ("ndim", "depth", "spatial"),
    [(3, 2, (16, 16, 16)), (3, 2, (12, 20, 28)), (2, 2, (36, 20)), (2, 3, (24, 40)), (3, 1, (6, 10, 14))],
)
def test_output_shape_matches_input(ndim: int, depth: int, spatial: tuple[int, ...]) -> None:
    net = UNet(ndim, depth=depth, n_first=4)
    assert net.size_multiple == 2**depth
    x = torch.randn(2, 1, *spatial)
    assert net(x).shape == x.shape


def test_size_not_multiple_raises() -> None:
    net = UNet(3, depth=2, n_first=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.randn(1, 1, 16, 18, 16))
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(1, 2, 16, 16, 16))


def test_residual_with_zero_last_layer_is_identity() -> None:
    net = UNet(3, depth=2, n_first=4, residual=True)
    torch.nn.init.zeros_(net.last.weight)
    torch.nn.init.zeros_(net.last.bias)
    x = torch.randn(2, 1, 8, 12, 16)
    assert torch.equal(net(x), x)
    plain = UNet(2, depth=2, n_first=4, residual=False)
    torch.nn.init.zeros_(plain.last.weight)
    torch.nn.init.zeros_(plain.last.bias)
    assert torch.count_nonzero(plain(torch.randn(1, 1, 8, 8))) == 0


def test_last_layer_is_linear_1x1() -> None:
    net = UNet(3, n_first=8)
    assert isinstance(net.last, torch.nn.Conv3d) and net.last.kernel_size == (1, 1, 1)
    assert net.last.out_channels == 1


def test_parameter_counts() -> None:
    n16 = count_parameters(UNet(3, depth=2, n_first=16))
    n32 = count_parameters(UNet(3, depth=2, n_first=32))
    assert n16 == 249_553  # cryo-CARE default size: ~0.25 M parameters
    assert 3.9 < n32 / n16 < 4.1  # conv weights scale with channels^2
    assert count_parameters(UNet(2, depth=2, n_first=16)) < n16 / 2  # 3x3 vs 3x3x3 kernels


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_norm_and_activation_options(norm: str) -> None:
    cfg = ModelConfig(depth=2, n_first=8, norm=norm, activation="leaky_relu", kernel_size=5)
    net = build_model(cfg, 3)
    assert net(torch.randn(2, 1, 8, 8, 8)).shape == (2, 1, 8, 8, 8)
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net.modules())


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        UNet(4)
    with pytest.raises(ValueError):
        UNet(3, kernel_size=4)


def test_gaussian_skip_untrained_model_is_exactly_the_gaussian_filter() -> None:
    from cryocare_torch.filters import gaussian_smooth

    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 24, 32)
    model = build_model(ModelConfig(skip_sigma=(1.0, 1.5, 1.5)), ndim=3)
    with torch.no_grad():
        assert torch.equal(model(x), gaussian_smooth(x, (1.0, 1.5, 1.5)))
    # residual wins over the Gaussian skip; no widths means no skip
    assert build_model(ModelConfig(residual=True, skip_sigma=(1.0, 1.0, 1.0)), ndim=3).skip_sigma is None
    assert build_model(ModelConfig(gaussian_skip=False, skip_sigma=(1.0, 1.0, 1.0)), ndim=3).skip_sigma is None
    with pytest.raises(ValueError, match="2 widths"):
        build_model(ModelConfig(skip_sigma=(1.0, 1.0, 1.0)), ndim=2)
