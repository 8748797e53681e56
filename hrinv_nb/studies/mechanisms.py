"""Measurements that show the paper's mechanisms in a figure rather than in prose.

* :func:`frequency_penalty`: how much a perceptual loss penalises a sinusoidal perturbation of the target,
  per frequency. A loss whose input is area-downsampled from side S to s averages every s/S block, so
  patterns above s/S × Nyquist are (nearly) invisible to it: they are left unconstrained, which is
  where the artifacts of a downsampled loss live (Figs. 1 and 6).
* :func:`gradient_spectrum`: the radially averaged power of ∂L/∂x, the signal the optimiser receives.
* :func:`relu_zero_share`: the share of pre-ReLU (conv) activations a ReLU would zero, per layer, i.e.
  the units whose changes a relu-based loss cannot see (the paper's argument for conv features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..losses import LayerKey, PerceptualLoss
from ..toy.quality import radial_spectrum


def sinusoids(
    size: tuple[int, int], frequency: float, n: int, generator: torch.Generator, amplitude: float = 0.05
) -> torch.Tensor:
    """``n`` grey sinusoidal patterns [n, 3, H, W] at ``frequency`` (a fraction of Nyquist, 0 < f <= 1),
    random orientations and phases, peak ``amplitude`` (on the [-1, 1] image scale)."""
    assert 0 < frequency <= 1 and n >= 1, (frequency, n)
    h, w = size
    theta = torch.rand(n, 1, 1, generator=generator) * math.pi
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * math.pi
    y = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    k = math.pi * frequency  # Nyquist is 0.5 cycles per pixel: 2π · 0.5 · f
    wave = amplitude * torch.cos(k * (x * torch.cos(theta) + y * torch.sin(theta)) + phase)
    return wave.unsqueeze(1).expand(n, 3, h, w).contiguous()


def frequency_penalty(
    loss: PerceptualLoss,
    target: torch.Tensor,
    frequencies: Sequence[float],
    n: int = 8,
    amplitude: float = 0.05,
    seed: int = 0,
) -> torch.Tensor:
    """Mean ``loss(target + p)`` over ``n`` sinusoids ``p`` per frequency (fractions of Nyquist) -> [F].

    The loss's target is set to ``target`` [1, 3, H, W], so an unperturbed image scores 0; the same
    patterns (seeded) are used for every loss, so curves of different losses compare frequency by
    frequency (divide by a curve's low-frequency value to compare shapes)."""
    assert target.ndim == 4 and target.shape[0] == 1, tuple(target.shape)
    generator = torch.Generator().manual_seed(seed)
    loss.set_target(target)
    device = target.device
    out = []
    with torch.no_grad():
        for f in frequencies:
            p = sinusoids(tuple(target.shape[-2:]), float(f), n, generator, amplitude).to(device)
            out.append(float(loss((target + p).clamp(-1, 1))))
    return torch.tensor(out, dtype=torch.float64)


def gradient_spectrum(
    loss: PerceptualLoss, img: torch.Tensor, target: torch.Tensor, n_bins: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Radial power spectrum of ∂loss(img)/∂img for ``loss`` with target ``target``: (frequency / Nyquist, power)."""
    assert img.ndim == 4 and img.shape[1:] == target.shape[1:], (tuple(img.shape), tuple(target.shape))
    loss.set_target(target)
    x = img.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x), x)
    return radial_spectrum(grad, n_bins)


def share_above(frequency: torch.Tensor, power: torch.Tensor, cutoff: float) -> float:
    """Share of a radial spectrum's power in bins above ``cutoff`` × Nyquist."""
    total = float(power.sum())
    return float(power[frequency > cutoff].sum()) / total if total > 0 else float("nan")


def relu_zero_share(conv_loss: PerceptualLoss, img: torch.Tensor) -> dict[LayerKey, float]:
    """Per layer of a conv-feature (pre-ReLU) loss, the share of activations <= 0 for ``img``: the units a
    ReLU zeroes, whose changes a relu-based loss does not see (its gradient through them is 0)."""
    with torch.no_grad():
        feats = conv_loss.features(img)
    return {key: float((f <= 0).double().mean()) for key, f in feats.items()}
