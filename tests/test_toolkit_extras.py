"""Noise style transfer, non-square inversion, ArcFace loading, Fréchet distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrinv_nb.fid import frechet_distance, inception_fid
from hrinv_nb.identity import IRSE50, arcface_embedder, load_arcface
from hrinv_nb.inr import attach_inr_head
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.style_transfer import invert_nonsquare, noise_style_transfer


def test_noise_style_transfer_keeps_w_bit_identical(gens):
    G, _ = gens
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        style = G.synthesis(G.mapping(torch.randn(1, 128, generator=gen), None), noise_mode="const") / 20
        content = G.synthesis(G.mapping(torch.randn(1, 128, generator=gen), None), noise_mode="const") / 20
    res = noise_style_transfer(
        G, style, content, loss=perceptual_loss("mse"), num_steps=4, progress=False, w_avg_samples=200
    )
    assert torch.equal(res.w, res.style.w)
    assert res.noise and res.image.shape == (1, 3, 64, 64)
    assert res.content.history["mse"][-1] <= res.content.history["mse"][0] + 1e-6


def test_nonsquare_inversion_runs_at_full_size(gens):
    G = attach_inr_head(gens[0])
    target = torch.rand(1, 3, 40, 96) * 2 - 1
    res = invert_nonsquare(G, target, loss=perceptual_loss("mse"), num_steps=3, progress=False, w_avg_samples=100)
    assert res.image.shape == (1, 3, 40, 96)
    with pytest.raises(TypeError):
        invert_nonsquare(gens[0], target, loss="mse", num_steps=1)


def test_arcface_architecture_round_trip(tmp_path, arcface_weights):
    torch.manual_seed(0)
    model = IRSE50()
    keys = set(model.state_dict())
    assert {
        "input_layer.0.weight",
        "body.3.shortcut_layer.0.weight",
        "body.23.res_layer.5.fc2.weight",
        "output_layer.3.weight",
        "output_layer.4.running_var",
    } <= keys
    assert len(model.body) == 24
    assert keys == set(load_arcface(arcface_weights).state_dict())
    embed = arcface_embedder(load_arcface(arcface_weights))
    e = embed(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match="model_ir_se50.pth"):
        load_arcface(tmp_path / "missing.pth")


def test_frechet_distance_known_answers():
    rng = np.random.RandomState(0)
    a = rng.randn(4000, 4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = a * 2.0  # same mean; Tr(Σ + 4Σ − 2·2Σ) = Tr(Σ) ≈ 4
    assert frechet_distance(a, scaled) == pytest.approx(4.0, rel=0.05)


def test_inception_fid_needs_local_weights(tmp_path):
    with pytest.raises((ImportError, FileNotFoundError)):
        inception_fid(tmp_path, tmp_path, weights=tmp_path / "nope.pth")
