"""Measurements on a Style-INR generator (Figs. 3, 4, 10): renders at several shapes, resizing them
back to a common grid, and the global colour shift of a panorama inversion (Sec. IV-F). The
frequency split of an inversion residual is :func:`hrinv_nb.spectral.residual_band_split`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..inr import INRSynthesisNetwork
from ..networks import Generator


def render_shapes(
    G: Generator, ws: torch.Tensor, shapes: Sequence[Sequence[int]]
) -> dict[tuple[int, int], torch.Tensor]:
    """Render the codes ``ws`` [B, num_ws, w_dim] of a Style-INR generator at every (H, W) in ``shapes``.

    Constant noise: for a canvas generator (``canvas=True``) the square maps sit at the centre of
    deterministic canvas-sized maps, so every shape shows the same face with more or less scene.
    """
    if not isinstance(G.synthesis, INRSynthesisNetwork):
        raise TypeError("render_shapes needs a Style-INR generator (hrinv_nb.inr.StyleINRGenerator)")
    assert ws.ndim == 3 and ws.shape[1:] == (G.num_ws, G.w_dim), f"ws must be [B,{G.num_ws},{G.w_dim}]"
    out = {}
    with torch.no_grad():
        for shape in shapes:
            h, w = int(shape[0]), int(shape[1])
            img = G.synthesis(ws, noise_mode="const", shape=(h, w))
            assert img.shape == (ws.shape[0], 3, h, w), tuple(img.shape)
            out[(h, w)] = img
    return out


def antialiased_resize(img: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with antialiasing of ``img`` [B, C, H, W] to ``shape`` (H', W').

    Unlike :func:`hrinv_nb.losses.area_resize` (a box average, nearest-neighbour when enlarging), it
    interpolates, so it suits shapes that shrink along one axis and grow along the other.
    """
    assert img.ndim == 4 and len(shape) == 2, (tuple(img.shape), shape)
    return F.interpolate(img, size=(int(shape[0]), int(shape[1])), mode="bilinear", align_corners=False, antialias=True)


def colour_shift(recon: torch.Tensor, target: torch.Tensor) -> dict[str, object]:
    """The global colour shift of ``recon`` against ``target`` ([1, 3, H, W] in [-1, 1]).

    ``per_channel``: mean(recon − target) per RGB channel in 8-bit levels (255 = full range);
    ``max_abs``: its largest magnitude; ``dc_fraction``: the share of the residual's power that is
    this per-channel constant offset (1 = the whole error is a global colour shift).
    """
    assert recon.shape == target.shape and recon.ndim == 4 and recon.shape[1] == 3, (recon.shape, target.shape)
    r = (recon.detach().double() - target.detach().double()) * 127.5  # [-1, 1] -> 8-bit levels
    per_channel = r.mean(dim=(0, 2, 3))
    total = float(r.square().mean())
    dc = float(per_channel.square().mean())
    return {
        "per_channel": [float(v) for v in per_channel],
        "max_abs": float(per_channel.abs().max()),
        "dc_fraction": dc / total if total > 0 else 0.0,
        "rms_levels": total**0.5,
    }
