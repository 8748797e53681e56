"""The pooled paired-data function of the toy world's training (hrinv_nb.toy.world.pooled_data_fn)."""

from __future__ import annotations

import torch

import hrinv_nb
from hrinv_nb.networks import noise_buffers
from hrinv_nb.toy.world import N_FACTORS, pooled_data_fn, render_z, texture_noise_layers


def _G() -> hrinv_nb.Generator:
    torch.manual_seed(0)
    return hrinv_nb.Generator(
        N_FACTORS + 4,
        0,
        16,
        16,
        3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 128, "channel_max": 16, "conv_clamp": 256},
    )


def test_pooled_samples_are_renders_of_their_z_and_texture_maps():
    G = _G()
    fn = pooled_data_fn(G, "photo", pool_size=12, fresh_per_call=2, chunk=5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        z, real, noise = fn(4, gen)
        assert z.shape == (4, G.z_dim) and real.shape == (4, 3, 16, 16)
        assert set(noise) == set(noise_buffers(G))
        texture = {k: noise[f"{layer}.noise_const"] for k, layer in texture_noise_layers(16).items()}
        torch.testing.assert_close(render_z(z, "photo", size=(16, 16), noise=texture), real)


def test_pool_refreshes_and_other_noise_is_fresh():
    G = _G()
    fn = pooled_data_fn(G, "photo", pool_size=8, fresh_per_call=8, chunk=8)
    gen = torch.Generator().manual_seed(1)
    z1, _, n1 = fn(8, gen)
    z2, _, n2 = fn(8, gen)
    # every slot re-rendered: no z of the first pool can come back
    assert not any(torch.equal(a, b) for a in z1 for b in z2)
    assert not torch.equal(n1["b4.conv1.noise_const"], n2["b4.conv1.noise_const"])


def test_frozen_pool_draws_only_its_samples():
    G = _G()
    fn = pooled_data_fn(G, "cartoon", pool_size=3, fresh_per_call=0)
    gen = torch.Generator().manual_seed(2)
    seen = torch.cat([fn(4, gen)[0] for _ in range(5)])
    assert torch.unique(seen, dim=0).shape[0] <= 3
