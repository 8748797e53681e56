"""Style galleries: style codes of a target generator, and stylising a content against all of them.

A gallery holds W+ codes of G_t (with their images): either sampled from G_t with their exact w
(as the authors' gallery of 1000 samples, seed 0, ψ = 1), or w-only projections of style images.
:func:`stylize` mixes one content code with every entry (Fig. 2 methods), batching the renders,
and optionally runs LSO per entry, with a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .blending import (Gamma, blend_generators, blend_latents, block_resolutions, default_swap_res, gamma_schedule,
                       swap_schedule)
from .losses import PerceptualLoss
from .lso import LSOResult, lso, split_result
from .networks import Generator
from .projector import project


@dataclass
class StyleGallery:
    """``w`` [N, num_ws, w_dim] style codes in G_t and their ``images`` [N, 3, H, W]."""

    w: torch.Tensor
    images: torch.Tensor
    source: str

    def __len__(self) -> int:
        return self.w.shape[0]


def gallery_from_samples(G_t: Generator, n: int, seed: int = 0, truncation_psi: float = 1.0,
                         batch_size: int = 16) -> StyleGallery:
    """``n`` samples of ``G_t`` with their exact W+ codes (z from ``torch.Generator(seed)``)."""
    z = torch.randn([n, G_t.z_dim], generator=torch.Generator().manual_seed(seed)).to(next(G_t.parameters()).device)
    ws, imgs = [], []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            w = G_t.mapping(z[i : i + batch_size], None, truncation_psi=truncation_psi)
            ws.append(w)
            imgs.append(G_t.synthesis(w, noise_mode="const"))
    return StyleGallery(torch.cat(ws), torch.cat(imgs), source=f"samples(seed={seed}, psi={truncation_psi})")


def gallery_from_images(G_t: Generator, images: torch.Tensor, *, loss: PerceptualLoss | str, num_steps: int = 1000,
                        seed: int = 0, progress: bool = True, **project_kwargs) -> StyleGallery:
    """w-only projections (Eq. 5: no noise maps) of style ``images`` [N, 3, H, W] into ``G_t``."""
    ws, recon = [], []
    for i in tqdm(range(images.shape[0]), disable=not progress, desc="project styles"):
        res = project(G_t, images[i : i + 1], loss=loss, num_steps=num_steps, optimize_noise=False, seed=seed + i,
                      progress=False, **project_kwargs)
        ws.append(res.w)
        recon.append(res.image)
    return StyleGallery(torch.cat(ws), torch.cat(recon), source="projections")


@dataclass
class Stylized:
    """Per gallery entry: ``images`` after the method, ``mixed`` before LSO, codes ``w``."""

    images: torch.Tensor
    mixed: torch.Tensor
    w: torch.Tensor
    lso_results: list[LSOResult] = field(default_factory=list)


def stylize(G_s: Generator, G_t: Generator, w_s: torch.Tensor, gallery: StyleGallery, *, method: str = "lerp",
            gamma: Gamma | None = None, swap_res: int | None = None, content: torch.Tensor | None = None,
            lso_kwargs: dict | None = None, batch_size: int = 16, progress: bool = True,
            judge: Callable[[torch.Tensor, torch.Tensor], float] | None = None, lso_batch_size: int = 1) -> Stylized:
    """Stylise the content code ``w_s`` [1, num_ws, w_dim] against every gallery entry.

    ``method``: ``layer_swap`` | ``swap_g_and_w`` | ``lerp`` | ``lerp_lso`` (Fig. 2). The mixed
    generator does not depend on the style code, so it is built once and the mixed codes are
    rendered in batches of ``batch_size``; ``lerp_lso`` then runs LSO (needs ``content``) per entry,
    ``lso_batch_size`` entries at a time (independent problems in one batch; 1 = one at a time).
    """
    if method in ("layer_swap", "swap_g_and_w"):
        sched = swap_schedule(G_s, swap_res if swap_res is not None else default_swap_res(G_s))
    elif method in ("lerp", "lerp_lso"):
        sched = gamma_schedule(G_s, gamma)
    else:
        raise ValueError(f"unknown method {method!r}")
    if method == "lerp_lso" and content is None:
        raise ValueError("lerp_lso needs the content image (the LSO target)")
    G_m = blend_generators(G_s, G_t, sched)
    n = len(gallery)
    if method == "layer_swap":
        w_m = w_s.expand(n, -1, -1).clone()
    else:
        w_m = blend_latents(w_s.expand(n, -1, -1), gallery.w.to(w_s), sched, resolutions=block_resolutions(G_s))
    mixed = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            mixed.append(G_m.synthesis(w_m[i : i + batch_size], noise_mode="const"))
    mixed_t = torch.cat(mixed)
    if method != "lerp_lso":
        return Stylized(images=mixed_t, mixed=mixed_t, w=w_m)
    results: list[LSOResult] = []
    step = max(1, int(lso_batch_size))
    for i in tqdm(range(0, n, step), disable=not progress, desc="LSO over gallery"):
        res = lso(G_m, w_m[i : i + step], content, progress=False, judge=judge, **(lso_kwargs or {}))
        results.extend(split_result(res) if res.w.shape[0] > 1 else [res])
    return Stylized(images=torch.cat([r.image for r in results]), mixed=mixed_t,
                    w=torch.cat([r.w for r in results]), lso_results=results)
