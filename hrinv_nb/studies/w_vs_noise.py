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
