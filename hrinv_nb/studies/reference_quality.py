"""Reference quality (Fig. 8): blur a style reference and measure how much high-frequency content
survives in images derived from it (its projection into G_t, the blended image, the LSO result).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..metrics import residual_band_power


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``img`` [B, C, H, W] (reflect padding, radius ⌈3σ⌉); σ = 0 returns a copy."""
    assert img.ndim == 4, f"expected [B,C,H,W], got {tuple(img.shape)}"
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return img.clone()
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[1]
    out = F.pad(img, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    assert out.shape == img.shape, (tuple(out.shape), tuple(img.shape))
    return out


def hf_fraction(img: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per image [B]: the share of its (mean-removed) power above ``cutoff`` × Nyquist, averaged over channels.

    A sharpness measure independent of contrast: blurring lowers it, noise and texture raise it.
    """
    assert img.ndim == 4 and img.shape[1] == 3, f"expected [B,3,H,W], got {tuple(img.shape)}"
    mean = img.mean(dim=(2, 3), keepdim=True).expand_as(img)
    total = residual_band_power(img, mean, -1.0)  # [B, C]
    high = residual_band_power(img, mean, cutoff)
    return (high / total.clamp_min(1e-20)).mean(dim=1).float()
