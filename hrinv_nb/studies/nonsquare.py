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


def shift_magnitude(shift: dict[str, object]) -> float:
    """Size of a :func:`colour_shift`: the root mean square of its per-channel mean shift, in 8-bit levels."""
    per_channel = torch.tensor(shift["per_channel"], dtype=torch.float64)
    assert per_channel.shape == (3,), per_channel.shape
    return float(per_channel.square().mean().sqrt())


def centre_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central min(H, W)² square of ``img`` [B, C, H, W], resized (antialiased) to ``size``²."""
    assert img.ndim == 4 and size > 0, (tuple(img.shape), size)
    h, w = img.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return antialiased_resize(img[..., top : top + s, left : left + s], (size, size))


def colour_shift_map(recon: torch.Tensor, target: torch.Tensor, sigma: float = 8.0) -> torch.Tensor:
    """The low-passed signed residual ``blur(recon − target)`` [B, 3, H, W]: where the reconstruction's colour
    drifts, without its missing detail (a Gaussian of ``sigma`` pixels removes the fine structure)."""
    from .reference_quality import gaussian_blur

    assert recon.shape == target.shape and recon.ndim == 4, (tuple(recon.shape), tuple(target.shape))
    return gaussian_blur(recon.detach() - target.detach(), sigma)


def same_picture_psnr(
    renders: dict[tuple[int, int], torch.Tensor], native: torch.Tensor
) -> tuple[list[float], list[float], list[int]]:
    """For every code i and every render shape other than the native one: the render resized to the native
    grid, PSNR against code i's native render minus PSNR against code i+1's (dB; > 0: it is code i's picture).

    Returns ``(effect, control, code index)``, one entry per (code, shape). The control asks the same of a
    render of *another* code (i+2): a renderer that drew some other face, which must show no preference.
    Needs at least three codes.
    """
    from .. import metrics

    b, _, h, w = native.shape
    assert b >= 3, f"same_picture_psnr needs at least three codes, got {b}"
    effect, control, code = [], [], []
    for shape, img in renders.items():
        if tuple(shape) == (h, w):
            continue
        assert img.shape[0] == b, (tuple(img.shape), b)
        small = antialiased_resize(img, (h, w)).clamp(-1, 1)
        ref = native.clamp(-1, 1)
        for i in range(b):
            own, nxt, other = ref[i : i + 1], ref[(i + 1) % b : (i + 1) % b + 1], small[(i + 2) % b : (i + 2) % b + 1]
            effect.append(metrics.psnr(small[i : i + 1], own) - metrics.psnr(small[i : i + 1], nxt))
            control.append(metrics.psnr(other, own) - metrics.psnr(other, nxt))
            code.append(i)
    return effect, control, code
