"""The one Fourier shift (used by motion correction, frame sums and the simulator): integer shifts are a
circular roll, any batch shape, float32 and float64."""

from __future__ import annotations

import pytest
import torch

from cryocare_torch.fourier import fourier_shift, good_fft_size


@pytest.mark.parametrize("precision", [torch.float32, torch.float64])
def test_integer_shift_is_a_roll(precision: torch.dtype) -> None:
    img = torch.rand(2, 3, 20, 31, generator=torch.Generator().manual_seed(0))
    shifts = torch.tensor([[[2.0, -3.0], [0.0, 5.0], [-7.0, 1.0]]] * 2)  # (2, 3, 2)
    out = fourier_shift(img, shifts, precision=precision)
    assert out.dtype == precision and out.shape == img.shape
    for a in range(2):
        for b in range(3):
            dy, dx = (int(v) for v in shifts[a, b])
            want = torch.roll(img[a, b], shifts=(dy, dx), dims=(0, 1)).to(precision)
            assert torch.allclose(out[a, b], want, atol=1e-5 if precision == torch.float32 else 1e-12)


def test_half_pixel_shifts_compose_to_one_pixel() -> None:
    img = torch.rand(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    half = fourier_shift(fourier_shift(img, torch.tensor([0.5, 0.0]), precision=torch.float64),
                         torch.tensor([0.5, 0.0]), precision=torch.float64)
    full = torch.roll(img, 1, dims=0)
    # the Nyquist row of an even size is attenuated by cos(pi/2)^2 = 0 for two half-pixel moves: compare without it
    spec_half, spec_full = torch.fft.rfft2(half), torch.fft.rfft2(full)
    keep = torch.ones(16, dtype=torch.bool)
    keep[8] = False
    assert torch.allclose(spec_half[keep], spec_full[keep], atol=1e-10)


def test_good_fft_size() -> None:
    assert [good_fft_size(n) for n in (1, 7, 17, 31, 97, 100)] == [2, 8, 18, 32, 100, 100]
