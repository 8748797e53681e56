"""Batched helpers for the evaluation notebooks (Fig. 13, Table III): invert many contents at once,
stylise every content against a style gallery with several mixing methods, and run LSO in batches.

Every optimisation here is a batch of *independent* problems: the loss is the sum of the per-sample
losses and Adam is element-wise, so each sample follows the trajectory it would follow alone (up to
float summation order and the random draws, which come from one seeded ``torch.Generator``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..blending import blend_generators, blend_latents, block_resolutions, default_swap_res, gamma_schedule, swap_schedule
from ..losses import PerceptualLoss, perceptual_loss
from ..lso import lso
from ..networks import Generator
from ..projector import latent_noise_sigma, learning_rate, w_statistics


@dataclass
class BatchProjection:
    """``w`` [B, num_ws, w_dim] (W+, no ε), ``image`` [B, 3, H, W] = G(w) with const noise,
    ``history`` per-step sums over the batch (``loss``, ``perceptual``, ``mse``)."""

    w: torch.Tensor
    image: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)


def project_batch(
    G: Generator,
    targets: torch.Tensor,
    *,
    loss: PerceptualLoss | str,
    num_steps: int = 1000,
    mse_weight: float = 50.0,
    lr: float = 0.1,
    seed: int = 0,
    chunk: int = 16,
    progress: bool = True,
    w_avg_samples: int = 10000,
    w_avg_seed: int = 303,
) -> BatchProjection:
    """W+ projection of B targets [B, 3, H, W] into ``G`` with w only (Eq. 5: fixed noise maps).

    The same objective and schedule as :func:`hrinv_nb.project` with ``optimize_noise=False``
    (perceptual + λ_mse·MSE, lr ramp-up/cosine ramp-down, ε decaying to 0 at 75 %), solved for
    ``chunk`` targets at a time as independent problems (sum of the per-sample losses).
    """
    assert targets.ndim == 4 and targets.shape[1] == 3, f"targets must be [B,3,H,W], got {tuple(targets.shape)}"
    assert torch.isfinite(targets).all(), "targets contain non-finite values"
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    device = next(G.parameters()).device
    if isinstance(loss, str):
        loss = perceptual_loss(loss, device=str(device))
    w_avg, w_std = w_statistics(G, w_avg_samples, w_avg_seed)
    gen = torch.Generator().manual_seed(seed)
    ws, imgs, history = [], [], {"loss": [0.0] * num_steps, "perceptual": [0.0] * num_steps, "mse": [0.0] * num_steps}
    chunks = list(range(0, targets.shape[0], chunk))
    bar = tqdm(total=len(chunks) * num_steps, disable=not progress, file=sys.stderr, desc="project batch", leave=False)
    for start in chunks:
        tgt = targets[start : start + chunk].to(device, torch.float32)
        b = tgt.shape[0]
        loss.set_target(tgt)
        w_opt = w_avg.repeat(b, G.num_ws, 1).clone().requires_grad_(True)
        opt = torch.optim.Adam([w_opt], lr=lr, betas=(0.9, 0.999))
        for step in range(num_steps):
            t = step / num_steps
            for group in opt.param_groups:
                group["lr"] = learning_rate(t, lr)
            sigma = latent_noise_sigma(t, w_std)
            eps = (torch.randn(w_opt.shape, generator=gen) * sigma).to(device)
            img = G.synthesis(w_opt + eps, noise_mode="const")
            perc = loss(img) * b  # the loss averages over the batch: × B is the sum of B problems
            mse = (img - tgt).square().mean(dim=(1, 2, 3)).sum()
            total = perc + mse_weight * mse
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            history["loss"][step] += float(total.detach())
            history["perceptual"][step] += float(perc.detach())
            history["mse"][step] += float(mse.detach())
            bar.update(1)
        with torch.no_grad():
            w_final = w_opt.detach().clone()
            ws.append(w_final)
            imgs.append(G.synthesis(w_final, noise_mode="const"))
    bar.close()
    return BatchProjection(w=torch.cat(ws), image=torch.cat(imgs), history=history)


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
