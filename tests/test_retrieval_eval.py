"""Batched evaluation helpers (notebooks 11, 12): batched projection as they call it, batched LSO, pair stylisation."""

from __future__ import annotations

import pytest
import torch

import hrinv_nb
from conftest import TINY
from hrinv_nb.batch_projection import project_batch
from hrinv_nb.blending import mix
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.studies.stylized_sets import pair_indices, stylize_pairs


@pytest.fixture(scope="module")
def gens():
    G_s = hrinv_nb.load_networks(TINY).G
    G_t = hrinv_nb.load_networks(TINY).G
    with torch.no_grad():
        for p in G_t.synthesis.parameters():
            p.mul_(1.1)
    return G_s, G_t


def _samples(G, n, seed):
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)), None)
        return w, G.synthesis(w, noise_mode="const")


def test_project_batch_is_independent_per_sample_and_fits(gens):
    G, _ = gens
    _, targets = _samples(G, 2, 0)
    targets = targets / 20
    other = targets.clone()
    other[1] = -other[1]
    kwargs = dict(loss=perceptual_loss("mse"), num_steps=6, progress=False, w_avg_samples=200, optimize_noise=False,
                  w_space="w+", chunk_size=16)  # how notebooks 11-13 call it
    a = project_batch(G, targets, **kwargs)
    b = project_batch(G, other, **kwargs)
    assert a.w.shape == (2, G.num_ws, G.w_dim) and a.images.shape == targets.shape and a.noise == {}
    torch.testing.assert_close(a.w[0], b.w[0], atol=1e-5, rtol=1e-5)  # sample 0 does not see sample 1's target
    assert not torch.allclose(a.w[1], b.w[1])
    assert a.history["mse"][-1] < a.history["mse"][0]
    chunked = project_batch(G, targets, **{**kwargs, "chunk_size": 1})
    assert chunked.w.shape == a.w.shape and torch.isfinite(chunked.w).all()


def test_lerp_lso_pairs_match_single_lso_and_touch_only_the_rows(gens):
    G_s, G_t = gens
    w_s, contents = _samples(G_s, 2, 1)
    w_t, _ = _samples(G_t, 1, 2)
    contents = contents / 20
    loss = perceptual_loss("mse")
    kwargs = {"num_steps": 5, "loss": loss, "seed": 3, "rows": (1, 2)}
    out = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", contents=contents, lso_kwargs=kwargs, batch_size=2,
                        progress=False)
    m = mix("lerp", G_s, G_t, w_s[:1], w_t[:1])
    ref = hrinv_nb.lso(m.G_m, m.w_m, contents[:1], progress=False, **kwargs)
    torch.testing.assert_close(out.w[:1], ref.w, atol=1e-4, rtol=1e-4)
    changed = (out.w - m.w_m).abs().amax(dim=2)[:1] > 0
    assert changed[:, 1:3].all() and not changed[:, [0] + list(range(3, G_s.num_ws))].any()


def test_stylize_pairs_methods(gens):
    G_s, G_t = gens
    w_s, contents = _samples(G_s, 2, 2)
    w_t, _ = _samples(G_t, 3, 3)
    ci, si = pair_indices(2, 3)
    assert ci.tolist() == [0, 0, 0, 1, 1, 1] and si.tolist() == [0, 1, 2, 0, 1, 2]
    swap = stylize_pairs(G_s, G_t, w_s, w_t, "layer_swap", progress=False)
    assert swap.images.shape == (6, 3, 64, 64) and torch.allclose(swap.images[0], swap.images[2])
    lerp = stylize_pairs(G_s, G_t, w_s, w_t, "lerp", batch_size=4, progress=False)
    single = mix("lerp", G_s, G_t, w_s[1:2], w_t[2:3])
    with torch.no_grad():
        ref = single.G_m.synthesis(single.w_m, noise_mode="const")
    torch.testing.assert_close(lerp.images[5:6], ref, atol=1e-4, rtol=1e-5)
    pairs = (torch.tensor([1]), torch.tensor([2]))
    out = stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", contents=contents / 20, pairs=pairs, progress=False,
                        lso_kwargs={"num_steps": 2, "loss": perceptual_loss("mse")})
    assert out.images.shape == (1, 3, 64, 64) and out.labels.tolist() == [1]
    with pytest.raises(ValueError):
        stylize_pairs(G_s, G_t, w_s, w_t, "lerp_lso", progress=False)
