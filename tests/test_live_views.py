"""The live views of notebooks 07 and 09: the γ mix (one forward pass) and one pair's LSO, on the toy world."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from hrinv_nb.losses import perceptual_loss
from hrinv_nb.studies import live

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def world():
    from hrinv_nb.checkpoints import load_networks

    G_s = load_networks(DATA / "G_s.safetensors").G.eval()
    G_t = load_networks(DATA / "G_t_cartoon.safetensors").G.eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w = G_s.mapping(torch.randn([2, G_s.z_dim], generator=g), None)
    return G_s, G_t, w[:1], w[1:]


@pytest.fixture(scope="module")
def lso_problem(world):
    """G_s, the paper-γ lerp mix of the two codes, the content G_s(w_s) and d_h: one LSO problem."""
    from hrinv_nb.blending import mix

    G_s, G_t, w_s, w_t = world
    m = mix("lerp", G_s, G_t, w_s, w_t)
    with torch.no_grad():
        content = G_s.synthesis(w_s, noise_mode="const").clamp(-1, 1)
    return G_s, m, content, perceptual_loss("d_h", weights=DATA / "vgg16_toy.safetensors")


def test_gamma_ends_are_the_source_and_the_target_images(world):
    G_s, G_t, w_s, w_t = world
    with torch.no_grad():
        src = G_s.synthesis(w_s, noise_mode="const")
        sty = G_t.synthesis(w_t, noise_mode="const")
    assert torch.allclose(live.gamma_mix(G_s, G_t, w_s, w_t, 0.0, 0.0), src, atol=1e-5)
    assert torch.allclose(live.gamma_mix(G_s, G_t, w_s, w_t, 1.0, 1.0), sty, atol=1e-5)
    half = live.gamma_mix(G_s, G_t, w_s, w_t, 0.2, 0.7)
    assert (half - src).abs().mean() > 0.01 and (half - sty).abs().mean() > 0.01, "the paper's γ is a real mix"
    fig = live.gamma_view(G_s, G_t, w_s, w_t, src, 0.2, 0.7)
    assert isinstance(fig, plt.Figure) and "0.20 / 0.70" in fig.axes[3].get_title()
    assert "the paper's" in fig._suptitle.get_text()
    plt.close(fig)
    fig = live.gamma_view(G_s, G_t, w_s, w_t, src, 0.5, 0.5)
    assert "paper: 0.2 / 0.7" in fig._suptitle.get_text()
    plt.close(fig)


def test_lso_pair_moves_far_less_under_a_huge_regulariser(lso_problem):
    from hrinv_nb.studies.cross_domain import GramStyleDistance

    G_s, m, content, loss = lso_problem
    gram = GramStyleDistance(DATA / "vgg16_toy.safetensors")
    kw = dict(rows=range(5), num_steps=10, loss=loss, gram=gram)
    free = live.lso_pair(m.G_m, m.w_m, content, reg_weight=0.0, **kw)
    mid = live.lso_pair(m.G_m, m.w_m, content, reg_weight=1e-5, **kw)
    pinned = live.lso_pair(m.G_m, m.w_m, content, reg_weight=1e6, **kw)
    # λ_reg pulls the offset towards 0: the larger, the smaller the move (Adam keeps a step-sized jitter)
    assert free.offset_norm > mid.offset_norm > pinned.offset_norm, (
        free.offset_norm,
        mid.offset_norm,
        pinned.offset_norm,
    )
    assert free.offset_norm > 3 * pinned.offset_norm, (free.offset_norm, pinned.offset_norm)
    assert (free.result - free.mixed).abs().mean() > (pinned.result - pinned.mixed).abs().mean()
    assert free.style_changed is not None and pinned.style_changed is not None
    assert free.style_changed > pinned.style_changed >= 0.0, (free.style_changed, pinned.style_changed)
    # only the selected rows move; the mixed image is G_m(w_m) whatever λ_reg
    assert torch.equal(free.w[:, 5:], m.w_m[:, 5:]) and not torch.equal(free.w[:, :5], m.w_m[:, :5])
    assert torch.equal(free.mixed, pinned.mixed)
    fig = live.lso_view(content, free, label="rows 0–4", reg_weight=0.0)
    assert isinstance(fig, plt.Figure) and "λ_reg 0" in fig._suptitle.get_text()
    assert "style changed" in fig._suptitle.get_text()
    plt.close(fig)


def test_lso_pair_late_rows_leave_the_early_rows(lso_problem):
    G_s, m, content, loss = lso_problem
    late = range(5, G_s.num_ws)
    view = live.lso_pair(m.G_m, m.w_m, content, rows=late, reg_weight=0.0, num_steps=3, loss=loss)
    assert torch.equal(view.w[:, :5], m.w_m[:, :5]) and view.offset_norm > 0
    assert view.id_before is None and view.style_changed is None  # no embedder, no Gram distance given


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


@pytest.mark.parametrize("dpi", [72, 100, 150])
def test_image_grid_titles_never_reach_into_another_frame(dpi):
    """Issue 17: grid titles were struck through by the frame above. Every title, label and the figure
    title must lie inside the figure and clear of every image frame (its own included) at any dpi."""
    from hrinv_nb.notebook import plots

    g = torch.Generator().manual_seed(0)
    ims = [torch.rand(3, 32, 32, generator=g) * 2 - 1 for _ in range(12)]
    grids = [
        plots.image_grid(
            [ims[0:4], ims[4:8], ims[8:12]],
            cell_titles=[["one"] * 4, ["two\nlines"] * 4, ["three\nlines\nhere", "a much longer title than the cell is wide", "", "x"]],
            scale=1.0,
            title="a figure title long enough to need wrapping at this width, so it takes two lines or more",
        ),
        plots.image_grid([ims[0:3], [None, ims[3], ims[4]]], col_labels=["a", "b", "c"], row_labels=["first", "second row"], scale=1.2),
    ]  # fmt: skip
    for fig in grids:
        fig.set_dpi(dpi)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        frame = fig.bbox
        boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.axison]
        texts = [ax.title for ax in fig.axes] + [t for t in fig.texts if t is not fig._suptitle] + [fig._suptitle]
        texts = [t for t in texts if t is not None and t.get_text()]
        assert len(texts) >= 5
        labels = [t.get_text() for t in fig.texts if t is not fig._suptitle]
        assert labels in ([], ["first", "second row"]), labels  # a row label stays when the row's first cell is empty
        for t in texts:
            box = t.get_window_extent(renderer)
            assert frame.x0 - 0.5 <= box.x0 and box.x1 <= frame.x1 + 0.5, (t.get_text(), box, frame)
            assert frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5, (t.get_text(), box, frame)
            hits = [b for b in boxes if _overlaps(box, b)]
            assert not hits, (t.get_text(), box, hits)
        others = [t.get_window_extent(renderer) for t in texts]
        for i, a in enumerate(others):
            assert not any(_overlaps(a, b) for b in others[i + 1 :]), texts[i].get_text()
        plt.close(fig)
