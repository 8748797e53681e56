"""The toy training loop: one step trains, fine-tuning freezes the mapping, noise maps reach G,
a time budget stops it, interruption loses nothing."""

from __future__ import annotations

import copy

import pytest
import torch

import hrinv_nb
from hrinv_nb.networks import noise_buffers
from hrinv_nb.toy.training import TrainConfig, augment, batch_noise, finetune_copy, synthesize_with_noise, train


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    G = hrinv_nb.Generator(
        16,
        0,
        16,
        16,
        3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 128, "channel_max": 16, "conv_clamp": 256},
    )
    D = hrinv_nb.Discriminator(
        0, 16, 3, channel_base=128, channel_max=16, conv_clamp=256, epilogue_kwargs={"mbstd_group_size": 2}
    )
    return G, D


def _paired_data(batch: int, gen: torch.Generator):
    """A target that depends on z (a colour) and on the last layer's noise map (a texture)."""
    z = torch.randn([batch, 16], generator=gen)
    fine = torch.randn([batch, 1, 16, 16], generator=gen)
    img = torch.tanh(z[:, :3, None, None]).expand(batch, 3, 16, 16) + 0.1 * fine
    return z, img, {"b16.conv1.noise_const": fine}


def test_one_training_step_changes_g_and_d(tmp_path):
    G, D = _nets()
    g0, d0 = copy.deepcopy(G.state_dict()), copy.deepcopy(D.state_dict())
    cfg = TrainConfig(steps=1, batch=4, r1_interval=1, augment_p=0.5, adv_weight=0.1, log_every=1)
    res = train(G, D, _paired_data, cfg, out_dir=tmp_path, progress=False)
    assert set(res.history[0]) >= {"g_adv", "g_recon", "d", "d_r1"}
    assert all(torch.isfinite(torch.tensor(v)) for v in res.history[0].values())
    assert any(not torch.equal(g0[k], v) for k, v in G.state_dict().items() if k.startswith("synthesis"))
    assert any(not torch.equal(d0[k], v) for k, v in D.state_dict().items())
    assert res.steps == 1
    nets = hrinv_nb.load_networks(tmp_path / "networks.safetensors")
    assert nets.G.num_ws == G.num_ws and nets.D is not None


def test_critic_off_leaves_d_unchanged():
    G, D = _nets()
    d0 = copy.deepcopy(D.state_dict())
    train(G, D, _paired_data, TrainConfig(steps=2, batch=4, train_d=False), progress=False)
    assert all(torch.equal(v, D.state_dict()[k]) for k, v in d0.items())


def test_one_finetuning_step_freezes_mapping():
    G_s, D_s = _nets()
    G_t, D_t = finetune_copy(G_s, D_s)
    res = train(G_t, D_t, _paired_data, TrainConfig(steps=1, batch=4, freeze_mapping=True), progress=False)
    for k, v in G_s.mapping.state_dict().items():
        assert torch.equal(v, G_t.mapping.state_dict()[k]), f"mapping changed: {k}"
        assert torch.equal(v, res.G_ema.mapping.state_dict()[k]), f"G_ema mapping changed: {k}"
    assert any(not torch.equal(v, G_t.synthesis.state_dict()[k]) for k, v in G_s.synthesis.state_dict().items())


def test_batch_noise_gives_each_sample_its_map_and_restores_the_buffers():
    G, _ = _nets()
    G.synthesis.b16.conv1.noise_strength.data.fill_(0.5)
    saved = {k: v.clone() for k, v in noise_buffers(G).items()}
    ws = G.mapping(torch.randn(2, 16), None).detach()
    maps = {k: torch.randn(2, 1, *v.shape) for k, v in saved.items()}
    both = synthesize_with_noise(G, ws, maps)
    swapped = synthesize_with_noise(G, ws.flip(0), {k: v.flip(0) for k, v in maps.items()})
    torch.testing.assert_close(both, swapped.flip(0))
    other = synthesize_with_noise(G, ws, {**maps, "b16.conv1.noise_const": -maps["b16.conv1.noise_const"]})
    assert (other - both).abs().max() > 1e-3  # the map is used
    for k, v in noise_buffers(G).items():
        assert torch.equal(v, saved[k])
    with pytest.raises(KeyError, match="unknown noise buffers"), batch_noise(G, {"b99.conv0.noise_const": maps[k]}):
        pass


def test_learns_the_noise_texture():
    """The regression target holds 0.1·n in the last layer: its noise strength grows from 0."""
    G, D = _nets()
    cfg = TrainConfig(steps=60, batch=8, lr_g=0.01, train_d=False, lr_rampdown=0.0)
    train(G, D, _paired_data, cfg, progress=False)
    assert abs(float(G.synthesis.b16.conv1.noise_strength.detach())) > 0.01


def test_time_budget_stops_early_and_still_saves(tmp_path):
    G, D = _nets()
    res = train(
        G, D, _paired_data, TrainConfig(steps=10_000, batch=2, time_budget_s=0.5), out_dir=tmp_path, progress=False
    )
    assert 0 < res.steps < 10_000
    assert (tmp_path / "networks.safetensors").exists() and (tmp_path / "state.pt").exists()


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(steps=3, batch=4, r1_interval=2, checkpoint_every=1, augment_p=0.3, log_every=1)
    G, D = _nets()
    full = train(G, D, _paired_data, cfg, out_dir=tmp_path / "a", progress=False)

    G, D = _nets()
    train(G, D, _paired_data, TrainConfig(**{**cfg.__dict__, "steps": 2}), out_dir=tmp_path / "b", progress=False)
    G, D = _nets()  # a fresh process would rebuild the networks from scratch
    resumed = train(G, D, _paired_data, cfg, out_dir=tmp_path / "b", progress=False)
    assert len(resumed.history) == 3 and resumed.steps == 3
    for k, v in full.G_ema.state_dict().items():
        torch.testing.assert_close(resumed.G_ema.state_dict()[k], v, rtol=0, atol=1e-6)


def test_augment_identity_at_p0_and_differentiable():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    assert augment(x, 0.0, g) is x
    y = augment(x, 1.0, g)
    assert y.shape == x.shape and not torch.allclose(x, y)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_critic_phase_trains_d_only():
    """recon_weight = adv_weight = 0: G (and G_ema) stay as they are, D learns."""
    G, D = _nets()
    g0, d0 = copy.deepcopy(G.state_dict()), copy.deepcopy(D.state_dict())
    res = train(G, D, _paired_data, TrainConfig(steps=2, batch=4, recon_weight=0.0, adv_weight=0.0), progress=False)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in g0.items())
    assert all(torch.equal(v, res.G_ema.state_dict()[k]) for k, v in g0.items())
    assert any(not torch.equal(v, D.state_dict()[k]) for k, v in d0.items())
