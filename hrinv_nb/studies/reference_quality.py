"""Reference quality (Fig. 8): blur a style reference, then measure how much high-frequency content
survives in images derived from it (its projection into G_t, the blended image, the LSO result)
with :func:`hrinv_nb.spectral.high_frequency_share` at :data:`SHARPNESS_CUTOFF`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHARPNESS_CUTOFF = 0.25
"""Radial cutoff (× Nyquist) of the sharpness measure: a quarter of Nyquist, lower than the 0.5 of the
artifact measures, so that the band also covers the middle frequencies a moderate Gaussian blur
attenuates (σ = 1 px halves the power at a quarter of Nyquist) and not only the top band."""


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
