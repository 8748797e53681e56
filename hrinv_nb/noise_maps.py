"""Operations on a generator's noise maps: render G(w, s·n) for any maps n and scale s, split an
image into what w carries and what the noise maps add, read or override the learned noise strengths.

After an optim(w, n) inversion, the image G(w, n) splits into the part that w alone carries,
G(w, 0) (every noise map zero), and the noise contribution G(w, n) − G(w, 0). :func:`synthesize`
swaps the maps into G's noise buffers and restores them afterwards, so G is left unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .networks import Generator, noise_buffers, set_noise_buffers

NoiseMaps = Mapping[str, torch.Tensor]


def zero_noise(G: Generator) -> dict[str, torch.Tensor]:
    """All-zero maps for every noise buffer of ``G`` (G(w, 0): what w alone draws)."""
    return {name: torch.zeros_like(buf) for name, buf in noise_buffers(G).items()}


def noise_strengths(G: Generator) -> dict[str, float]:
    """The learned per-layer noise strength of every synthesis layer (the noise map is scaled by it), by layer name."""
    return {
        name: float(module.noise_strength)
        for name, module in G.synthesis.named_modules()
        if isinstance(getattr(module, "noise_strength", None), torch.Tensor)
    }


def with_noise_strength(G: Generator, strength: float) -> Generator:
    """A deep copy of ``G`` whose every synthesis layer has its noise strength set to ``strength``.

    An ablation, not a trained generator: it lets the noise maps act on a G that learned to ignore them.
    """
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
    assert w.ndim == 3 and w.shape[1:] == (G.num_ws, G.w_dim), (
        f"w must be [B,{G.num_ws},{G.w_dim}], got {tuple(w.shape)}"
    )
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
