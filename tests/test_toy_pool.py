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


def test_laplacian_l1_bands():
    from hrinv_nb.toy.training import laplacian_l1

    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, 32, 32], generator=gen)
    assert float(laplacian_l1(x, x)) == 0.0
    # a constant offset lives in the low-pass residual only: the loss is its size
    torch.testing.assert_close(laplacian_l1(x + 0.25, x), torch.tensor(0.25), atol=1e-6, rtol=0)
    # pixel-level noise sits mostly in the finest band, which counts in full (not diluted by the other bands)
    fine = 0.1 * torch.randn([2, 3, 32, 32], generator=gen)
    y = x.clone().requires_grad_(True)
    loss = laplacian_l1(y + fine, x)
    assert float(loss.detach()) > 0.5 * float(fine.abs().mean())
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_lap_only_training_moves_g():
    from hrinv_nb.toy.training import TrainConfig, train

    G = _G()
    D = hrinv_nb.Discriminator(
        0, 16, 3, channel_base=128, channel_max=16, conv_clamp=256, epilogue_kwargs={"mbstd_group_size": 2}
    )
    before = [p.detach().clone() for p in G.synthesis.parameters()]
    fn = pooled_data_fn(G, "photo", pool_size=8, fresh_per_call=2)
    cfg = TrainConfig(steps=3, batch=4, recon_weight=0.0, lap_weight=1.0, train_d=False, lr_rampdown=0.0)
    res = train(G, D, fn, cfg, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, G.synthesis.parameters()))
    assert res.steps == 3
