"""The projector: schedules, noise maps, npz files, determinism and recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrinv_nb import metrics
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.networks import Generator
from hrinv_nb.projector import (
    ProjectionResult,
    generator_noise_buffers,
    latent_noise_sigma,
    learning_rate,
    load_projection,
    noise_regularization,
    normalize_noise_,
    project,
    save_projection,
    w_statistics,
)

TINY_KWARGS = dict(
    z_dim=128,
    c_dim=0,
    w_dim=128,
    img_resolution=64,
    img_channels=3,
    mapping_kwargs={"num_layers": 8},
    synthesis_kwargs={"channel_base": 4096, "channel_max": 128, "num_fp16_res": 0, "conv_clamp": 256},
)
TORGB_SCALE = 0.04  # brings a default-initialised G's samples (std ≈ 3.7 unscaled) inside the image range [-1, 1]
NOISE_STRENGTH = 0.3  # NVIDIA initialises noise_strength to 0, which makes the noise maps irrelevant
FAST_VGG_LAYERS = (2, 7, 14)  # the random-VGG loss on its first three λ layers: same loss, a third of the cost


def _tiny_generator(noise_strength: float) -> Generator:
    """The tiny config, default-initialised from seed 0, with ToRGB scaled down and a given noise strength."""
    torch.manual_seed(0)
    G = Generator(**TINY_KWARGS)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if "torgb.weight" in name:
                param.mul_(TORGB_SCALE)
            if name.endswith("noise_strength"):
                param.fill_(noise_strength)
    return G.eval()


def _own_sample(G: Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_true [1, num_ws, w_dim], target = G(w_true) with G's own constant noise)."""
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w_true = G.mapping(z, None)
        target = G.synthesis(w_true, noise_mode="const")
    return w_true, target


@pytest.fixture(scope="module")
def tiny_G() -> Generator:
    return _tiny_generator(noise_strength=0.0)


@pytest.fixture(scope="module")
def noisy_G() -> Generator:
    return _tiny_generator(noise_strength=NOISE_STRENGTH)


@pytest.fixture(scope="module")
def own_sample(tiny_G) -> tuple[torch.Tensor, torch.Tensor]:
    return _own_sample(tiny_G)


@pytest.fixture(scope="module")
def noisy_sample(noisy_G) -> tuple[torch.Tensor, torch.Tensor]:
    return _own_sample(noisy_G)


# ---------------------------------------------------------------------------------------------
# Schedules


def test_learning_rate_schedule():
    assert learning_rate(0.0) == 0.0
    assert learning_rate(0.025) == pytest.approx(0.05)  # halfway through the 5 % ramp-up
    for t in np.linspace(0.05, 0.75, 15):
        assert learning_rate(float(t)) == pytest.approx(0.1)
    assert learning_rate(0.875) == pytest.approx(0.05)  # the cosine's midpoint
    assert learning_rate(1 - 1 / 1000) < 1e-5  # ≈ 0.1·(π·0.004)²/4
    tail = [learning_rate(float(t)) for t in np.linspace(0.75, 0.999, 50)]
    assert all(a > b for a, b in zip(tail, tail[1:]))
    assert learning_rate(0.9, base_lr=0.5) == pytest.approx(5 * learning_rate(0.9))
    t = 0.8
    assert learning_rate(t) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * (1 - t) / 0.25)))


def test_latent_noise_decays_quadratically_to_zero_at_three_quarters():
    assert latent_noise_sigma(0.0, 2.0) == pytest.approx(0.1)
    assert latent_noise_sigma(0.375, 2.0) == pytest.approx(0.1 * 0.25)
    assert latent_noise_sigma(0.75, 2.0) == 0.0
    assert latent_noise_sigma(0.9, 2.0) == 0.0
    assert latent_noise_sigma(0.5, 1.0, factor=0.2, ramp=1.0) == pytest.approx(0.2 * 0.25)


# ---------------------------------------------------------------------------------------------
# Noise maps


def test_noise_normalisation_gives_zero_mean_unit_rms():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(8, 8, generator=generator) * 5 + 2, torch.randn(16, 16, generator=generator) * 0.1 - 1]
    normalize_noise_(maps)
    for buf in maps:
        assert abs(buf.mean().item()) < 1e-6
        assert buf.square().mean().item() == pytest.approx(1.0, abs=1e-5)


def test_noise_regularization_penalises_correlation():
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(32, 32, generator=generator)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4, generator=generator), size=32, mode="bilinear")[
        0, 0
    ]
    normalize_noise_([white, smooth])
    assert noise_regularization([smooth]) > 100 * noise_regularization([white])
    n = torch.randn(8, 8, generator=generator)
    expected = (n * n.roll(1, 1)).mean() ** 2 + (n * n.roll(1, 0)).mean() ** 2  # a single scale at 8²
    torch.testing.assert_close(noise_regularization([n]), expected)


# ---------------------------------------------------------------------------------------------
# Files


def test_npz_round_trip_with_the_authors_keys(tmp_path):
    w = torch.randn(1, 10, 128)
    noise = {"b4.conv1.noise_const": torch.randn(4, 4), "b8.conv0.noise_const": torch.randn(8, 8)}
    path = save_projection(tmp_path / "x_wn.npz", w, noise)
    with np.load(path) as data:
        assert data["w"].shape == (1, 10, 128)
        assert sorted(data.files) == ["noise_bufs/b4.conv1.noise_const", "noise_bufs/b8.conv0.noise_const", "w"]
    w2, noise2 = load_projection(path)
    torch.testing.assert_close(w2, w, rtol=0, atol=0)
    assert noise2.keys() == noise.keys()
    for name in noise:
        torch.testing.assert_close(noise2[name], noise[name], rtol=0, atol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_wn.npz"]  # the temporary file was renamed


def test_authors_pickled_npz_is_read_without_unpickling(tmp_path):
    # The restricted reader rebuilds the pickled dict of float arrays; hostile pickles are
    # covered in tests/test_image_io_security.py.
    path = tmp_path / "authors_wn.npz"
    np.savez(path, w=np.zeros((1, 10, 128), np.float32), noise_bufs={"b4.conv1.noise_const": np.ones((4, 4))})
    w, noise = load_projection(path)
    assert w.shape == (1, 10, 128) and torch.equal(noise["b4.conv1.noise_const"], torch.ones(4, 4))


# ---------------------------------------------------------------------------------------------
# Latent statistics


def test_w_statistics_follow_numpy_randomstate(tiny_G):
    w_avg, w_std = w_statistics(tiny_G, num_samples=500, seed=303, batch_size=128)
    z = torch.from_numpy(np.random.RandomState(303).randn(500, tiny_G.z_dim)).float()
    with torch.no_grad():
        w = tiny_G.mapping(z, None)[:, 0].double()
    assert w_avg.shape == (1, 1, tiny_G.w_dim)
    torch.testing.assert_close(w_avg[0, 0].double(), w.mean(0), atol=1e-5, rtol=1e-5)
    assert w_std == pytest.approx(math.sqrt(((w - w.mean(0)) ** 2).sum().item() / 500), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# project()


def _snapshot(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in G.state_dict().items()}


def test_project_outputs_and_leaves_G_untouched(noisy_G, noisy_sample):
    _, target = noisy_sample
    before = _snapshot(noisy_G)
    calls = []
    result = project(
        noisy_G,
        target,
        loss="mse",
        num_steps=6,
        progress=False,
        w_avg_samples=256,
        callback=lambda step, w, image: calls.append(
            (step, w.shape, image.shape, w.requires_grad, image.requires_grad)
        ),
    )
    assert isinstance(result, ProjectionResult)
    assert result.w.shape == (1, noisy_G.num_ws, noisy_G.w_dim)
    assert result.image.shape == target.shape
    assert result.noise.keys() == generator_noise_buffers(noisy_G).keys()
    for name, buf in result.noise.items():
        assert buf.shape == generator_noise_buffers(noisy_G)[name].shape and not buf.requires_grad
        assert abs(buf.mean().item()) < 1e-5 and buf.square().mean().item() == pytest.approx(1.0, abs=1e-4)
    assert set(result.history) == {"lr", "sigma", "loss", "perceptual", "mse", "noise_reg"}
    assert all(len(v) == 6 for v in result.history.values())
    assert result.history["lr"][0] == 0.0 and result.history["sigma"][0] > result.history["sigma"][-1]
    assert [c[0] for c in calls] == list(range(6))
    assert all(c[1] == result.w.shape and c[2] == target.shape and not c[3] and not c[4] for c in calls)
    after = _snapshot(noisy_G)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in noisy_G.parameters())


def test_project_is_deterministic_for_a_seed(noisy_G, noisy_sample):
    _, target = noisy_sample
    loss = perceptual_loss("vgg16_conv_random", layers=[2])
    kwargs = dict(loss=loss, num_steps=4, progress=False, w_avg_samples=256)
    a = project(noisy_G, target, seed=3, **kwargs)
    b = project(noisy_G, target, seed=3, **kwargs)
    c = project(noisy_G, target, seed=4, **kwargs)
    assert torch.equal(a.w, b.w) and torch.equal(a.image, b.image)
    assert all(torch.equal(a.noise[k], b.noise[k]) for k in a.noise)
    assert a.history == b.history
    assert not torch.equal(a.w, c.w)


def test_w_space_and_fixed_noise(tiny_G, own_sample):
    _, target = own_sample
    result = project(
        tiny_G, target, loss="mse", num_steps=3, w_space="w", optimize_noise=False, progress=False, w_avg_samples=256
    )
    assert result.w.shape == (1, tiny_G.num_ws, tiny_G.w_dim)
    assert torch.equal(result.w, result.w[:, :1].expand_as(result.w))  # one code broadcast to every layer
    assert result.noise == {}
    with pytest.raises(ValueError, match="w_space"):
        project(tiny_G, target, loss="mse", num_steps=1, w_space="z", progress=False)


def test_noise_only_optimisation_keeps_w(tiny_G, own_sample):
    w_true, target = own_sample
    result = project(
        tiny_G, target, loss="mse", num_steps=3, optimize_w=False, w_init=w_true, progress=False, w_avg_samples=256
    )
    torch.testing.assert_close(result.w, w_true, rtol=0, atol=0)
    assert all(s == 0.0 for s in result.history["sigma"])


def test_target_shape_must_match_G(tiny_G):
    with pytest.raises(ValueError, match="target"):
        project(tiny_G, torch.zeros(1, 3, 32, 32), loss="mse", num_steps=1, progress=False, w_avg_samples=16)


def test_result_save_load(tiny_G, own_sample, tmp_path):
    _, target = own_sample
    result = project(tiny_G, target, loss="mse", num_steps=2, progress=False, w_avg_samples=16)
    w, noise = load_projection(result.save(tmp_path / "r_wn.npz"))
    torch.testing.assert_close(w, result.w)
    G = Generator(**TINY_KWARGS)
    G.load_state_dict(tiny_G.state_dict())
    from hrinv_nb.networks import set_noise_buffers

    set_noise_buffers(G, noise)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(w, noise_mode="const"), result.image)


def test_recovers_its_own_sample(tiny_G, own_sample):
    """MSE + random-VGG loss in W+: the answer exists (G's own sample) and is found: PSNR >= 35 dB, +15 dB."""
    _, target = own_sample
    loss = perceptual_loss("vgg16_conv_random", layers=FAST_VGG_LAYERS)
    with torch.no_grad():
        start_image = tiny_G.synthesis(w_statistics(tiny_G)[0].repeat(1, tiny_G.num_ws, 1), noise_mode="const")
    result = project(tiny_G, target, loss=loss, num_steps=120, optimize_noise=False, progress=False)
    start, value = metrics.psnr(start_image, target), metrics.psnr(result.image, target)
    assert value >= 35 and value - start >= 15, (start, value)


def test_hf_energy_separates_downsampled_from_full_resolution_loss(noisy_G, noisy_sample):
    """With optimised noise maps, a 2× downsampled loss leaves residual power in the band it cannot see.

    λ_mse = 0 isolates the perceptual loss (the MSE term sees every band).
    """
    _, target = noisy_sample
    energies = {}
    for size in (32, -1):
        loss = perceptual_loss("vgg16_conv_random", layers=FAST_VGG_LAYERS, downsample_size=size)
        result = project(noisy_G, target, loss=loss, num_steps=80, optimize_noise=True, mse_weight=0.0, progress=False)
        energies[size] = metrics.hf_artifact_energy(result.image, target)
    assert energies[32] > 2 * energies[-1], energies
