"""Views for the notebooks' live controls: each recomputes one small result on demand and returns a Figure.

A teacher moves a control in a live kernel and the view under it is recomputed (see
:func:`hrinv_nb.notebook.plots.live_controls`), so each function here does one pair's worth of work:
one forward pass of a blended generator (:func:`gamma_view`, the degree of mixing of Eq. 6–7), or one
LSO run on one pair (:func:`lso_view`, λ_reg and the optimised rows of Eq. 8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..blending import block_resolutions, mix, paper_gamma
from ..lso import lso
from ..networks import Generator
from ..notebook import plots


@torch.no_grad()
def gamma_mix(
    G_s: Generator, G_t: Generator, w_s: torch.Tensor, w_t: torch.Tensor, gamma_low: float, gamma_high: float
) -> torch.Tensor:
    """G_m(w_m) for one pair: G and w lerped with γ = ``gamma_low`` on the low blocks, ``gamma_high`` above
    (the split of the paper's schedule, :func:`hrinv_nb.blending.paper_gamma`). ``w_s``, ``w_t``: [1, num_ws, w_dim]."""
    assert w_s.shape == w_t.shape and w_s.ndim == 3 and w_s.shape[0] == 1, (w_s.shape, w_t.shape)
    assert 0.0 <= gamma_low <= 1.0 and 0.0 <= gamma_high <= 1.0, (gamma_low, gamma_high)
    m = mix("lerp", G_s, G_t, w_s, w_t, gamma=paper_gamma(G_s, gamma_low, gamma_high))
    img = m.G_m.synthesis(m.w_m, noise_mode="const")
    assert img.shape == (1, 3, G_s.img_resolution, G_s.img_resolution)
    return img


def gamma_view(
    G_s: Generator,
    G_t: Generator,
    w_s: torch.Tensor,
    w_t: torch.Tensor,
    content: torch.Tensor,
    gamma_low: float,
    gamma_high: float,
):
    """Content | G_s(w_s) | G_t(w_t) | the lerp mix at (``gamma_low``, ``gamma_high``), as a Figure.

    The title names the blocks each γ applies to and the paper's values (0.2 / 0.7)."""
    assert content.ndim == 4 and content.shape[0] == 1, content.shape
    with torch.no_grad():
        src = G_s.synthesis(w_s, noise_mode="const")
        sty = G_t.synthesis(w_t, noise_mode="const")
    mixed = gamma_mix(G_s, G_t, w_s, w_t, gamma_low, gamma_high)
    sched = paper_gamma(G_s, 0.0, 1.0)
    low = [r for r in block_resolutions(G_s) if sched[r] == 0.0]
    paper = abs(gamma_low - 0.2) < 1e-6 and abs(gamma_high - 0.7) < 1e-6
    return plots.image_grid(
        [[content[0], src[0], sty[0], mixed[0]]],
        col_labels=["content", "G_s(w_s): γ = 0", "G_t(w_t): γ = 1", f"lerp: γ {gamma_low:.2f} / {gamma_high:.2f}"],
        scale=2.0,
        title=f"γ_low {gamma_low:.2f} on b{low[0]}–b{low[-1]}, γ_high {gamma_high:.2f} above"
        + (" = the paper's" if paper else " (paper: 0.2 / 0.7)"),
    )


@dataclass
class LSOView:
    """One pair's LSO at one setting: the images and what it changed."""

    mixed: torch.Tensor  # [1, 3, H, W]
    result: torch.Tensor  # [1, 3, H, W]
    w: torch.Tensor  # [1, num_ws, w_dim], the code after LSO (rows outside the selection are w_m's)
    offset_norm: float  # ‖w − w_m‖ over the optimised rows
    id_before: float | None  # identity distance content ↔ mixed (None without an embedder)
    id_after: float | None  # content ↔ result
    style_changed: float | None  # Gram(result, mixed) / Gram(content, mixed) (None without a Gram distance)


def lso_pair(
    G_m: Generator,
    w_m: torch.Tensor,
    content: torch.Tensor,
    *,
    rows: Sequence[int],
    reg_weight: float,
    num_steps: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    seed: int = 0,
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    gram: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> LSOView:
    """LSO (:func:`hrinv_nb.lso.lso`) of one mixed code ``w_m`` [1, num_ws, w_dim] towards ``content`` [1, 3, H, W].

    With ``embed``, the identity distance to the content before and after; with ``gram`` (a
    :class:`~hrinv_nb.studies.cross_domain.GramStyleDistance`), the style changed, as notebook 09 measures it
    (:func:`hrinv_nb.studies.lso_calibration.pair_measures`)."""
    from ..retrieval import identity_distance

    assert w_m.ndim == 3 and w_m.shape[0] == 1 and content.shape[0] == 1, (w_m.shape, content.shape)
    res = lso(G_m, w_m, content, rows=tuple(rows), num_steps=num_steps, reg_weight=reg_weight, loss=loss,
              seed=seed, progress=False)  # fmt: skip
    mixed, out = res.mixed_image, res.image
    ids: tuple[float | None, float | None] = (None, None)
    if embed is not None:
        ids = (
            float(identity_distance(embed, content.cpu(), mixed.cpu())[0]),
            float(identity_distance(embed, content.cpu(), out.cpu())[0]),
        )
    style = None
    if gram is not None:
        from .cross_domain import style_gap_share

        style = float(style_gap_share(gram, out, mixed, content)[0])
    norm = float((res.w - w_m).flatten(1).norm(dim=1)[0])
    assert res.w.shape == w_m.shape and out.shape == content.shape, (res.w.shape, out.shape)
    return LSOView(mixed=mixed, result=out, w=res.w, offset_norm=norm, id_before=ids[0], id_after=ids[1],
                   style_changed=style)  # fmt: skip


def lso_view(content: torch.Tensor, view: LSOView, *, label: str, reg_weight: float):
    """Content | mixed | after LSO | |after − mixed| ×8 for one :class:`LSOView`, as a Figure.

    The title: λ_reg, the rows and the offset; then what LSO changed (identity distance to the content
    before → after, style changed) where the view has them, with their scales."""
    lines = [f"λ_reg {reg_weight:.2g}, {label}: ‖w − w_m‖ = {view.offset_norm:.2f}"]
    measured, scales = [], []
    if view.id_before is not None and view.id_after is not None:
        measured.append(f"identity distance to the content {view.id_before:.3f} → {view.id_after:.3f}")
        scales.append("identity distance: 0 = same face, 4 = opposite")
    if view.style_changed is not None:
        measured.append(f"style changed {view.style_changed:.3f}")
        scales.append("style changed: 0 = the mix's style, 1 = as far as the content's")
    if measured:
        lines += ["; ".join(measured), f"({'; '.join(scales)})"]
    return plots.image_grid(
        [[content[0], view.mixed[0], view.result[0], plots.residual_image(view.result, view.mixed, gain=8.0)[0]]],
        col_labels=["content", "mixed (lerp)", f"LSO: {label}", "|LSO − mixed| ×8"],
        scale=2.0,
        title="\n".join(lines),
    )
