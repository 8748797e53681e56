"""Batched projection as the evaluation notebooks call it (w only, W+, chunks of independent problems).

Stylisation of content × style pairs and batched LSO are tested in tests/test_stylize.py.
"""

from __future__ import annotations

import torch

from hrinv_nb.losses import perceptual_loss
from hrinv_nb.projector import project_batch


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
    kwargs = dict(
        loss=perceptual_loss("mse"),
        num_steps=6,
        progress=False,
        w_avg_samples=200,
        optimize_noise=False,
        w_space="w+",
        chunk_size=16,
    )  # how notebooks 11-13 call it
    a = project_batch(G, targets, **kwargs)
    b = project_batch(G, other, **kwargs)
    assert a.w.shape == (2, G.num_ws, G.w_dim) and a.images.shape == targets.shape and a.noise == {}
    torch.testing.assert_close(a.w[0], b.w[0], atol=1e-5, rtol=1e-5)  # sample 0 does not see sample 1's target
    assert not torch.allclose(a.w[1], b.w[1])
    assert a.history["mse"][-1] < a.history["mse"][0]
    chunked = project_batch(G, targets, **{**kwargs, "chunk_size": 1})
    assert chunked.w.shape == a.w.shape and torch.isfinite(chunked.w).all()
