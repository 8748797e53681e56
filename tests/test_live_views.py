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
    plt.close(fig)


def test_lso_pair_moves_far_less_under_a_huge_regulariser(world):
    from hrinv_nb.blending import mix

    G_s, G_t, w_s, w_t = world
    m = mix("lerp", G_s, G_t, w_s, w_t)
    with torch.no_grad():
        content = G_s.synthesis(w_s, noise_mode="const").clamp(-1, 1)
    loss = perceptual_loss("d_h", weights=DATA / "vgg16_toy.safetensors")
    free = live.lso_pair(m.G_m, m.w_m, content, rows=range(5), reg_weight=0.0, num_steps=10, loss=loss)
    pinned = live.lso_pair(m.G_m, m.w_m, content, rows=range(5), reg_weight=1e6, num_steps=10, loss=loss)
    assert free.offset_norm > 3 * pinned.offset_norm, (free.offset_norm, pinned.offset_norm)
    assert (free.result - free.mixed).abs().mean() > (pinned.result - pinned.mixed).abs().mean()
    fig = live.lso_view(content, free, label="rows 0–4", reg_weight=0.0)
    assert isinstance(fig, plt.Figure) and "λ_reg 0" in fig._suptitle.get_text()
    plt.close(fig)
