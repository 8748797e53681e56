"""What the latent code w and the noise maps n each reconstruct (Fig. 4; spec §3.3).

After an optim(w, n) inversion, the image G(w, n) splits into the part that w alone carries,
G(w, 0) (every noise map zero), and the noise contribution G(w, n) − G(w, 0). These helpers render
G(w, s·n) for any scale s without touching the generator (its noise buffers are swapped in and
restored), and measure how an image's power is spread over spatial frequencies.

Frequencies are radial, in units of the Nyquist frequency (1 = Nyquist along an axis), as in
:func:`hrinv_nb.metrics.residual_band_power`; the DC term (the mean colour) is never "high".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..metrics import residual_band_power
from ..networks import Generator, noise_buffers, set_noise_buffers

NoiseMaps = Mapping[str, torch.Tensor]


def zero_noise(G: Generator) -> dict[str, torch.Tensor]:
    """All-zero maps for every noise buffer of ``G`` (G(w, 0): what w alone draws)."""
    return {name: torch.zeros_like(buf) for name, buf in noise_buffers(G).items()}


def noise_strengths(G: Generator) -> dict[str, float]:
    """The learned per-layer noise strength of every synthesis layer (the noise map is scaled by it), by layer name."""
    return {name: float(module.noise_strength) for name, module in G.synthesis.named_modules()
            if isinstance(getattr(module, "noise_strength", None), torch.Tensor)}


def with_noise_strength(G: Generator, strength: float) -> Generator:
    """A deep copy of ``G`` whose every synthesis layer has its noise strength set to ``strength``.

    An ablation, not a trained generator: it lets the noise maps act on a G that learned to ignore them.
    """
    import copy

    G2 = copy.deepcopy(G)
    with torch.no_grad():
        for module in G2.synthesis.modules():
            if isinstance(getattr(module, "noise_strength", None), torch.Tensor):
                module.noise_strength.fill_(float(strength))
    return G2


def synthesize(G: Generator, w: torch.Tensor, noise: NoiseMaps | None = None, *, scale: float = 1.0) -> torch.Tensor:
    """G(w, scale·noise) [B, 3, H, W] without gradients; ``noise=None`` uses G's own constant maps.

    ``w`` is [B, num_ws, w_dim]. Maps missing from ``noise`` keep G's own; G is left unchanged.
    """
    assert w.ndim == 3 and w.shape[1:] == (G.num_ws, G.w_dim), f"w must be [B,{G.num_ws},{G.w_dim}], got {tuple(w.shape)}"
    saved = noise_buffers(G)
    try:
        if noise is not None or scale != 1.0:
            source = saved if noise is None else {**saved, **noise}
            set_noise_buffers(G, {k: (v.to(saved[k]) * scale) for k, v in source.items()})
        with torch.no_grad():
            return G.synthesis(w, noise_mode="const")
    finally:
        set_noise_buffers(G, saved)


def noise_scale_series(G: Generator, w: torch.Tensor, noise: NoiseMaps, scales: Sequence[float]) -> torch.Tensor:
    """G(w, s·noise) for each s in ``scales``: [len(scales), 3, H, W] (``w`` is [1, num_ws, w_dim])."""
    assert w.shape[0] == 1, f"one code, got a batch of {w.shape[0]}"
    return torch.cat([synthesize(G, w, noise, scale=float(s)) for s in scales])


@dataclass
class WNoiseSplit:
    """``full`` = G(w, n); ``w_only`` = G(w, 0); ``contribution`` = full − w_only (all [1, 3, H, W])."""

    full: torch.Tensor
    w_only: torch.Tensor
    contribution: torch.Tensor


def split_w_noise(G: Generator, w: torch.Tensor, noise: NoiseMaps) -> WNoiseSplit:
    """Split G(w, n) into what w carries (zero noise maps) and what the noise maps add."""
    full = synthesize(G, w, noise)
    w_only = synthesize(G, w, zero_noise(G))
    return WNoiseSplit(full=full, w_only=w_only, contribution=full - w_only)


def band_power(x: torch.Tensor, cutoff: float = 0.5) -> float:
    """Mean power of ``x`` [B, C, H, W] above ``cutoff`` × Nyquist (a negative cutoff: every bin, DC included)."""
    return float(residual_band_power(x, torch.zeros_like(x), cutoff).mean())


def hf_fraction(x: torch.Tensor, cutoff: float = 0.5) -> float:
    """Fraction of the power of ``x`` (its mean removed per channel) above ``cutoff`` × Nyquist; 0 for a flat x."""
    assert x.ndim == 4, f"expected [B,C,H,W], got {tuple(x.shape)}"
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    total = band_power(centred, -1.0)
    return band_power(centred, cutoff) / total if total > 0 else 0.0


def hf_energy_ratio_to(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> float:
    """Power of ``img`` above ``cutoff`` × Nyquist relative to the target's (1: as much fine detail as the target)."""
    assert img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    reference = band_power(target, cutoff)
    return band_power(img, cutoff) / reference if reference > 0 else float("nan")


def lowpass_psnr(img: torch.Tensor, target: torch.Tensor, size: int = 16) -> float:
    """PSNR (dB) of ``size``² area-downsampled copies: how well the coarse layout and colours ("contours") match."""
    import torch.nn.functional as F

    from ..metrics import psnr

    assert img.shape == target.shape and img.ndim == 4, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    return psnr(F.interpolate(img, size=(size, size), mode="area"), F.interpolate(target, size=(size, size), mode="area"))


def signed_difference(a: torch.Tensor, b: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """(a − b)·gain clamped to [-1, 1], for display: mid-grey = 0, brighter = positive, darker = negative."""
    assert a.shape == b.shape, f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}"
    return ((a - b) * gain).clamp(-1, 1)


def reconstruction_measures(images: Mapping[str, torch.Tensor], target: torch.Tensor, *, cutoff: float = 0.5,
                            lowpass_size: int = 16) -> dict[str, dict[str, float]]:
    """Per image: PSNR, thumbnail PSNR (``lowpass_size``²), fine-detail power relative to the target's
    (above ``cutoff`` × Nyquist), and the residual's power above the cutoff (the artifact measure)."""
    from ..metrics import hf_artifact_energy, psnr

    out = {}
    for name, img in images.items():
        out[name] = {"psnr_db": psnr(img, target), "lowpass_psnr_db": lowpass_psnr(img, target, lowpass_size),
                     "hf_ratio_to_target": hf_energy_ratio_to(img, target, cutoff),
                     "hf_residual_energy": hf_artifact_energy(img, target, cutoff)}
    return out
