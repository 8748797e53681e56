"""Measurements for the Style-INR-GAN notebook (Figs. 3, 4, 10): renders at several shapes, the
frequency split of an inversion residual (what w and n reconstruct), and the global colour shift
of a panorama inversion (Sec. IV-F).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..inr import INRSynthesisNetwork
from ..metrics import residual_band_power
from ..networks import Generator


def render_shapes(G: Generator, ws: torch.Tensor, shapes: Sequence[Sequence[int]]) -> dict[tuple[int, int], torch.Tensor]:
    """Render the codes ``ws`` [B, num_ws, w_dim] of a Style-INR generator at every (H, W) in ``shapes``."""
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


def area_resize(img: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Antialiased resize of ``img`` [B, 3, H, W] to ``shape`` (H', W') (area-like, bilinear antialias)."""
    return F.interpolate(img, size=(int(shape[0]), int(shape[1])), mode="bilinear", align_corners=False, antialias=True)


def band_split(img: torch.Tensor, target: torch.Tensor, low: float = 0.25, high: float = 0.5) -> dict[str, float]:
    """Residual power of ``img − target`` below ``low`` and above ``high`` × Nyquist, and in total.

    Values are mean squared residuals (Parseval), averaged over batch and channels, so
    ``low_power + mid + high_power = total``; ``low`` is the contour/colour band, ``high`` the detail band.
    """
    assert 0 <= low <= high, (low, high)
    total = float(residual_band_power(img, target, -1.0).mean())
    above_low = float(residual_band_power(img, target, low).mean())
    high_power = float(residual_band_power(img, target, high).mean())
    return {"total": total, "low": total - above_low, "high": high_power}


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
    return {"per_channel": [float(v) for v in per_channel], "max_abs": float(per_channel.abs().max()),
            "dc_fraction": dc / total if total > 0 else 0.0, "rms_levels": total ** 0.5}
