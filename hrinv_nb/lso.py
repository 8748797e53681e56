"""Local Style Optimisation, LSO (Eq. 8), and its direction-constrained variant (Eq. 9).

LSO optimises a small offset on selected W+ rows (default 0–4, the "early codes") of a fixed
mixed code w_m, so that the mixed generator's image regains the content's pose and semantics under
the high-level loss d_h, while an L2 term λ_reg‖w_opt‖² keeps the offset, and hence the style,
small:  min_{w_opt} d_h[G_m(w_m + w_opt + ε), x_s] + λ_reg‖w_opt‖².

With ``directions`` [K, w_dim] (e.g. the top-K SeFa eigenvectors) the offset is Σ_k c_k e_k, one
coefficient vector shared by the selected rows, and the L2 term acts on the coefficients.
The ablations of Figs. 14 and 16 are arguments (``loss``, ``rows``, ``reg_weight``), not forks.

Batches: ``w_m`` [B, num_ws, w_dim] with ``content`` [B or 1, 3, H, W] runs B independent LSO
problems at once (one offset per sample, the sum of the per-sample losses). Adam is element-wise,
so every sample follows exactly the trajectory it would follow alone (up to float summation order).

Inputs are checked before any work (:mod:`hrinv_nb.optim_checks`): a positive integer step count,
finite non-negative weights and scales, a finite positive learning rate, a finite code and a
floating-point content image in [-1, 1]; the optimisation stops with
:class:`~hrinv_nb.optim_checks.NonFiniteLossError` at the first non-finite loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import optim_checks
from .errors import HrinvError
from .images import to_uint8
from .losses import PerceptualLoss, perceptual_loss
from .memory import resolve_batch_size
from .networks import Generator
from .projector import generator_noise_buffers, latent_noise_sigma, learning_rate, normalize_noise_

EARLY_ROWS = (0, 1, 2, 3, 4)
PAPER_REG_WEIGHT = 0.01  # the paper's λ_reg, for d_h at 1024²


def resolution_reg_weight(resolution: int, base: float = PAPER_REG_WEIGHT, base_resolution: int = 1024) -> float:
    """λ_reg scaled to the image size: ``base · (resolution / base_resolution)²``.

    d_h is an unnormalised sum over feature elements, so at R² it is ~(R/1024)² of its 1024² size;
    scaling λ_reg the same way keeps the balance of Eq. 8 (64² -> 0.01/256 ≈ 3.9e-5).
    """
    assert resolution > 0 and base_resolution > 0, (resolution, base_resolution)
    return float(base) * (resolution / base_resolution) ** 2


@dataclass
class LSOResult:
    """``w`` = w_m + offset (no ε) [B, num_ws, w_dim]; ``image`` = G_m(w); ``mixed_image`` = G_m(w_m).

    For B = 1, ``distances`` maps to floats; for B > 1 to lists of B floats (one per sample), and
    ``history`` holds the losses summed over the batch.
    """

    w: torch.Tensor
    image: torch.Tensor
    mixed_image: torch.Tensor
    offset: torch.Tensor
    rows: tuple[int, ...]
    history: dict[str, list[float]] = field(default_factory=dict)
    distances: dict[str, float] = field(default_factory=dict)
    noise: dict[str, torch.Tensor] = field(default_factory=dict)


def decoded_target(G_s: Generator, w_s: torch.Tensor) -> torch.Tensor:
    """The authors' LSO target G_s(w_s): const noise, quantised to uint8, mapped back to [-1, 1]."""
    with torch.no_grad():
        img = G_s.synthesis(w_s, noise_mode="const")
    u8 = torch.from_numpy(to_uint8(img)).to(img.device)
    if u8.ndim == 3:
        u8 = u8[None]
    return (u8.permute(0, 3, 1, 2).float() / 255 - 0.5) * 2


def split_result(res: LSOResult) -> list[LSOResult]:
    """Split a batched :class:`LSOResult` into B single-sample results (floats in ``distances``)."""
    out = []
    for i in range(res.w.shape[0]):
        dist = {k: (v[i] if isinstance(v, list) else v) for k, v in res.distances.items()}
        out.append(
            LSOResult(
                w=res.w[i : i + 1],
                image=res.image[i : i + 1],
                mixed_image=res.mixed_image[i : i + 1],
                offset=res.offset[i : i + 1],
                rows=res.rows,
                distances=dist,
            )
        )
    return out


def concat_results(results: Sequence[LSOResult]) -> LSOResult:
    """One :class:`LSOResult` from the results of consecutive batches (distances as lists, history summed)."""
    first = results[0]
    history = {
        k: ([sum(r.history[k][t] for r in results) for t in range(len(v))] if k != "lr" else list(v))
        for k, v in first.history.items()
    }
    distances = {
        k: [x for r in results for x in (r.distances[k] if isinstance(r.distances[k], list) else [r.distances[k]])]
        for k in first.distances
    }
    return LSOResult(
        w=torch.cat([r.w for r in results]),
        image=torch.cat([r.image for r in results]),
        mixed_image=torch.cat([r.mixed_image for r in results]),
        offset=torch.cat([r.offset for r in results]),
        rows=first.rows,
        history=history,
        distances=distances,
    )


def lso(
    G_m: Generator,
    w_m: torch.Tensor,
    content: torch.Tensor,
    *,
    rows: Sequence[int] = EARLY_ROWS,
    num_steps: int = 50,
    reg_weight: float = 0.01,
    loss: PerceptualLoss | str | None = None,
    directions: torch.Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
    lr: float = 0.05,
    reg_mode: str = "loss",
    optimize_noise: bool = False,
    latent_noise_std: float = 0.0,
    init_scale: float = 1e-3,
    init: torch.Tensor | None = None,
    judge: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    batch_size: int | None = None,
) -> LSOResult:
    """Run LSO on the mixed generator ``G_m`` and code ``w_m`` [B, num_ws, w_dim] towards ``content`` [B or 1, 3, H, W].

    ``loss`` defaults to ``perceptual_loss('d_h')`` (layers 21, 28); ``reg_mode='weight_decay'``
    replaces the explicit term by Adam's coupled weight decay 2·reg_weight (the authors' code).
    ``latent_noise_std`` scales ε (σ = std·0.05·max(0, 1 − t/0.75)², drawn per selected row);
    ``optimize_noise`` re-initialises and optimises the noise maps of a copy of G_m. ``judge(a, b)``
    (an identity or LPIPS distance) fills ``distances`` with content↔mixed and content↔result.
    B > 1 runs B independent problems (the sum of their losses; ``seed`` draws all B initial
    offsets and ε at once); ``optimize_noise`` needs B = 1 (noise maps are shared by the batch).
    ``init`` replaces the random initial variable ([B, |rows|, w_dim], or [B, K] with directions).
    ``batch_size``: at most this many problems at once (``None`` or 0: what fits the device's free
    memory, :func:`hrinv_nb.memory.default_batch_size`); the initial variables of all B are drawn first,
    so any batch size ``>= B`` is the one-batch result bit for bit, smaller ones agree up to float
    summation order (ε, drawn batch after batch from the same generator, differs with the batching).
    Raises :class:`~hrinv_nb.errors.HrinvError` for a bad argument or image, and
    :class:`~hrinv_nb.optim_checks.NonFiniteLossError` at the first non-finite loss.
    """
    num_ws, w_dim = G_m.num_ws, G_m.w_dim
    assert w_m.ndim == 3 and w_m.shape[1:] == (num_ws, w_dim), (
        f"w_m must be [B,{num_ws},{w_dim}], got {tuple(w_m.shape)}"
    )
    batch = w_m.shape[0]
    assert content.ndim == 4 and content.shape[1] == 3 and content.shape[0] in (1, batch), (
        f"content must be [1 or {batch},3,H,W], got {tuple(content.shape)}"
    )
    optim_checks.check_images("content", content)
    if not bool(torch.isfinite(w_m).all()):
        raise HrinvError("w_m contains non-finite values")
    optim_checks.check_steps("num_steps", num_steps)
    optim_checks.check_positive("lr", lr)
    for name, value in (("reg_weight", reg_weight), ("latent_noise_std", latent_noise_std), ("init_scale", init_scale)):
        optim_checks.check_weight(name, value)
    if optimize_noise and batch > 1:
        raise ValueError("optimize_noise needs a batch of 1: the noise maps would be shared by the batch")
    rows = tuple(sorted({int(r) for r in rows}))
    if not rows or rows[0] < 0 or rows[-1] >= num_ws:
        raise ValueError(f"rows must be a non-empty subset of 0..{num_ws - 1}, got {rows}")
    if reg_mode not in ("loss", "weight_decay"):
        raise ValueError(f"reg_mode must be 'loss' or 'weight_decay', got {reg_mode!r}")
    device = w_m.device
    if loss is None:
        loss = perceptual_loss("d_h", device=str(device))
    elif isinstance(loss, str):
        loss = perceptual_loss(loss, device=str(device))

    gen = torch.Generator().manual_seed(seed)
    if directions is not None:
        assert directions.ndim == 2 and directions.shape[1] == w_dim, f"directions must be [K,{w_dim}]"
        directions = directions.to(device, torch.float32)
        var = (init_scale * torch.randn([batch, directions.shape[0]], generator=gen)).to(device)
    else:
        var = (init_scale * torch.randn([batch, len(rows), w_dim], generator=gen)).to(device)
    if init is not None:
        assert init.shape == var.shape, f"init must be {tuple(var.shape)}, got {tuple(init.shape)}"
        var = init.detach().clone().to(device, torch.float32)
    size = resolve_batch_size(batch_size, "lso", tuple(content.shape[-2:]), device)
    kw = dict(
        rows=rows, num_steps=num_steps, reg_weight=reg_weight, loss=loss, directions=directions, progress=progress,
        lr=lr, reg_mode=reg_mode, optimize_noise=optimize_noise, latent_noise_std=latent_noise_std, judge=judge,
        callback=callback,
    )  # fmt: skip
    if size >= batch:
        return _lso_batch(G_m, w_m, content, var, gen, **kw)
    parts = []
    for start in range(0, batch, size):
        idx = slice(start, start + size)
        part_content = content[idx] if content.shape[0] > 1 else content
        parts.append(_lso_batch(G_m, w_m[idx], part_content, var[idx], gen, **kw))
    return concat_results(parts)


def _lso_batch(
    G_m: Generator,
    w_m: torch.Tensor,
    content: torch.Tensor,
    var: torch.Tensor,
    gen: torch.Generator,
    *,
    rows: tuple[int, ...],
    num_steps: int,
    reg_weight: float,
    loss: PerceptualLoss,
    directions: torch.Tensor | None,
    progress: bool,
    lr: float,
    reg_mode: str,
    optimize_noise: bool,
    latent_noise_std: float,
    judge: Callable[[torch.Tensor, torch.Tensor], float] | None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None,
) -> LSOResult:
    """One batch of :func:`lso` from the initial variables ``var``; ε (and noise maps) continue ``gen``."""
    w_dim, batch, device = G_m.w_dim, w_m.shape[0], w_m.device
    loss.set_target(content)
    G = copy.deepcopy(G_m).eval().requires_grad_(False) if optimize_noise else G_m
    var = var.detach().clone()
    var.requires_grad_(True)
    params = [var]
    noise = {}
    if optimize_noise:
        noise = generator_noise_buffers(G)
        for buf in noise.values():
            buf.copy_(torch.randn(buf.shape, generator=gen).to(buf))
            buf.requires_grad_(True)
        params += list(noise.values())
    decay = 2 * reg_weight if reg_mode == "weight_decay" else 0.0
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))

    row_index = torch.tensor(rows, device=device)

    def offset_of(v: torch.Tensor) -> torch.Tensor:
        """Per-row offset [B, |rows|, w_dim]."""
        if directions is None:
            return v
        return (v @ directions).unsqueeze(1).expand(batch, len(rows), w_dim)

    def full_w(v: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        off = offset_of(v) if eps is None else offset_of(v) + eps
        return w_m.detach().index_add(1, row_index, off)

    history: dict[str, list[float]] = {"loss": [], "perceptual": [], "reg": [], "lr": []}
    for step in tqdm(range(num_steps), disable=not progress, desc="LSO", leave=False):
        t = step / num_steps
        cur_lr = learning_rate(t, base_lr=lr)
        for group in opt.param_groups:
            group["lr"] = cur_lr
        sigma = latent_noise_sigma(t, latent_noise_std)
        eps = (torch.randn([batch, len(rows), w_dim], generator=gen) * sigma).to(device) if sigma > 0 else None
        img = G.synthesis(full_w(var, eps), noise_mode="const")
        dist = loss(img) * batch  # the losses average over the batch: × B gives the sum of B problems
        reg = var.square().sum()
        total = dist + reg_weight * reg if reg_mode == "loss" else dist
        optim_checks.check_finite_loss(step, {"perceptual": dist, "reg": reg}, total, img)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if decay:
            with torch.no_grad():
                var.grad.add_(var, alpha=decay)  # coupled (L2, not AdamW) decay, as the authors
        opt.step()
        if optimize_noise:
            with torch.no_grad():
                normalize_noise_(noise.values())
        history["loss"].append(float(total.detach()))
        history["perceptual"].append(float(dist.detach()))
        history["reg"].append(float(reg.detach()))
        history["lr"].append(cur_lr)
        if callback is not None:
            callback(step, full_w(var).detach(), img.detach())

    with torch.no_grad():
        w_final = full_w(var).detach()
        optim_checks.check_finite_result("the LSO code w", w_final)
        image = G.synthesis(w_final, noise_mode="const")
        mixed = G_m.synthesis(w_m, noise_mode="const")
    distances: dict = {}
    if judge is not None and batch == 1:
        distances = {"content_vs_mixed": float(judge(content, mixed)), "content_vs_lso": float(judge(content, image))}
    elif judge is not None:
        tgt = [content[i if content.shape[0] > 1 else 0][None] for i in range(batch)]
        distances = {
            "content_vs_mixed": [float(judge(tgt[i], mixed[i : i + 1])) for i in range(batch)],
            "content_vs_lso": [float(judge(tgt[i], image[i : i + 1])) for i in range(batch)],
        }
    return LSOResult(
        w=w_final,
        image=image,
        mixed_image=mixed,
        offset=offset_of(var).detach(),
        rows=rows,
        history=history,
        distances=distances,
        noise={k: v.detach().clone() for k, v in noise.items()},
    )
