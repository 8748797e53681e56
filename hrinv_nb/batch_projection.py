"""Batched GAN inversion: many independent projections optimised in one batch (or in chunks).

:func:`project_batch` inverts ``B`` targets at once. Each sample has its own W/W+ code, its own
noise maps and its own latent noise ε; the optimised objective is the *sum* of the per-sample
losses of :func:`hrinv_nb.project`, so every sample's gradient is exactly its own and Adam (an
element-wise optimiser) treats the samples independently: the batch is B separate projections
that share only the forward passes. Results match :func:`hrinv_nb.project` sample by sample up to
float rounding when the random draws agree (ε off, noise maps not optimised); otherwise the draws
differ (one generator serves the whole batch), not the algorithm.

The per-sample noise maps are held as ``[B, 1, H, W]`` tensors put in place of each synthesis
layer's ``noise_const`` buffer on a deep copy of ``G`` (``noise_const · noise_strength`` then
broadcasts over the batch).

``chunk_size`` bounds the memory: the targets are split into consecutive chunks of at most that many
images, solved one after another as separate problems (each chunk's loss is the sum of its own
per-sample losses, and every chunk starts from w̄ with a fresh Adam state and the full schedule).

Random streams: w̄ and w_std come once from ``numpy.random.RandomState(w_avg_seed)``, as in
:func:`hrinv_nb.project`. Everything else comes from ONE ``torch.Generator(device).manual_seed(seed)``
that continues through the chunks in order (it is not re-seeded per chunk): for each chunk, first
its fresh noise maps (when ``optimize_noise``: one ``[b, 1, r, r]`` draw per layer), then one ε draw
``[b, rows, w_dim]`` per step (ε is drawn, scaled by σ, even on steps where σ = 0). A sample's draws
therefore depend on ``seed``, ``chunk_size`` and its position: the same call gives the same result,
``chunk_size=None`` and ``chunk_size >= B`` give the same result, other chunk sizes give different
(equally valid) draws.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .losses import PerceptualLoss, perceptual_loss
from .optim_checks import check_finite_loss, check_finite_result, check_images, check_steps
from .projector import (
    ProjectionResult,
    _check_schedule,
    _initial_w,
    latent_noise_sigma,
    learning_rate,
    noise_regularization_per_sample,
    normalize_noise_per_sample_,
    w_statistics,
)


@dataclass
class BatchProjectionResult:
    """``w`` [B, num_ws, w_dim] (without ε); ``noise`` maps [B, H, W] by buffer name (empty when not
    optimised); ``images`` [B, 3, H, W] = G(w, noise); ``history`` per-step lr and sigma, and the means over
    all B samples (every chunk) of the per-sample loss, perceptual, mse and noise_reg."""

    w: torch.Tensor
    noise: dict[str, torch.Tensor]
    images: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def sample(self, index: int) -> ProjectionResult:
        """Sample ``index`` as a single :class:`~hrinv_nb.projector.ProjectionResult` (history is the batch's)."""
        return ProjectionResult(
            w=self.w[index : index + 1].clone(),
            noise={name: buf[index].clone() for name, buf in self.noise.items()},
            image=self.images[index : index + 1].clone(),
            history=self.history,
        )


def _noise_layers(G: nn.Module) -> dict[str, nn.Module]:
    """Synthesis layers that own a ``noise_const`` buffer, keyed by the buffer's full name."""
    return {f"{name}.noise_const": module for name, module in G.synthesis.named_modules()
            if "noise_const" in getattr(module, "_buffers", {})}


def _per_sample_loss(loss: PerceptualLoss, synth: torch.Tensor) -> torch.Tensor:
    """Σ_b d(synth_b, target_b): the loss modules divide their batch sum by B, so multiply back."""
    return loss(synth) * synth.shape[0]


def _project_chunk(
    G: nn.Module,
    targets: torch.Tensor,
    loss: PerceptualLoss,
    generator: torch.Generator,
    w_avg: torch.Tensor,
    w_std: float,
    *,
    num_steps: int,
    rows: int,
    optimize_noise: bool,
    mse_weight: float,
    noise_reg_weight: float,
    lr: float,
    lr_rampup: float,
    lr_rampdown: float,
    latent_noise_factor: float,
    latent_noise_ramp: float,
    betas: tuple[float, float],
    normalize_noise: bool,
    progress: bool,
    desc: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, list[float]]]:
    """One chunk ``targets`` [b, 3, H, W] on ``G`` (a private copy whose noise buffers may be replaced).

    Returns ``(w [b, num_ws, w_dim], noise {name: [b, H, W]}, images [b, 3, H, W], history)`` with
    ``history`` per-step *sums* over the chunk's samples (lr and sigma as they are).
    """
    device = targets.device
    batch = targets.shape[0]
    loss.set_target(targets)
    w_opt = _initial_w(None, w_avg, rows, G.w_dim, device).repeat(batch, 1, 1).requires_grad_(True)

    noise_bufs: dict[str, torch.Tensor] = {}
    if optimize_noise:
        for name, module in _noise_layers(G).items():
            res = module.noise_const.shape[-1]
            buf = torch.randn([batch, 1, res, res], generator=generator, device=device).requires_grad_(True)
            module._buffers["noise_const"] = buf  # broadcast over channels, one map per sample
            noise_bufs[name] = buf
    optimizer = torch.optim.Adam([w_opt] + list(noise_bufs.values()), lr=lr, betas=betas)

    history: dict[str, list[float]] = {k: [] for k in ("lr", "sigma", "loss", "perceptual", "mse", "noise_reg")}
    bar = tqdm(range(num_steps), disable=not progress, file=sys.stderr, desc=desc, leave=False)
    for step in bar:
        t = step / num_steps
        step_lr = learning_rate(t, lr, lr_rampup, lr_rampdown)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        sigma = latent_noise_sigma(t, w_std, latent_noise_factor, latent_noise_ramp)
        eps = torch.randn(w_opt.shape, generator=generator, device=device) * sigma
        synth = G.synthesis((w_opt + eps).expand(batch, G.num_ws, G.w_dim), noise_mode="const")
        if synth.shape != targets.shape:
            raise ValueError(f"G produces {tuple(synth.shape)} images but the targets are {tuple(targets.shape)}")
        perceptual = _per_sample_loss(loss, synth)
        mse = (synth - targets).square().mean(dim=(1, 2, 3))  # [b]
        if noise_reg_weight > 0:
            noise_reg = noise_regularization_per_sample(noise_bufs.values())
        else:
            noise_reg = torch.zeros(batch, device=device)
        total = perceptual + (mse_weight * mse + noise_reg_weight * noise_reg).sum()
        check_finite_loss(step, {"perceptual": perceptual, "mse": mse, "noise_reg": noise_reg}, total, synth)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if noise_bufs and normalize_noise:
            normalize_noise_per_sample_(noise_bufs.values())

        for key, value in (("lr", step_lr), ("sigma", sigma), ("loss", total), ("perceptual", perceptual),
                           ("mse", mse.sum()), ("noise_reg", noise_reg.sum())):
            history[key].append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1] / batch:.4g}", mse=f"{history['mse'][-1] / batch:.4g}")
        del synth, perceptual, mse, noise_reg, total
    bar.close()

    with torch.no_grad():
        w_final = w_opt.detach().expand(batch, G.num_ws, G.w_dim).clone()
        check_finite_result("the projected codes w", w_final)
        images = G.synthesis(w_final, noise_mode="const")
    noise = {name: buf.detach()[:, 0].clone() for name, buf in noise_bufs.items()}
    for name, maps in noise.items():
        check_finite_result(f"the noise maps {name}", maps)
    return w_final, noise, images, history


def project_batch(
    G: nn.Module,
    targets: torch.Tensor,
    *,
    loss: PerceptualLoss | str,
    num_steps: int = 1000,
    w_space: str = "w+",
    optimize_noise: bool = True,
    mse_weight: float = 50.0,
    noise_reg_weight: float = 0.0,
    lr: float = 0.1,
    seed: int = 0,
    chunk_size: int | None = None,
    progress: bool = True,
    w_avg_samples: int = 10000,
    w_avg_seed: int = 303,
    lr_rampup: float = 0.05,
    lr_rampdown: float = 0.25,
    latent_noise_factor: float = 0.05,
    latent_noise_ramp: float = 0.75,
    betas: tuple[float, float] = (0.9, 0.999),
    normalize_noise: bool = True,
) -> BatchProjectionResult:
    """Invert every image of ``targets`` ([B, 3, H, W] in [-1, 1]) into ``G`` independently, in one batch.

    Same options and schedule as :func:`hrinv_nb.project` (W+ or W, optional noise maps from
    N(0, 1) with per-sample renormalisation, ε per sample and row, λ_mse·MSE, λ_noise·R(n));
    ``G`` is never mutated. ``loss`` must accept batched targets (every loss of
    :func:`hrinv_nb.perceptual_loss` does; its target is set here, chunk by chunk).
    ``chunk_size``: at most this many targets per batch (None: all B at once); the random streams
    and the chunks are described in the module docstring. Raises
    :class:`~hrinv_nb.errors.HrinvError` for a bad argument or target, and
    :class:`~hrinv_nb.optim_checks.NonFiniteLossError` at the first non-finite loss.
    """
    assert isinstance(targets, torch.Tensor) and targets.ndim == 4 and targets.shape[1] == 3, (
        f"targets must be [B,3,H,W] in [-1,1], got {tuple(targets.shape) if isinstance(targets, torch.Tensor) else targets}"
    )
    check_images("targets", targets)
    _check_schedule(num_steps, lr, lr_rampup, lr_rampdown, latent_noise_factor, latent_noise_ramp,
                    mse_weight=mse_weight, noise_reg_weight=noise_reg_weight)
    total_b = targets.shape[0]
    chunk = total_b if chunk_size is None else check_steps("chunk_size", chunk_size)
    if w_space.lower() not in ("w+", "w"):
        raise ValueError(f"w_space must be 'w+' or 'w', got {w_space!r}")
    if noise_reg_weight > 0 and not optimize_noise:
        raise ValueError("noise_reg_weight > 0 needs optimize_noise=True")
    device = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    if G.c_dim > 0:
        raise ValueError("project_batch supports unconditional generators only")
    if isinstance(loss, str):
        loss = perceptual_loss(loss, device=device)

    generator = torch.Generator(device=device).manual_seed(seed)  # one stream, continued chunk after chunk
    w_avg, w_std = w_statistics(G, w_avg_samples, w_avg_seed)
    rows = G.num_ws if w_space.lower() == "w+" else 1
    starts = range(0, total_b, chunk)
    const_noise = {name: module.noise_const for name, module in _noise_layers(G).items()}
    ws, images, noise_parts = [], [], []
    sums: dict[str, list[float]] = {}
    for k, start in enumerate(starts):
        for name, module in _noise_layers(G).items():  # each chunk starts from G's own buffers
            module._buffers["noise_const"] = const_noise[name]
        tgt = targets[start : start + chunk].to(device, torch.float32)
        desc = f"project x{tgt.shape[0]}" + (f" ({k + 1}/{len(starts)})" if len(starts) > 1 else "")
        w_c, noise_c, images_c, hist_c = _project_chunk(
            G, tgt, loss, generator, w_avg, w_std, num_steps=int(num_steps), rows=rows, optimize_noise=optimize_noise,
            mse_weight=mse_weight, noise_reg_weight=noise_reg_weight, lr=lr, lr_rampup=lr_rampup,
            lr_rampdown=lr_rampdown, latent_noise_factor=latent_noise_factor, latent_noise_ramp=latent_noise_ramp,
            betas=betas, normalize_noise=normalize_noise, progress=progress, desc=desc,
        )
        ws.append(w_c)
        images.append(images_c)
        noise_parts.append(noise_c)
        if not sums:
            sums = hist_c
        else:
            for key in ("loss", "perceptual", "mse", "noise_reg"):
                sums[key] = [a + b for a, b in zip(sums[key], hist_c[key])]
    history = {key: (values if key in ("lr", "sigma") else [v / total_b for v in values]) for key, values in sums.items()}
    w_final, images_all = torch.cat(ws), torch.cat(images)
    noise = {name: torch.cat([part[name] for part in noise_parts]) for name in noise_parts[0]}
    assert images_all.shape == (total_b, 3, *targets.shape[2:]) and w_final.shape == (total_b, G.num_ws, G.w_dim)
    return BatchProjectionResult(w=w_final, noise=noise, images=images_all, history=history)
