"""Style-INR-GAN head: coordinates, arbitrary shapes, checkpoint round trip, head training."""

from __future__ import annotations

import torch
from conftest import TINY

import hrinv_nb
from hrinv_nb.blending import blend_generators
from hrinv_nb.inr import INRSynthesisNetwork, attach_inr_head, pixel_centres, train_inr_head, with_shape


def test_pixel_centres():
    torch.testing.assert_close(pixel_centres(4), torch.tensor([-0.75, -0.25, 0.25, 0.75]))


def test_arbitrary_shapes_and_inert_last_row(tmp_path):
    G = attach_inr_head(hrinv_nb.load_networks(TINY).G)
    ws = G.mapping(torch.randn(2, 128, generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        for shape in [(64, 64), (32, 96), (80, 40)]:
            out = G.synthesis(ws, noise_mode="const", shape=shape)
            assert out.shape == (2, 3, *shape) and torch.isfinite(out).all()
        a = G.synthesis(ws, noise_mode="const")
        ws2 = ws.clone()
        ws2[:, -1] += 5.0  # feeds only the last torgb, which the INR output ignores
        b = G.synthesis(ws2, noise_mode="const")
        assert torch.equal(a, b)
    assert with_shape(G, (16, 48)).synthesis(ws, noise_mode="const").shape == (2, 3, 16, 48)
    out = hrinv_nb.save_networks(tmp_path / "inr.safetensors", G=G)
    again = hrinv_nb.load_networks(out).G
    assert isinstance(again.synthesis, INRSynthesisNetwork)
    with torch.no_grad():
        assert torch.equal(again.synthesis(ws, noise_mode="const"), a)


def test_head_training_reduces_loss_and_blending_keeps_head():
    G = attach_inr_head(hrinv_nb.load_networks(TINY).G)
    frozen = {k: v.clone() for k, v in G.state_dict().items() if "inr_net" not in k}
    losses = train_inr_head(G, steps=40, batch=2, lr=5e-3, sizes=((64, 64),), progress=False)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in frozen.items()), "blocks must stay frozen"
    G_t = attach_inr_head(hrinv_nb.load_networks(TINY).G, seed=5)
    G_m = blend_generators(G, G_t, 0.5)
    for k, v in G.synthesis.inr_net.state_dict().items():
        assert torch.equal(G_m.synthesis.inr_net.state_dict()[k], v), "the INR head is never blended"
