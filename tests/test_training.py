"""The training loop: one step trains, fine-tuning freezes the mapping, interruption loses nothing."""

from __future__ import annotations

import copy

import torch

import hrinv_nb
from hrinv_nb.toy.training import TrainConfig, augment, finetune_copy, train


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
    z = torch.randn([batch, 16], generator=gen)
    # a smooth image that depends on z: a per-sample colour
    img = torch.tanh(z[:, :3, None, None]).expand(batch, 3, 16, 16).contiguous()
    return z, img


def test_one_training_step_changes_g_and_d(tmp_path):
    G, D = _nets()
    g0, d0 = copy.deepcopy(G.state_dict()), copy.deepcopy(D.state_dict())
    cfg = TrainConfig(steps=1, batch=4, recon_weight=1.0, r1_interval=1, augment_p=0.5, checkpoint_every=1)
    res = train(G, D, _paired_data, cfg, out_dir=tmp_path, progress=False)
    assert set(res.history[0]) >= {"g_adv", "g_recon", "d", "d_r1"}
    assert all(torch.isfinite(torch.tensor(v)) for v in res.history[0].values())
    assert any(not torch.equal(g0[k], v) for k, v in G.state_dict().items() if k.startswith("synthesis"))
    assert any(not torch.equal(d0[k], v) for k, v in D.state_dict().items())
    nets = hrinv_nb.load_networks(tmp_path / "networks.safetensors")
    assert nets.G.num_ws == G.num_ws and nets.D is not None


def test_one_finetuning_step_freezes_mapping():
    G_s, D_s = _nets()
    G_t, D_t = finetune_copy(G_s, D_s)
    cfg = TrainConfig(steps=1, batch=4, recon_weight=1.0, freeze_mapping=True)
    res = train(G_t, D_t, _paired_data, cfg, progress=False)
    for k, v in G_s.mapping.state_dict().items():
        assert torch.equal(v, G_t.mapping.state_dict()[k]), f"mapping changed: {k}"
        assert torch.equal(v, res.G_ema.mapping.state_dict()[k]), f"G_ema mapping changed: {k}"
    assert any(not torch.equal(v, G_t.synthesis.state_dict()[k]) for k, v in G_s.synthesis.state_dict().items())


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(steps=3, batch=4, recon_weight=1.0, r1_interval=2, checkpoint_every=1, augment_p=0.3)
    G, D = _nets()
    full = train(G, D, _paired_data, cfg, out_dir=tmp_path / "a", progress=False)

    G, D = _nets()
    train(G, D, _paired_data, TrainConfig(**{**cfg.__dict__, "steps": 2}), out_dir=tmp_path / "b", progress=False)
    G, D = _nets()  # a fresh process would rebuild the networks from scratch
    resumed = train(G, D, _paired_data, cfg, out_dir=tmp_path / "b", progress=False)
    assert len(resumed.history) == 3
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
