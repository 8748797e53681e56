"""Batched helpers for the evaluation notebooks (Fig. 13, Table III): stylise every content against a
style gallery with several mixing methods, and run LSO in batches. (The contents are inverted with
:func:`hrinv_nb.batch_projection.project_batch`, the package's one batched projection.)

Every optimisation here is a batch of *independent* problems: the loss is the sum of the per-sample
losses and Adam is element-wise, so each sample follows the trajectory it would follow alone (up to
float summation order and the random draws, which come from one seeded ``torch.Generator``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..blending import (
    blend_generators,
    blend_latents,
    block_resolutions,
    default_swap_res,
    gamma_schedule,
    swap_schedule,
)
from ..lso import lso
from ..networks import Generator


def lso_toolkit(G_m: Generator, w_m: torch.Tensor, content: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, image)`` of :func:`hrinv_nb.lso` on a batch of independent problems, without a progress bar."""
    res = lso(G_m, w_m, content, progress=False, **kwargs)
    return res.w, res.image


@dataclass
class StylizedSet:
    """Stylised images of N contents × S gallery styles, flattened content-major.

    ``images`` [N·S, 3, H, W]; ``labels`` [N·S] = content index; ``style_index`` [N·S];
    ``w`` the W+ codes rendered.
    """

    images: torch.Tensor
    labels: torch.Tensor
    style_index: torch.Tensor
    w: torch.Tensor


def pair_indices(n_contents: int, n_styles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(content index, style index) of every pair, content-major: [N·S] each."""
    c = torch.arange(n_contents).repeat_interleave(n_styles)
    s = torch.arange(n_styles).repeat(n_contents)
    return c, s


def mixed_generator(G_s: Generator, G_t: Generator, method: str) -> tuple[Generator, dict[int, float]]:
    """The mixed generator of ``method`` (``layer_swap``: the paper's default swap block; ``lerp``: paper γ)."""
    if method == "layer_swap":
        sched = swap_schedule(G_s, default_swap_res(G_s))
    elif method in ("lerp", "lerp_lso"):
        sched = gamma_schedule(G_s, None)
    else:
        raise ValueError(f"unknown method {method!r}")
    return blend_generators(G_s, G_t, sched), sched


def stylize_pairs(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    method: str,
    *,
    contents: torch.Tensor | None = None,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    lso_kwargs: dict | None = None,
    batch_size: int = 32,
    progress: bool = True,
    lso_fn: Callable | None = None,
) -> StylizedSet:
    """Stylise contents ``w_s`` [N, num_ws, w_dim] with styles ``w_t`` [S, num_ws, w_dim] (Fig. 2 methods).

    ``layer_swap`` keeps w_s; ``lerp`` blends G and w with the paper's γ; ``lerp_lso`` then runs LSO
    per pair towards ``contents`` [N, 3, H, W] in batches of ``batch_size`` (``lso_fn``: default
    :func:`hrinv_nb.lso` on batches of independent problems). ``pairs`` restricts to given (content, style) index pairs (default: all N·S).
    """
    n, s = w_s.shape[0], w_t.shape[0]
    ci, si = pairs if pairs is not None else pair_indices(n, s)
    G_m, sched = mixed_generator(G_s, G_t, method)
    if method == "layer_swap":
        w_m = w_s[ci]
    else:
        w_m = blend_latents(w_s[ci], w_t[si].to(w_s), sched, resolutions=block_resolutions(G_s))
    if method == "lerp_lso":
        if contents is None:
            raise ValueError("lerp_lso needs the content images (the LSO target)")
        fn = lso_fn or lso_toolkit
        outs_w, outs_img = [], []
        for start in tqdm(range(0, w_m.shape[0], batch_size), disable=not progress, desc="LSO batches", leave=False):
            idx = slice(start, start + batch_size)
            w, img = fn(G_m, w_m[idx], contents[ci[idx]], **(lso_kwargs or {}))
            outs_w.append(w)
            outs_img.append(img)
        return StylizedSet(torch.cat(outs_img), ci, si, torch.cat(outs_w))
    with torch.no_grad():
        imgs = torch.cat([G_m.synthesis(w_m[i : i + batch_size], noise_mode="const")
                          for i in range(0, w_m.shape[0], batch_size)])
    return StylizedSet(imgs, ci, si, w_m)
