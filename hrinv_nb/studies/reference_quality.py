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


def pair_plan(n_refs: int, n_contents: int, n_versions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(content index, style index) [n_versions · n_refs] each: reference ``j`` styles content ``j mod n_contents``
    in every version, so that the versions of one reference are compared on the same content.

    Style indices are version-major (``v · n_refs + j``), as the codes are stacked: every version of the
    references, one version after the other. With ``n_contents = n_refs`` no two references share a content.
    """
    assert n_refs >= 1 and n_contents >= 1 and n_versions >= 2, (n_refs, n_contents, n_versions)
    refs = torch.arange(n_refs).repeat(n_versions)
    versions = torch.arange(n_versions).repeat_interleave(n_refs)
    content = refs % n_contents
    style = versions * n_refs + refs
    assert content.shape == style.shape == (n_versions * n_refs,)
    return content, style


def by_version(values: torch.Tensor, n_versions: int) -> torch.Tensor:
    """Values [n_versions · n_refs] in version-major order → [n_versions, n_refs]."""
    assert values.ndim == 1 and values.numel() % n_versions == 0, (tuple(values.shape), n_versions)
    return values.view(n_versions, -1)
