"""Fréchet distance through the nuclear norm (exactness vs sqrtm) and the VGG feature embedder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrinv_nb.fid import frechet_distance, frechet_distance_sqrtm, vgg_feature_embedder


@pytest.mark.parametrize("n_a,n_b,d", [(200, 150, 8), (30, 40, 64)])
def test_nuclear_norm_form_equals_sqrtm(n_a, n_b, d):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n_a, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n_b, d)) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(frechet_distance_sqrtm(a, b), rel=1e-5, abs=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_vgg_feature_embedder_random_trunk_shape(monkeypatch):
    import hrinv_nb.losses as losses

    real = losses.vgg16_trunk
    monkeypatch.setattr(losses, "vgg16_trunk", lambda layer, weights=None: real(layer, seed=0))
    embed = vgg_feature_embedder(None, layer=8)
    out = embed(torch.zeros(3, 3, 32, 32))
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    small = vgg_feature_embedder(None, layer=8, size=16)(torch.rand(2, 3, 32, 32))
    assert small.shape == (2, 128) and torch.isfinite(small).all()
