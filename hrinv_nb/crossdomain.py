"""Helpers for the cross-domain notebooks (07–10): content inversion, pair bookkeeping, and the
measures of what LSO keeps and restores.

* :func:`invert_contents` — w-only W+ projection (Eq. 5) of N content images into G_s, batched when
  :mod:`hrinv_nb.batch_projection` is available (B independent problems, sum loss), else one by one.
* :func:`pair_codes` — every content × style pair as flat batches (content index, style index, w_s, w_t).
* :func:`masked_residual` — mean |a − b| inside a (soft) mask, per sample; :func:`dilate_mask` grows
  a mask so that a background measure ignores the head's edge.
* :func:`gram_style_distance` — a texture/style distance (Gram matrices of toy-VGG conv features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .losses import PerceptualLoss, hooked_features, imagenet_normalise, vgg16_trunk
from .networks import Generator
from .projector import project

GRAM_LAYERS = (2, 7, 14)  # conv1_2, conv2_2, conv3_3: low-level texture statistics


@dataclass
class Inversions:
    """``w`` [N, num_ws, w_dim] w-only W+ codes in G_s; ``images`` [N, 3, H, W] = G_s(w); ``batched``: one batch or a loop."""

    w: torch.Tensor
    images: torch.Tensor
    batched: bool


def invert_contents(G: Generator, contents: torch.Tensor, *, loss: PerceptualLoss | str, num_steps: int,
                    seed: int = 0, progress: bool = True) -> Inversions:
    """w-only W+ projections (Eq. 5: no noise maps) of ``contents`` [N, 3, H, W] into ``G``.

    Uses ``batch_projection.project_batch`` (one batch, independent per-sample problems) when the
    package has it, otherwise :func:`hrinv_nb.project` per image (seed + i).
    """
    assert contents.ndim == 4 and contents.shape[1] == 3, f"contents must be [N,3,H,W], got {tuple(contents.shape)}"
    try:
        from .batch_projection import project_batch
    except ImportError:
        project_batch = None
    if project_batch is not None:
        res = project_batch(G, contents, loss=loss, num_steps=num_steps, optimize_noise=False, seed=seed,
                            progress=progress)
        w, images, batched = res.w, res.images, True
    else:
        ws, imgs = [], []
        for i in tqdm(range(contents.shape[0]), disable=not progress, desc="invert contents"):
            r = project(G, contents[i : i + 1], loss=loss, num_steps=num_steps, optimize_noise=False, seed=seed + i,
                        progress=False)
            ws.append(r.w)
            imgs.append(r.image)
        w, images, batched = torch.cat(ws), torch.cat(imgs), False
    assert w.shape == (contents.shape[0], G.num_ws, G.w_dim) and torch.isfinite(w).all()
    return Inversions(w=w.detach(), images=images.detach(), batched=batched)


@dataclass
class Pairs:
    """Flat content × style pairs: indices ``ci``/``si`` [P], codes ``w_s``/``w_t`` [P, num_ws, w_dim]."""

    ci: torch.Tensor
    si: torch.Tensor
    w_s: torch.Tensor
    w_t: torch.Tensor

    def __len__(self) -> int:
        return int(self.ci.numel())


def pair_codes(w_contents: torch.Tensor, w_styles: torch.Tensor) -> Pairs:
    """Every (content, style) pair, content-major: pair p = c · n_styles + s."""
    assert w_contents.ndim == 3 and w_styles.ndim == 3 and w_contents.shape[1:] == w_styles.shape[1:], \
        (tuple(w_contents.shape), tuple(w_styles.shape))
    n_c, n_s = w_contents.shape[0], w_styles.shape[0]
    ci = torch.arange(n_c).repeat_interleave(n_s)
    si = torch.arange(n_s).repeat(n_c)
    return Pairs(ci=ci, si=si, w_s=w_contents[ci], w_t=w_styles.to(w_contents)[si])


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a soft mask [B, 1, H, W] by ``pixels`` (max-pooling); 0 returns it unchanged."""
    assert mask.ndim == 4 and mask.shape[1] == 1, f"mask must be [B,1,H,W], got {tuple(mask.shape)}"
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def masked_residual(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |a − b| (over channels) weighted by ``weight`` [B or 1, 1, H, W] in [0, 1] -> [B].

    Images are [B, 3, H, W] in [-1, 1]; the result is in [0, 2]. Pass ``1 − mask`` for the background.
    """
    assert a.shape == b.shape and a.ndim == 4, (tuple(a.shape), tuple(b.shape))
    assert weight.ndim == 4 and weight.shape[1] == 1 and weight.shape[0] in (1, a.shape[0]), tuple(weight.shape)
    weight = weight.to(a).expand(a.shape[0], 1, *a.shape[2:])
    diff = (a - b).abs().mean(dim=1, keepdim=True)
    total = weight.sum(dim=(1, 2, 3))
    assert (total > 0).all(), "the mask selects no pixel"
    return (diff * weight).sum(dim=(1, 2, 3)) / total


class GramStyleDistance:
    """Gatys-style texture distance: Σ_l ‖Gram(φ_l(a)) − Gram(φ_l(b))‖² over toy-VGG conv layers (per sample).

    Gram(φ) = φ φᵀ / (C·H·W) of the ImageNet-normalised image; layers default to conv1_2, conv2_2, conv3_3.
    A *style* measure: insensitive to where things are, sensitive to colours and textures.
    """

    def __init__(self, weights: str | os.PathLike | None, layers: tuple[int, ...] = GRAM_LAYERS,
                 device: str | torch.device = "cpu", seed: int | None = None) -> None:
        """``weights``: a VGG16 file (the toy VGG in the toy world); ``seed`` instead builds a random trunk."""
        self.layers = tuple(layers)
        self.trunk = vgg16_trunk(max(self.layers), weights=weights, seed=seed).to(device).eval()
        self.device = torch.device(device)

    def grams(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        assert img.ndim == 4 and img.shape[1] == 3, tuple(img.shape)
        with torch.no_grad():
            feats = hooked_features(self.trunk, {k: self.trunk[k] for k in self.layers},
                                    imagenet_normalise(img.to(self.device, torch.float32)))
        out = {}
        for k, f in feats.items():
            b, c, h, w = f.shape
            flat = f.reshape(b, c, h * w)
            out[k] = flat @ flat.transpose(1, 2) / (c * h * w)
        return out

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distances [B] (``b`` may have batch 1 and is broadcast)."""
        ga, gb = self.grams(a), self.grams(b)
        return sum((ga[k] - gb[k].expand_as(ga[k])).square().sum(dim=(1, 2)) for k in self.layers).cpu()


def pixel_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error [B] of images in [-1, 1] (``b`` may have batch 1)."""
    assert a.ndim == 4 and b.ndim == 4 and a.shape[1:] == b.shape[1:], (tuple(a.shape), tuple(b.shape))
    return (a - b.expand_as(a)).square().mean(dim=(1, 2, 3)).detach().cpu()
