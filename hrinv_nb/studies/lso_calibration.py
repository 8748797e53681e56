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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..gallery import Stylized
from ..networks import Generator
from .cross_domain import GramStyleDistance, identity_gain


@dataclass(frozen=True)
class SweepPoint:
    """Per-pair measures of one λ_reg (lists of length P, the pairs)."""

    reg_weight: float
    identity_restored: list[float]
    style_changed: list[float]
    offset_norm: list[float]
    id_before: list[float] = field(default_factory=list)  # identity distance content ↔ mixed image
    id_after: list[float] = field(default_factory=list)  # identity distance content ↔ LSO result

    def mean(self, key: str) -> float:
        """Mean over the pairs of ``identity_restored``, ``style_changed`` or ``offset_norm``."""
        return float(torch.tensor(getattr(self, key), dtype=torch.float64).mean())


def sweep_runs(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    contents: torch.Tensor,
    reg_weights: Sequence[float],
    *,
    lso_kwargs: dict,
    batch_size: int | None = None,
) -> list[Stylized]:
    """lerp + LSO of every content ``w_s`` [N, L, D] with every style ``w_t`` [S, L, D], once per λ_reg.

    ``contents`` [N, 3, H, W] are the images LSO restores towards; ``lso_kwargs`` go to :func:`hrinv_nb.lso`
    (``num_steps``, ``loss``, ``rows``, ``seed``; not ``reg_weight``). The pairs (content-major,
    :func:`hrinv_nb.gallery.pair_indices`), their initial variables and the mixed images are the same
    for every λ_reg, so the runs differ only by λ_reg."""
    from ..gallery import stylize_pairs

    assert w_s.ndim == 3 and w_t.ndim == 3 and contents.shape[0] == w_s.shape[0], (w_s.shape, w_t.shape, contents.shape)
    assert "reg_weight" not in lso_kwargs, "reg_weight is what the sweep varies"
    assert len(reg_weights) >= 1 and all(r >= 0 for r in reg_weights), reg_weights
    runs = []
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
        assert isinstance(run, Stylized) and run.lso is not None
        runs.append(run)
    return runs


def sweep_point(
    run: Stylized,
    reg_weight: float,
    contents: torch.Tensor,
    *,
    embed: Callable[[torch.Tensor], torch.Tensor],
    gram: GramStyleDistance,
) -> SweepPoint:
    """The per-pair measures of one λ_reg's run (``contents`` [N, 3, H, W], indexed by the run's pairs)."""
    from ..retrieval import identity_distance

    assert run.lso is not None, "the run has no LSO"
    targets = contents[run.content_index]
    img, mixed = run.images, run.lso.mixed_image
    assert img.shape == mixed.shape == targets.shape, (img.shape, mixed.shape, targets.shape)
    before = identity_distance(embed, targets.cpu(), mixed.cpu())
    after = identity_distance(embed, targets.cpu(), img.cpu())
    gap = gram(targets, mixed).cpu()
    return SweepPoint(
        reg_weight=float(reg_weight),
        identity_restored=((before - after) / before.clamp_min(1e-12)).tolist(),
        style_changed=(gram(img, mixed).cpu() / gap.clamp_min(1e-12)).tolist(),
        offset_norm=run.lso.offset.flatten(1).norm(dim=1).cpu().tolist(),
        id_before=before.tolist(),
        id_after=after.tolist(),
    )


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
    """:func:`sweep_runs` measured by :func:`sweep_point`: one :class:`SweepPoint` per λ_reg."""
    runs = sweep_runs(G_s, G_t, w_s, w_t, contents, reg_weights, lso_kwargs=lso_kwargs, batch_size=batch_size)
    return [sweep_point(r, reg, contents, embed=embed, gram=gram) for r, reg in zip(runs, reg_weights)]


def choose_reg_weight(points: Sequence[SweepPoint]) -> SweepPoint:
    """The point with the largest mean identity restored minus mean style changed (ties: the larger λ_reg)."""
    assert len(points) >= 1
    return max(points, key=lambda p: (p.mean("identity_restored") - p.mean("style_changed"), p.reg_weight))


def plot_tradeoff(
    ax: Any,
    points: Sequence[SweepPoint],
    clusters: Sequence[int],
    marks: Mapping[str, float] | None = None,
) -> None:
    """Identity restored and style changed (mean ± clustered s.e. over the pairs, ``clusters[p]`` the
    content of pair p) against λ_reg on a matplotlib ``ax``; ``marks`` label λ_reg values (vertical lines).
    λ_reg runs on a symlog axis so that 0 (no L2) has a place."""
    from .verdict import clustered_difference

    assert len(points) >= 1 and all(len(p.identity_restored) == len(clusters) for p in points)
    lam = [p.reg_weight for p in points]
    for key, label, colour in (
        ("identity_restored", "identity restored (share of the mixed image's id distance)", "#1f77b4"),
        ("style_changed", "style changed (Gram to mixed / Gram content↔mixed)", "#d62728"),
    ):
        stats = [clustered_difference(getattr(p, key), clusters) for p in points]
        ax.errorbar(lam, [s.mean for s in stats], yerr=[s.sem for s in stats], marker="o", ms=3, capsize=2,
                    color=colour, label=label)  # fmt: skip
    for k, (name, value) in enumerate((marks or {}).items()):
        ax.axvline(value, color=("#555555", "#2ca02c", "#9467bd")[k % 3], ls="--", lw=1, label=f"{name}: {value:.2g}")
    positive = [x for x in lam if x > 0] + [v for v in (marks or {}).values() if v > 0]
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1e-6)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("λ_reg (symlog; 0 = no L2)", fontsize=8)
    ax.legend(fontsize=6)


def pair_measures(
    images: torch.Tensor,
    mixed: torch.Tensor,
    targets: torch.Tensor,
    wrong_targets: torch.Tensor,
    *,
    gram: GramStyleDistance,
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, list[float]]:
    """Per-pair measures of a method's ``images`` [P, 3, H, W] against the mixed images, the contents
    ``targets`` and other contents ``wrong_targets`` (all [P, 3, H, W]):

    * ``style_changed``: Gram(image, mixed) / Gram(content, mixed) (0: the mixed image's style; 1: as far as the content);
    * ``nearer_content``: (Gram(image, mixed) − Gram(image, content)) / Gram(content, mixed)
      (> 0: the image's style is nearer the content's than the mixed image's; −1 for the mixed image itself);
    * with ``embed``: ``id_before`` / ``id_after``, identity distance (squared distance of unit embeddings,
      0–4) content ↔ mixed / content ↔ image, ``id_gain`` = before − after, and ``wrong_gain``, the same
      gain measured against the wrong content (a gain that is not specific to the pair's content).
    """
    from ..retrieval import identity_distance

    assert images.shape == mixed.shape == targets.shape == wrong_targets.shape and images.ndim == 4, (
        images.shape,
        mixed.shape,
        targets.shape,
        wrong_targets.shape,
    )
    gap = gram(targets, mixed).cpu().clamp_min(1e-12)
    to_mixed, to_content = gram(images, mixed).cpu(), gram(images, targets).cpu()
    out = {"style_changed": (to_mixed / gap).tolist(), "nearer_content": ((to_mixed - to_content) / gap).tolist()}
    if embed is not None:
        img, mix, tgt, wrong = images.cpu(), mixed.cpu(), targets.cpu(), wrong_targets.cpu()
        before, after = identity_distance(embed, tgt, mix), identity_distance(embed, tgt, img)
        out |= {
            "id_before": before.tolist(),
            "id_after": after.tolist(),
            "id_gain": (before - after).tolist(),
            "wrong_gain": identity_gain(embed, wrong, mix, img).tolist(),
        }
    return out


def paper_reg_weight_at(resolution: int) -> float:
    """The paper's λ_reg (0.01 at 1024²) rescaled by pixel count to ``resolution``² (1.6e-4 at 128²): d_h
    sums over feature elements, so this keeps Eq. 8's balance only if the features have the real VGG16's scale."""
    from ..lso import resolution_reg_weight

    return resolution_reg_weight(resolution)


def random_directions(w_dim: int, k: int, seed: int) -> torch.Tensor:
    """``k`` random orthonormal directions [k, w_dim] (QR of a seeded Gaussian matrix): the control of a
    direction-constrained LSO (Eq. 9) that uses the same number of directions as SeFa, but no semantics."""
    assert 1 <= k <= w_dim, (k, w_dim)
    g = torch.randn([w_dim, k], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(g)
    out = q.t().contiguous().to(torch.float32)
    assert out.shape == (k, w_dim)
    return out


def plot_variants(
    ax: Any, measures: Mapping[str, Mapping[str, Sequence[float]]], clusters: Sequence[int], *, x: str, y: str
) -> None:
    """One point per variant at (mean ``x``, mean ``y``) over the pairs, with clustered s.e. bars both ways."""
    from .verdict import clustered_difference

    for k, (name, m) in enumerate(measures.items()):
        sx, sy = clustered_difference(m[x], clusters), clustered_difference(m[y], clusters)
        ax.errorbar(sx.mean, sy.mean, xerr=sx.sem, yerr=sy.sem, marker="os^vD<>ph*"[k % 10], ms=5, capsize=2,
                    ls="none", label=name)  # fmt: skip
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(0, color="black", lw=0.5)
    ax.legend(fontsize=6, loc="best")
