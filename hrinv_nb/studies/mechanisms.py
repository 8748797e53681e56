"""Measurements that show the paper's mechanisms in a figure rather than in prose.

* :func:`frequency_penalty`: how much a perceptual loss penalises a sinusoidal perturbation of the target,
  per frequency. A loss whose input is area-downsampled from side S to s averages every s/S block, so
  patterns above s/S × Nyquist are (nearly) invisible to it: they are left unconstrained, which is
  where the artifacts of a downsampled loss live (Figs. 1 and 6).
* :func:`gradient_spectrum`: the radially averaged power of ∂L/∂x, the signal the optimiser receives.
* :func:`relu_zero_share`: the share of pre-ReLU (conv) activations a ReLU would zero, per layer, i.e.
  the units whose changes a relu-based loss cannot see (the paper's argument for conv features).
* :func:`highband_split`: a reconstruction's high band split into the part that *is* the target's high
  band (matched detail) and the remainder (spurious detail: artifacts, or texture that is not the target's);
  the residual's high-band power is exactly missing + spurious, so blur and artifacts are told apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..losses import LayerKey, PerceptualLoss
from ..spectral import radial_frequency
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


def highband_split(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> dict[str, torch.Tensor]:
    """Split the high band (above ``cutoff`` × Nyquist) of ``img`` against that of ``target``, per sample.

    With ``x_h``, ``t_h`` the high-pass parts (channels pooled), ``alpha = <x_h, t_h> / |t_h|²`` is how
    much of the target's high band the image reproduces *in place* (1: all of it, 0: none, e.g. a blur),
    and ``e = x_h − alpha·t_h`` (orthogonal to ``t_h``) is high-frequency content that is not the
    target's: artifacts, or texture at the wrong place. The residual's high band then splits exactly:
    ``|x_h − t_h|² = (1 − alpha)²|t_h|² + |e|²``. Returns float64 ``[B]`` tensors, powers in the units of
    :func:`hrinv_nb.metrics.hf_artifact_energy` (mean over channels of the band power):

    * ``matched``: ``alpha``; ``spurious``: ``|e|²``; ``missing``: ``(1 − alpha)²|t_h|²``;
    * ``spurious_ratio``: ``|e|² / |t_h|²`` (spurious power relative to the target's own detail);
    * ``target``: ``|t_h|²``; ``residual``: ``missing + spurious`` (equals the residual band power).
    """
    assert img.ndim == 4 and img.shape == target.shape and img.shape[1] >= 1, (tuple(img.shape), tuple(target.shape))
    x = img.detach().double()
    t = target.detach().double().to(x.device)
    height, width = x.shape[2:]
    mask = radial_frequency(height, width, x.device) > cutoff
    xf, tf = torch.fft.fft2(x) * mask, torch.fft.fft2(t) * mask
    norm = float(height * width) ** 2 * x.shape[1]  # Parseval: power per pixel, averaged over channels
    t_power = tf.abs().square().sum(dim=(1, 2, 3)) / norm
    cross = (xf * tf.conj()).real.sum(dim=(1, 2, 3)) / norm
    alpha = cross / t_power.clamp_min(1e-30)
    spurious = ((xf - alpha.view(-1, 1, 1, 1) * tf).abs().square().sum(dim=(1, 2, 3)) / norm).clamp_min(0.0)
    missing = (1 - alpha).square() * t_power
    return {
        "matched": alpha,
        "spurious": spurious,
        "missing": missing,
        "spurious_ratio": spurious / t_power.clamp_min(1e-30),
        "target": t_power,
        "residual": missing + spurious,
    }


def spurious_map(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5, gain: float = 8.0) -> torch.Tensor:
    """Where the spurious high band of :func:`highband_split` lies: ``|x_h − alpha·t_h|`` (channel mean),
    amplified ``gain``× and shown as a grey image in [-1, 1] (black: no spurious detail), ``[B, 3, H, W]``."""
    assert img.ndim == 4 and img.shape == target.shape, (tuple(img.shape), tuple(target.shape))
    x = img.detach().double()
    t = target.detach().double().to(x.device)
    mask = radial_frequency(*x.shape[2:], x.device) > cutoff
    xh = torch.fft.ifft2(torch.fft.fft2(x) * mask).real
    th = torch.fft.ifft2(torch.fft.fft2(t) * mask).real
    alpha = highband_split(img, target, cutoff)["matched"].view(-1, 1, 1, 1)
    e = (xh - alpha * th).abs().mean(dim=1, keepdim=True)
    return (e * gain).clamp(0, 2).sub(1).expand_as(x).float()
