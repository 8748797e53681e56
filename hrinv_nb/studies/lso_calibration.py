"""Choosing LSO's λ_reg by measurement: identity restored against style changed, per λ_reg.

The paper gives no λ_reg; the authors' code uses Adam weight decay 0.02 (λ_reg = 0.01) at 1024². How far
LSO moves depends on λ_reg relative to the scale of its d_h loss, which differs between networks and
resolutions, so a pixel-count rescaling alone can leave LSO pinned (a no-op) or free (back to the
content). :func:`reg_weight_sweep` runs lerp + LSO on the same pairs for several λ_reg and measures, per
pair:

* **identity restored**: the share of the mixed image's identity distance to the content that LSO
  removes, (d_before − d_after) / d_before (1: the content's identity; 0: the mixed image's);
* **style changed**: the Gram style distance of the LSO result to the mixed image, over the distance
  between the content and the mixed image (0: the mixed image's style kept; 1: as far as the content).

:func:`choose_reg_weight` picks the λ_reg with the largest identity restored minus style changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..networks import Generator
from .cross_domain import GramStyleDistance


@dataclass(frozen=True)
class SweepPoint:
    """Per-pair measures of one λ_reg (lists of length P, the pairs)."""

    reg_weight: float
    identity_restored: list[float]
    style_changed: list[float]
    offset_norm: list[float]

    def mean(self, key: str) -> float:
        """Mean over the pairs of ``identity_restored``, ``style_changed`` or ``offset_norm``."""
        return float(torch.tensor(getattr(self, key), dtype=torch.float64).mean())


def reg_weight_sweep(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    contents: torch.Tensor,
    reg_weights: Sequence[float],
    *,
    embed: Callable[[torch.Tensor], torch.Tensor],
    gram: GramStyleDistance,
    lso_kwargs: dict,
    batch_size: int | None = None,
) -> list[SweepPoint]:
    """lerp + LSO of every content ``w_s`` [N, L, D] with every style ``w_t`` [S, L, D] for each λ_reg.

    ``contents`` [N, 3, H, W] are the images LSO restores towards; ``lso_kwargs`` go to :func:`hrinv_nb.lso`
    (``num_steps``, ``loss``, ``rows``, ``seed``; not ``reg_weight``). The pairs, their initial variables and
    the mixed images are the same for every λ_reg, so the points differ only by λ_reg."""
    from ..gallery import pair_indices, stylize_pairs
    from ..retrieval import identity_distance

    assert w_s.ndim == 3 and w_t.ndim == 3 and contents.shape[0] == w_s.shape[0], (w_s.shape, w_t.shape, contents.shape)
    assert "reg_weight" not in lso_kwargs, "reg_weight is what the sweep varies"
    assert len(reg_weights) >= 1 and all(r >= 0 for r in reg_weights), reg_weights
    ci, _ = pair_indices(w_s.shape[0], w_t.shape[0])
    targets = contents[ci]
    points = []
    for reg in reg_weights:
        run = stylize_pairs(
            G_s,
            G_t,
            w_s,
            w_t,
            "lerp_lso",
            contents=contents,
            progress=False,
            lso_batch_size=batch_size,
            lso_kwargs=dict(lso_kwargs, reg_weight=float(reg)),
        )
        img, mixed = run.images, run.lso.mixed_image
        before = identity_distance(embed, targets.cpu(), mixed.cpu())
        after = identity_distance(embed, targets.cpu(), img.cpu())
        gap = gram(targets, mixed).cpu()
        points.append(
            SweepPoint(
                reg_weight=float(reg),
                identity_restored=((before - after) / before.clamp_min(1e-12)).tolist(),
                style_changed=(gram(img, mixed).cpu() / gap.clamp_min(1e-12)).tolist(),
                offset_norm=run.lso.offset.flatten(1).norm(dim=1).cpu().tolist(),
            )
        )
    return points


def choose_reg_weight(points: Sequence[SweepPoint]) -> SweepPoint:
    """The point with the largest mean identity restored minus mean style changed (ties: the larger λ_reg)."""
    assert len(points) >= 1
    return max(points, key=lambda p: (p.mean("identity_restored") - p.mean("style_changed"), p.reg_weight))
