"""Batched GAN inversion: many independent projections (spec §3) optimised in one batch.

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
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .losses import PerceptualLoss, perceptual_loss
from .projector import (
    ProjectionResult, _initial_w, latent_noise_sigma, learning_rate, noise_regularization_per_sample,
    normalize_noise_per_sample_, w_statistics,
)


@dataclass
class BatchProjectionResult:
    """``w`` [B, num_ws, w_dim] (without ε); ``noise`` maps [B, H, W] by buffer name (empty when not
    optimised); ``images`` [B, 3, H, W] = G(w, noise); ``history`` per-step batch means of lr, sigma,
    loss, perceptual, mse, noise_reg (per sample)."""

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
    :func:`hrinv_nb.perceptual_loss` does; its target is set here).
    """
    assert isinstance(targets, torch.Tensor) and targets.ndim == 4 and targets.shape[1] == 3, (
        f"targets must be [B,3,H,W] in [-1,1], got {tuple(targets.shape) if isinstance(targets, torch.Tensor) else targets}"
    )
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain non-finite values")
    if w_space.lower() not in ("w+", "w"):
        raise ValueError(f"w_space must be 'w+' or 'w', got {w_space!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    device = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    if G.c_dim > 0:
        raise ValueError("project_batch supports unconditional generators only")
    targets = targets.to(device, torch.float32)
    batch = targets.shape[0]
    if isinstance(loss, str):
        loss = perceptual_loss(loss, device=device)
    loss.set_target(targets)

    generator = torch.Generator(device=device).manual_seed(seed)
    w_avg, w_std = w_statistics(G, w_avg_samples, w_avg_seed)
    rows = G.num_ws if w_space.lower() == "w+" else 1
    w_opt = _initial_w(None, w_avg, rows, G.w_dim, device).repeat(batch, 1, 1).requires_grad_(True)

    layers = _noise_layers(G)
    noise_bufs: dict[str, torch.Tensor] = {}
    if optimize_noise:
        for name, module in layers.items():
            res = module.noise_const.shape[-1]
            buf = torch.randn([batch, 1, res, res], generator=generator, device=device).requires_grad_(True)
            module._buffers["noise_const"] = buf  # broadcast over channels, one map per sample
            noise_bufs[name] = buf
    params = [w_opt] + list(noise_bufs.values())
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas)

    history: dict[str, list[float]] = {k: [] for k in ("lr", "sigma", "loss", "perceptual", "mse", "noise_reg")}
    bar = tqdm(range(num_steps), disable=not progress, file=sys.stderr, desc=f"project x{batch}", leave=False)
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
        mse = (synth - targets).square().mean(dim=(1, 2, 3))  # [B]
        if noise_reg_weight > 0:
            if not noise_bufs:
                raise ValueError("noise_reg_weight > 0 needs optimize_noise=True")
            noise_reg = noise_regularization_per_sample(noise_bufs.values())
        else:
            noise_reg = torch.zeros(batch, device=device)
        per_sample = mse_weight * mse + noise_reg_weight * noise_reg
        total = perceptual + per_sample.sum()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if noise_bufs and normalize_noise:
            normalize_noise_per_sample_(noise_bufs.values())

        for key, value in (("lr", step_lr), ("sigma", sigma), ("loss", total / batch), ("perceptual", perceptual / batch),
                           ("mse", mse.mean()), ("noise_reg", noise_reg.mean())):
            history[key].append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", mse=f"{history['mse'][-1]:.4g}")
        del synth, perceptual, mse, noise_reg, total
    bar.close()

    with torch.no_grad():
        w_final = w_opt.detach().expand(batch, G.num_ws, G.w_dim).clone()
        images = G.synthesis(w_final, noise_mode="const")
    noise = {name: buf.detach()[:, 0].clone() for name, buf in noise_bufs.items()}
    assert images.shape == targets.shape and w_final.shape == (batch, G.num_ws, G.w_dim)
    return BatchProjectionResult(w=w_final, noise=noise, images=images, history=history)
