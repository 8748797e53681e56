"""Measurements of what the latent code w and the noise maps n each reconstruct.

The rendering half (G(w, s·n), the split G(w, n) = G(w, 0) + noise contribution) is method-level and
lives in :mod:`hrinv_nb.noise_maps`; the frequency measures in :mod:`hrinv_nb.spectral` (radial
frequencies in units of Nyquist; the DC term, the mean colour, is never "high"). Here: the
measurement tables built from them, for an inversion (:func:`reconstruction_measures`) and for a
noise style transfer (:func:`transfer_measures`), and a display helper for signed differences.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..losses import area_resize
from ..metrics import detail_ratio, hf_artifact_energy, psnr
from ..networks import Generator
from ..noise_maps import synthesize, zero_noise
from ..spectral import lowpass_psnr
from ..style_transfer import NoiseStyleTransfer


def signed_difference(a: torch.Tensor, b: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """(a − b)·gain clamped to [-1, 1], for display: mid-grey = 0, brighter = positive, darker = negative."""
    assert a.shape == b.shape, f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}"
    return ((a - b) * gain).clamp(-1, 1)


def reconstruction_measures(
    images: Mapping[str, torch.Tensor], target: torch.Tensor, *, cutoff: float = 0.5, lowpass_size: int = 16
) -> dict[str, dict[str, float]]:
    """Per image: PSNR, thumbnail PSNR (``lowpass_size``²), fine-detail power relative to the target's
    (above ``cutoff`` × Nyquist), and the residual's power above the cutoff (the artifact measure)."""
    out = {}
    for name, img in images.items():
        out[name] = {
            "psnr_db": psnr(img, target),
            "lowpass_psnr_db": lowpass_psnr(img, target, lowpass_size),
            "hf_ratio_to_target": detail_ratio(img, target, cutoff),
            "hf_residual_energy": hf_artifact_energy(img, target, cutoff),
        }
    return out


def transfer_measures(
    G: Generator,
    result: NoiseStyleTransfer,
    content: torch.Tensor,
    style: torch.Tensor,
    *,
    embed=None,
    cutoff: float = 0.5,
    thumb_size: int = 8,
) -> dict[str, dict[str, float | None]]:
    """How much of the content the noise maps carry, for the style image, G(w_s), G(w_s, 0) and the result.

    Per image: PSNR vs content and vs style, fine-detail power above ``cutoff`` × Nyquist relative to
    the content's (:func:`hrinv_nb.metrics.detail_ratio`), PSNR of ``thumb_size``² area thumbnails
    (the global colour scheme) vs the content's and vs G(w_s)'s, and with ``embed`` (a batched
    identity embedder) the identity distance to the content.
    """
    from ..retrieval import identity_distance

    assert content.shape == style.shape == result.image.shape, (content.shape, style.shape, result.image.shape)
    g_ws_thumb = area_resize(result.style.image, thumb_size)
    images = {
        "style image": style,
        "G(w_s)": result.style.image,
        "G(w_s, 0)": synthesize(G, result.w, zero_noise(G)),
        "G(w_s, n_c)": result.image,
    }
    out: dict[str, dict[str, float | None]] = {}
    for name, img in images.items():
        out[name] = {
            "psnr_vs_content_db": psnr(img, content),
            "psnr_vs_style_db": psnr(img, style),
            "hf_ratio_to_content": detail_ratio(img, content, cutoff),
            "thumb_psnr_vs_content_db": lowpass_psnr(img, content, thumb_size),
            "thumb_psnr_vs_G_ws_db": psnr(area_resize(img, thumb_size), g_ws_thumb),
            "id_dist_to_content": float(identity_distance(embed, img, content).mean()) if embed is not None else None,
        }
    return out


# ----------------------------------------------------------------------------------------------
# Resampling tests: what changes when n or w is replaced (Fig. 4), and how much of a style-to-content
# gap a noise fit closes in colour and in detail (Fig. 11). Noise maps here are per sample,
# {buffer name: [B, 1, r, r]} (or [B, r, r], as a batched projection returns them).


def per_sample_maps(noise: Mapping[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    """``noise`` as per-sample maps [batch, 1, r, r]: [B, r, r] gains the channel axis, [r, r] is repeated."""
    out = {}
    for name, m in noise.items():
        if m.ndim == 2:
            m = m[None].expand(batch, -1, -1)
        if m.ndim == 3:
            m = m[:, None]
        assert m.ndim == 4 and m.shape[:2] == (batch, 1), f"{name}: maps [B,1,r,r] expected, got {tuple(m.shape)}"
        out[name] = m
    return out


def render(G: Generator, w: torch.Tensor, noise: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """G(w, n) [B, 3, H, W] clamped to [-1, 1], with per-sample maps (``None``: G's own constant maps)."""
    from ..toy.quality import synthesize as synthesize_per_sample

    if noise is None:
        with torch.no_grad():
            return G.synthesis(w, noise_mode="const").clamp(-1, 1)
    return synthesize_per_sample(G, w, per_sample_maps(noise, w.shape[0]))


def fresh_maps(G: Generator, batch: int, seed: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Fresh N(0, 1) maps [batch, 1, r, r] for every noise input of ``G``, drawn on the CPU from ``seed``."""
    from ..toy.quality import draw_noise

    return {k: v.to(device) for k, v in draw_noise(G, batch, torch.Generator().manual_seed(seed)).items()}


def difference_bands(a: torch.Tensor, b: torch.Tensor, low: float, high: float) -> dict[str, torch.Tensor]:
    """Per sample [B], the power of ``a − b`` below ``low`` × Nyquist (``low``; DC included: a colour shift
    is a low-frequency change) and above ``high`` × Nyquist (``high``), and the share of it above ``high``
    (``high_share``, of the total). Channels averaged; mean squared differences by Parseval."""
    from ..spectral import residual_band_power

    assert a.shape == b.shape and a.ndim == 4, f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}"
    assert 0 <= low <= high, (low, high)
    total = residual_band_power(a, b, -1.0).mean(dim=1)
    above_low = residual_band_power(a, b, low).mean(dim=1)
    above_high = residual_band_power(a, b, high).mean(dim=1)
    share = torch.where(total > 0, above_high / total.clamp_min(1e-300), torch.zeros_like(total))
    return {"low": total - above_low, "high": above_high, "high_share": share, "total": total}


def thumbnail_split(img: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``size``² area thumbnail of ``img`` [B, 3, size, size], the detail: ``img`` minus the thumbnail
    upsampled to full size, nearest [B, 3, H, W]); the two add back up to ``img``."""
    import torch.nn.functional as F

    assert img.ndim == 4 and img.shape[-1] % size == 0 and img.shape[-2] % size == 0, (tuple(img.shape), size)
    thumb = area_resize(img, size)
    detail = img - F.interpolate(thumb, size=tuple(img.shape[-2:]), mode="nearest")
    return thumb, detail


def gap_closed(result: torch.Tensor, start: torch.Tensor, target: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Per sample [B], the share of the ``start``→``target`` gap that ``result`` closes, separately in the
    ``size``² thumbnails (``colour``: the global colour scheme) and in the detail above them (``detail``):
    ``1 − ‖part(result) − part(target)‖² / ‖part(start) − part(target)‖²``. 0 = no closer than ``start``
    (``result = start`` gives exactly 0), 1 = the target's; negative = farther away than ``start``."""
    assert result.shape == start.shape == target.shape, (result.shape, start.shape, target.shape)
    out = {}
    parts = [thumbnail_split(x, size) for x in (result, start, target)]
    for k, name in enumerate(("colour", "detail")):
        r, s, t = (p[k].double() for p in parts)
        gap = (s - t).square().sum(dim=(1, 2, 3))
        assert bool((gap > 0).all()), f"{name}: start equals target, no gap to close"
        out[name] = 1.0 - (r - t).square().sum(dim=(1, 2, 3)) / gap
    return out
