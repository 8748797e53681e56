"""GAN inversion by optimisation (Eq. 1; spec §3), the HRInversion projector.

:func:`project` optimises a W or W+ code (and optionally the constant noise maps of a deep copy of
the generator) with Adam under the authors' schedule: the learning rate ramps up over the first 5 %
of the steps from exactly 0, stays flat, and follows a cosine to ≈0 over the last 25 %
(:func:`learning_rate`); latent noise ε of scale 0.05·w_std decays quadratically to 0 at 75 %
(:func:`latent_noise_sigma`). The loss is d(G(w+ε, n), x) + λ_mse·MSE + λ_noise·R(n).

Noise maps are renormalised only when they are optimised (the authors' code also renormalised the
generator's fixed constant maps, a quirk avoided here, spec §11.16).

Randomness: w̄ and w_std come from ``numpy.random.RandomState(w_avg_seed)`` latents, like the
authors' code; the fresh noise maps and ε come from ``torch.Generator(device).manual_seed(seed)``.
Same seed, same device and thread count -> the same result.

Results save to ``.npz`` with the authors' key ``w`` ([1, num_ws, w_dim]) and the noise maps under
``noise_bufs/<buffer name>`` (flat arrays, no pickle; the authors pickled a dict under
``noise_bufs``, which :func:`load_projection` reads only with ``allow_pickle=True``).
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .files import atomic_write
from .losses import PerceptualLoss, perceptual_loss

NOISE_PREFIX = "noise_bufs/"


@dataclass
class ProjectionResult:
    """``w`` [1, num_ws, w_dim] without ε; ``noise`` the optimised maps by buffer name (empty when
    they were not optimised: the generator's own constant maps apply); ``image`` [1, 3, H, W] =
    G(w, noise); ``history`` per-step lists: lr, sigma, loss, perceptual, mse, noise_reg."""

    w: torch.Tensor
    noise: dict[str, torch.Tensor]
    image: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``w`` and ``noise`` to ``path`` (.npz, atomically)."""
        return save_projection(path, self.w, self.noise)


# ----------------------------------------------------------------------------------------------
# Schedules (pure functions of t = step / num_steps)


def learning_rate(t: float, base_lr: float = 0.1, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning rate at ``t`` ∈ [0, 1): linear ramp-up (0 at t=0), flat, cosine ramp-down over the tail."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)
    return base_lr * ramp


def latent_noise_sigma(t: float, w_std: float, factor: float = 0.05, ramp: float = 0.75) -> float:
    """σ_ε(t) = w_std · factor · max(0, 1 − t/ramp)²."""
    return w_std * factor * max(0.0, 1.0 - t / ramp) ** 2


# ----------------------------------------------------------------------------------------------
# Latent statistics and noise maps


def w_statistics(
    G: nn.Module,
    num_samples: int = 10000,
    seed: int = 303,
    c: torch.Tensor | None = None,
    batch_size: int = 2000,
) -> tuple[torch.Tensor, float]:
    """w̄ [1, 1, w_dim] and the total std sqrt(Σ‖w − w̄‖² / N) from N mapped ``RandomState(seed)`` latents."""
    device = next(G.parameters()).device
    z_all = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    samples = []
    with torch.no_grad():
        for start in range(0, num_samples, batch_size):
            z = torch.from_numpy(z_all[start : start + batch_size]).to(device, torch.float32)
            cz = None if c is None else c.to(device).expand(z.shape[0], -1)
            ws = G.mapping(z, cz, truncation_psi=1)
            samples.append(ws[:, 0, :].to("cpu", torch.float64).numpy())
    w = np.concatenate(samples, axis=0)
    w_avg = w.mean(axis=0, keepdims=True)
    w_std = float(np.sqrt(np.sum((w - w_avg) ** 2) / num_samples))
    return torch.from_numpy(w_avg[None]).to(device, torch.float32), w_std


def generator_noise_buffers(G: nn.Module) -> dict[str, torch.Tensor]:
    """The constant noise maps of ``G.synthesis`` (buffers whose name contains ``noise_const``)."""
    return {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}


def _autocorrelation_penalty(maps: Iterable[torch.Tensor], mean) -> torch.Tensor:
    """Σ over maps and scales (down to 8²) of mean(n·roll_x n)² + mean(n·roll_y n)², ``mean`` the reduction."""
    total = None
    for n in maps:
        while True:
            term = mean(n * torch.roll(n, 1, dims=3)) ** 2 + mean(n * torch.roll(n, 1, dims=2)) ** 2
            total = term if total is None else total + term
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    if total is None:
        raise ValueError("no noise maps")
    return total


def _as_4d(buf: torch.Tensor) -> torch.Tensor:
    n = buf[None, None] if buf.ndim == 2 else buf
    assert n.ndim == 4, f"noise map must be [H,W] or [B,C,H,W], got {tuple(buf.shape)}"
    return n


def noise_regularization(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """NVIDIA's multi-scale autocorrelation penalty Σ (mean(n·roll_x n)² + mean(n·roll_y n)²) down to 8²."""
    return _autocorrelation_penalty((_as_4d(b) for b in noise), lambda t: t.mean())


def noise_regularization_per_sample(noise: Iterable[torch.Tensor]) -> torch.Tensor:
    """The same penalty for each sample of ``[B, 1, H, W]`` maps -> ``[B]`` (batched projection)."""

    def maps():
        for buf in noise:
            assert buf.ndim == 4 and buf.shape[1] == 1, f"expected noise maps [B,1,H,W], got {tuple(buf.shape)}"
            yield buf

    return _autocorrelation_penalty(maps(), lambda t: t.mean(dim=(1, 2, 3)))


def normalize_noise_(noise: Iterable[torch.Tensor]) -> None:
    """Re-centre and rescale each map in place to zero mean and unit RMS (no grad)."""
    with torch.no_grad():
        for buf in noise:
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()


def normalize_noise_per_sample_(noise: Iterable[torch.Tensor]) -> None:
    """Re-centre and rescale each sample's ``[B, 1, H, W]`` map in place to zero mean and unit RMS (no grad)."""
    with torch.no_grad():
        for buf in noise:
            buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
            buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


# ----------------------------------------------------------------------------------------------
# .npz files


def save_projection(path: str | os.PathLike, w: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``w`` [1, num_ws, w_dim] and the noise maps to ``path`` atomically (tmp file + os.replace)."""
    path = Path(path)
    assert w.ndim == 3 and w.shape[0] == 1, f"w must be [1,num_ws,w_dim], got {tuple(w.shape)}"
    arrays = {"w": w.detach().to("cpu", torch.float32).numpy()}
    for name, buf in (noise or {}).items():
        arrays[NOISE_PREFIX + name] = buf.detach().to("cpu", torch.float32).numpy()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)

    return atomic_write(path, write)


def load_projection(path: str | os.PathLike, *, allow_pickle: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Read ``(w, noise)`` from a projection ``.npz``; the authors' pickled format needs ``allow_pickle=True``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if "w" not in data.files:
            raise ValueError(f"{path}: no 'w' array; keys {data.files}")
        w = torch.from_numpy(np.array(data["w"], dtype=np.float32))
        noise = {k[len(NOISE_PREFIX):]: torch.from_numpy(np.array(data[k], dtype=np.float32))
                 for k in data.files if k.startswith(NOISE_PREFIX)}
        legacy = "noise_bufs" in data.files
    if legacy:
        if not allow_pickle:
            raise ValueError(
                f"{path} stores 'noise_bufs' as a pickled dict (the authors' format); "
                "pass allow_pickle=True only for files you trust"
            )
        with np.load(path, allow_pickle=True) as data:
            noise = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in data["noise_bufs"].item().items()}
    if w.ndim == 2:
        w = w[None]
    return w, noise


# ----------------------------------------------------------------------------------------------
# The projector


def _check_target(target: torch.Tensor) -> None:
    assert isinstance(target, torch.Tensor) and target.ndim == 4 and target.shape[:2] == (1, 3), (
        f"target must be [1,3,H,W] in [-1,1], got {tuple(target.shape) if isinstance(target, torch.Tensor) else target}"
    )
    if not torch.isfinite(target).all():
        raise ValueError("target contains non-finite values")


def _initial_w(
    w_init: torch.Tensor | None, w_avg: torch.Tensor, rows: int, w_dim: int, device: torch.device
) -> torch.Tensor:
    """w̄ repeated to ``rows`` rows, or a copy of ``w_init`` ([1, rows, w_dim] or [1, 1, w_dim])."""
    if w_init is None:
        return w_avg.repeat(1, rows, 1).clone()
    w_init = w_init.detach().to(device, torch.float32)
    assert w_init.ndim == 3 and w_init.shape[0] == 1 and w_init.shape[2] == w_dim and w_init.shape[1] in (1, rows), (
        f"w_init must be [1,{rows},{w_dim}] (or [1,1,{w_dim}]), got {tuple(w_init.shape)}"
    )
    return w_init.expand(1, rows, w_dim).clone()


def project(
    G: nn.Module,
    target: torch.Tensor,
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
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    w_avg_samples: int = 10000,
    w_avg_seed: int = 303,
    lr_rampup: float = 0.05,
    lr_rampdown: float = 0.25,
    latent_noise_factor: float = 0.05,
    latent_noise_ramp: float = 0.75,
    betas: tuple[float, float] = (0.9, 0.999),
    normalize_noise: bool = True,
    optimize_w: bool = True,
    w_init: torch.Tensor | None = None,
    c: torch.Tensor | None = None,
) -> ProjectionResult:
    """Invert ``target`` ([1, 3, H, W] in [-1, 1]) into ``G`` (never mutated; a deep copy is optimised).

    ``loss``: a module from :func:`perceptual_loss` (its target is set here) or a loss name.
    ``w_space``: ``'w+'`` (one code per layer, HRInversion) or ``'w'`` (one shared code).
    ``optimize_noise``: fresh N(0, 1) noise maps, optimised and renormalised after every step.
    ``optimize_w=False`` with ``w_init`` optimises only the noise maps (ε off), as in spec §8.1.
    ``callback(step, w, image)`` receives detached snapshots (w without ε, image with ε).
    ε is drawn for every row of the optimised code (W+: one draw per layer; W: one shared draw).
    """
    _check_target(target)
    if w_space.lower() not in ("w+", "w"):
        raise ValueError(f"w_space must be 'w+' or 'w', got {w_space!r}")
    if not (optimize_w or optimize_noise):
        raise ValueError("nothing to optimise: optimize_w and optimize_noise are both False")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    device = next(G.parameters()).device
    G = copy.deepcopy(G).eval().requires_grad_(False)
    if G.c_dim > 0 and c is None:
        raise ValueError(f"G is conditional (c_dim={G.c_dim}); pass c=[1,{G.c_dim}]")
    target = target.to(device, torch.float32)
    if isinstance(loss, str):
        loss = perceptual_loss(loss, device=device)
    loss.set_target(target)

    generator = torch.Generator(device=device).manual_seed(seed)
    w_avg, w_std = w_statistics(G, w_avg_samples, w_avg_seed, c)
    rows = G.num_ws if w_space.lower() == "w+" else 1
    w_opt = _initial_w(w_init, w_avg, rows, G.w_dim, device).requires_grad_(optimize_w)

    noise_bufs = generator_noise_buffers(G)
    if optimize_noise:
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf.copy_(torch.randn(buf.shape, generator=generator, device=device, dtype=buf.dtype))
        for buf in noise_bufs.values():
            buf.requires_grad_(True)
    params = ([w_opt] if optimize_w else []) + (list(noise_bufs.values()) if optimize_noise else [])
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas)

    history: dict[str, list[float]] = {k: [] for k in ("lr", "sigma", "loss", "perceptual", "mse", "noise_reg")}
    bar = tqdm(range(num_steps), disable=not progress, file=sys.stderr, desc="project", leave=False)
    for step in bar:
        t = step / num_steps
        step_lr = learning_rate(t, lr, lr_rampup, lr_rampdown)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        sigma = latent_noise_sigma(t, w_std, latent_noise_factor, latent_noise_ramp) if optimize_w else 0.0
        eps = torch.randn(w_opt.shape, generator=generator, device=device) * sigma if optimize_w else 0.0
        synth = G.synthesis((w_opt + eps).expand(1, G.num_ws, G.w_dim), noise_mode="const")
        if synth.shape != target.shape:
            raise ValueError(f"G produces {tuple(synth.shape)} images but the target is {tuple(target.shape)}")
        perceptual = loss(synth)
        mse = (synth - target).square().mean()
        noise_reg = noise_regularization(noise_bufs.values()) if noise_reg_weight > 0 else torch.zeros((), device=device)
        total = perceptual + mse_weight * mse + noise_reg_weight * noise_reg
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if optimize_noise and normalize_noise:
            normalize_noise_(noise_bufs.values())

        for key, value in (("lr", step_lr), ("sigma", sigma), ("loss", total), ("perceptual", perceptual),
                           ("mse", mse), ("noise_reg", noise_reg)):
            history[key].append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", mse=f"{history['mse'][-1]:.4g}")
        if callback is not None:
            callback(step, w_opt.detach().expand(1, G.num_ws, G.w_dim).clone(), synth.detach())
        del synth, perceptual, mse, noise_reg, total
    bar.close()

    with torch.no_grad():
        w_final = w_opt.detach().expand(1, G.num_ws, G.w_dim).clone()
        image = G.synthesis(w_final, noise_mode="const")
    noise = {name: buf.detach().clone() for name, buf in noise_bufs.items()} if optimize_noise else {}
    return ProjectionResult(w=w_final, noise=noise, image=image, history=history)
