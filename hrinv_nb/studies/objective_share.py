"""What share of the projection objective each term holds, and a random-offset control for LSO.

The HRInversion objective (Eq. 5) is ``Σ_l ‖λ_l(φ_l(G(w)) − φ_l(x))‖² + λ_mse·MSE(G(w), x)``. Its
perceptual part is a *sum* over feature elements and its MSE part a *mean* over pixels, so their
balance depends on the image size: :func:`hrinv_nb.losses.perceptual_loss` multiplies every λ by
:func:`hrinv_nb.losses.resolution_lambda_scale` (the table's input size over the size the backbone sees;
the term by its square). :func:`objective_shares` reads that balance off a projection's history, per
step, and says what it would have been with the λ table as printed; :func:`objective_terms` splits it
per VGG layer for given images. :func:`random_offset_like` is LSO's control: an offset on the same
rows with the same per-row norm as LSO's, in a random direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..losses import PerceptualLoss


def objective_shares(
    history: Mapping[str, Sequence[float]], mse_weight: float = 50.0, perceptual_scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Per step, the share [0, 1] of the objective held by the perceptual term and by ``mse_weight``·MSE.

    ``history`` is a projection's (``perceptual`` and ``mse`` per step, as :func:`hrinv_nb.project`
    records them; ``mse`` unweighted). ``perceptual_scale`` multiplies the recorded perceptual term
    before the shares are taken: ``1 / factor²`` gives the shares the same images would have had with
    the λ table as printed when the run used the λ factor ``factor``. Returns ``perceptual``, ``mse``
    (shares, summing to 1 per step), ``perceptual_term`` and ``mse_term`` (the weighted terms).
    """
    p = np.asarray(history["perceptual"], dtype=float) * float(perceptual_scale)
    m = float(mse_weight) * np.asarray(history["mse"], dtype=float)
    assert p.ndim == 1 and p.shape == m.shape and p.size >= 1, (
        f"per-step histories of equal length: {p.shape}, {m.shape}"
    )
    assert (p >= 0).all() and (m >= 0).all() and mse_weight >= 0 and perceptual_scale > 0
    total = p + m
    assert (total > 0).all(), "an objective of exactly zero has no shares"
    return {"perceptual": p / total, "mse": m / total, "perceptual_term": p, "mse_term": m}


def objective_terms(
    loss: PerceptualLoss, images: torch.Tensor, targets: torch.Tensor, mse_weight: float = 50.0
) -> dict[str, float]:
    """The objective's terms for ``images`` against ``targets`` (both [B, 3, H, W], B problems averaged):
    one per perceptual layer (``"layer <key>"``, with ``loss``'s λ and λ factor) and ``"λ_mse·MSE"``.

    Sets ``loss``'s target to ``targets`` (a projection sets it again before it runs)."""
    assert images.shape == targets.shape and images.ndim == 4 and images.shape[1] == 3, (
        f"images {tuple(images.shape)} and targets {tuple(targets.shape)} must both be [B, 3, H, W]"
    )
    loss.set_target(targets)
    with torch.no_grad():
        terms = {f"layer {key}": float(v) for key, v in loss.distance_terms(images).items()}
        terms["λ_mse·MSE"] = float(mse_weight) * float((images - targets).square().mean())
    return terms


def random_offset_like(offset: torch.Tensor, seed: int) -> torch.Tensor:
    """A random offset with ``offset``'s shape [B, R, D] and the same norm on every (sample, row):
    Gaussian directions from ``torch.Generator(seed)``, each rescaled to the norm of ``offset``'s row."""
    assert offset.ndim == 3, f"expected an LSO offset [B, rows, w_dim], got {tuple(offset.shape)}"
    direction = torch.randn(offset.shape, generator=torch.Generator().manual_seed(seed)).to(offset)
    direction = direction / direction.norm(dim=2, keepdim=True)
    out = direction * offset.norm(dim=2, keepdim=True)
    assert out.shape == offset.shape
    return out
