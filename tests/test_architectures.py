"""The non-default architectures run, keep NVIDIA's parameter names and respect their wiring."""

from __future__ import annotations

import pytest
import torch

import hrinv_nb


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_generator_architectures(architecture):
    torch.manual_seed(0)
    G = hrinv_nb.Generator(
        32,
        0,
        32,
        32,
        3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 512, "channel_max": 32, "architecture": architecture, "conv_clamp": 256},
    ).eval()
    names = set(G.state_dict())
    assert ("synthesis.b16.torgb.weight" in names) == (architecture == "skip")
    assert ("synthesis.b16.skip.weight" in names) == (architecture == "resnet")
    assert G.num_ws == 2 * 4  # conv layers 1 + 2*3, plus the last torgb
    with torch.no_grad():
        img = G(torch.randn(2, 32), None, noise_mode="const")
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_discriminator_architectures(architecture):
    torch.manual_seed(0)
    D = hrinv_nb.Discriminator(0, 32, 3, architecture=architecture, channel_base=512, channel_max=32).eval()
    names = set(D.state_dict())
    assert ("b16.fromrgb.weight" in names) == (architecture == "skip")
    assert ("b16.skip.weight" in names) == (architecture == "resnet")
    assert ("b4.fromrgb.weight" in names) == (architecture == "skip")
    img = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = D(img, None)
        feats = hrinv_nb.discriminator_features(D, img)
    assert logits.shape == (4, 1) and sorted(feats) == [8, 16, 32]
    assert feats[32].shape == (4, 32, 16, 16)


def test_minibatch_std_group_layout():
    """Group g holds samples g, g+n, g+2n, ... (NVIDIA's reshape(G, -1, ...))."""
    from hrinv_nb.networks import MinibatchStdLayer

    layer = MinibatchStdLayer(group_size=2, num_channels=1)
    x = torch.zeros(4, 1, 1, 1)
    x[0] = 1.0  # groups are {0, 2} and {1, 3}: only samples 0 and 2 see a non-zero std
    out = layer(x)[:, 1].flatten()
    assert out[0] > 0.4 and out[2] > 0.4 and out[1] < 1e-3 and out[3] < 1e-3


def test_equalised_lr_gain_applied_at_runtime():
    from hrinv_nb.networks import FullyConnectedLayer

    fc = FullyConnectedLayer(16, 4, lr_multiplier=0.01, bias_init=1.0)
    x = torch.randn(3, 16)
    expected = x @ (fc.weight * 0.01 / 4).t() + fc.bias * 0.01
    torch.testing.assert_close(fc(x), expected)


def test_truncation_psi_zero_gives_w_avg():
    G = hrinv_nb.Generator(
        8, 0, 8, 8, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 64, "channel_max": 8}
    )
    G.eval()
    G.mapping.w_avg.copy_(torch.arange(8.0))
    ws = G.mapping(torch.randn(2, 8), None, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.equal(ws[:, :2], torch.arange(8.0).expand(2, 2, 8))
    assert not torch.equal(ws[:, 2:], torch.arange(8.0).expand(2, ws.shape[1] - 2, 8))


def test_w_avg_tracks_in_training_mode():
    G = hrinv_nb.Generator(
        8, 0, 8, 8, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs={"channel_base": 64, "channel_max": 8}
    )
    G.train()
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, 8), None)
    assert not torch.equal(before, G.mapping.w_avg)
    G.eval()
    after = G.mapping.w_avg.clone()
    G.mapping(torch.randn(4, 8), None)
    assert torch.equal(after, G.mapping.w_avg)


def test_fp16_is_opt_in():
    from hrinv_nb.networks import enable_fp16

    G = hrinv_nb.Generator(
        8,
        0,
        8,
        16,
        3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 128, "channel_max": 8, "num_fp16_res": 2},
    )
    blocks = [G.synthesis.b8, G.synthesis.b16]
    assert all(b.use_fp16 and not b.allow_fp16 for b in blocks), "fp16 blocks exist but are off by default"
    enable_fp16(G)
    assert all(b.allow_fp16 for b in blocks)
    with torch.no_grad():  # on a CPU the blocks still compute in float32
        assert G(torch.randn(1, 8), None, noise_mode="const").dtype == torch.float32
