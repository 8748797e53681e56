"""Blur and the high-frequency share at the reference-quality cutoff (Fig. 8)."""

from __future__ import annotations

import pytest
import torch

from hrinv_nb.spectral import high_frequency_share
from hrinv_nb.studies.reference_quality import SHARPNESS_CUTOFF, gaussian_blur


def hf_fraction(img: torch.Tensor) -> torch.Tensor:
    return high_frequency_share(img, SHARPNESS_CUTOFF)


def test_gaussian_blur_keeps_constants_and_lowers_hf_share():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    const = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 1.5), const)
    assert torch.equal(gaussian_blur(img, 0.0), img)
    h0, h1, h2 = hf_fraction(img), hf_fraction(gaussian_blur(img, 1.0)), hf_fraction(gaussian_blur(img, 2.0))
    assert h0.shape == (2,) and ((h0 > h1) & (h1 > h2)).all()
    assert float(h2.min()) >= 0.0 and float(h0.max()) <= 1.0
    with pytest.raises(ValueError):
        gaussian_blur(img, -1.0)


def test_hf_fraction_of_pure_frequencies():
    xx = torch.arange(32.0).expand(32, 32)
    low = torch.cos(2 * torch.pi * xx / 32).expand(1, 3, 32, 32)
    high = ((xx % 2) * 2 - 1).expand(1, 3, 32, 32)
    assert float(hf_fraction(low)) == pytest.approx(0.0, abs=1e-9)
    assert float(hf_fraction(high)) == pytest.approx(1.0, abs=1e-9)
