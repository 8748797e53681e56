"""Batched projection (hrinv_nb.projector.project_batch), λ rescaling, random ResNet50, and the toy-world metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_generator
from safetensors.torch import save_file

from hrinv_nb import metrics
from hrinv_nb.losses import perceptual_loss, resolution_lambda_scale, vgg16_trunk
from hrinv_nb.networks import Generator
from hrinv_nb.projector import (
    generator_noise_buffers,
    noise_regularization,
    noise_regularization_per_sample,
    normalize_noise_per_sample_,
    project,
    project_batch,
)


def _tiny_generator() -> Generator:
    return tiny_generator(noise_strength=0.3)


def _targets(G: Generator, batch: int = 2) -> torch.Tensor:
    with torch.no_grad():
        ws = G.mapping(torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
        return G.synthesis(ws, noise_mode="const").clamp(-1, 1)


def test_batch_equals_separate_projections_without_random_draws():
    G = _tiny_generator()
    targets = _targets(G, 3)
    common = dict(
        loss="mse",
        num_steps=6,
        optimize_noise=False,
        latent_noise_factor=0.0,
        progress=False,
        w_avg_samples=500,
        mse_weight=1.0,
    )
    batched = project_batch(G, targets, **common)
    chunked = project_batch(G, targets, chunk_size=2, **common)  # chunks of 2 and 1: separate problems
    assert batched.w.shape == (3, G.num_ws, G.w_dim) and batched.images.shape == targets.shape
    assert chunked.w.shape == batched.w.shape and chunked.images.shape == targets.shape
    singles = [project(G, targets[i : i + 1], **common) for i in range(3)]
    for i, single in enumerate(singles):
        for result in (batched, chunked):
            assert torch.allclose(result.w[i : i + 1], single.w, atol=1e-4), i
            assert torch.allclose(result.sample(i).image, single.image, atol=1e-4)
    # history: per-step means over all B samples, whichever the chunking
    for key in ("loss", "perceptual", "mse"):
        mean_of_singles = [sum(s.history[key][k] for s in singles) / 3 for k in range(6)]
        assert chunked.history[key] == pytest.approx(mean_of_singles, rel=1e-3), key
        assert batched.history[key] == pytest.approx(mean_of_singles, rel=1e-3), key
    assert chunked.history["lr"] == singles[0].history["lr"]


def test_chunks_continue_one_random_stream():
    """One generator, seeded once, continues through the chunks: chunk_size >= B is the unchunked run,
    a smaller chunk size gives other (still seeded) draws, and each chunk's noise maps are its own."""
    G = _tiny_generator()
    targets = _targets(G, 3)
    common = dict(loss="mse", num_steps=3, progress=False, w_avg_samples=500, seed=7)
    whole = project_batch(G, targets, **common)
    assert torch.equal(project_batch(G, targets, chunk_size=3, **common).w, whole.w)
    assert torch.equal(project_batch(G, targets, chunk_size=8, **common).w, whole.w)
    chunked = project_batch(G, targets, chunk_size=2, **common)
    assert torch.equal(project_batch(G, targets, chunk_size=2, **common).w, chunked.w), "same seed, same result"
    first = project_batch(G, targets[:2], **common)  # the first chunk alone draws what the chunked run drew first
    assert torch.equal(chunked.w[:2], first.w)
    assert not torch.allclose(chunked.w[2], whole.w[2]), "the last chunk continues the stream"
    for name, maps in chunked.noise.items():
        assert maps.shape[0] == 3 and not torch.equal(maps[0], maps[2]), name
        assert torch.allclose(maps.square().mean(dim=(1, 2)), torch.ones(3), atol=1e-4)


def test_batch_noise_maps_are_per_sample_normalised_and_G_untouched():
    G = _tiny_generator()
    before = {k: v.clone() for k, v in generator_noise_buffers(G).items()}
    targets = _targets(G, 2)
    result = project_batch(G, targets, loss="mse", num_steps=4, progress=False, w_avg_samples=500)
    assert set(result.noise) == set(before)
    for name, maps in result.noise.items():
        assert maps.shape == (2, *before[name].shape)
        assert torch.allclose(maps.mean(dim=(1, 2)), torch.zeros(2), atol=1e-5)
        assert torch.allclose(maps.square().mean(dim=(1, 2)), torch.ones(2), atol=1e-4)
        assert not torch.equal(maps[0], maps[1]), "each sample has its own noise maps"
    for name, buf in generator_noise_buffers(G).items():
        assert torch.equal(buf, before[name]), "G must not be mutated"
    again = project_batch(G, targets, loss="mse", num_steps=4, progress=False, w_avg_samples=500)
    assert torch.equal(again.w, result.w), "same seed, same result"
    assert all(torch.isfinite(torch.tensor(v)).all() for v in result.history.values())


def test_batch_noise_regularisation_runs_and_needs_noise_maps():
    G = _tiny_generator()
    targets = _targets(G, 2)
    result = project_batch(G, targets, loss="mse", num_steps=3, progress=False, w_avg_samples=500, noise_reg_weight=1e5)
    assert result.history["noise_reg"][0] > 0
    with pytest.raises(ValueError, match="optimize_noise"):
        project_batch(
            G,
            targets,
            loss="mse",
            num_steps=2,
            progress=False,
            w_avg_samples=500,
            noise_reg_weight=1.0,
            optimize_noise=False,
        )


def test_noise_regularisation_per_sample_matches_the_single_version():
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(3, 1, 16, 16, generator=gen), torch.randn(3, 1, 8, 8, generator=gen)]
    per_sample = noise_regularization_per_sample(maps)
    for b in range(3):
        assert per_sample[b] == pytest.approx(float(noise_regularization([m[b, 0] for m in maps])), rel=1e-5)
    normalize_noise_per_sample_(maps)
    assert torch.allclose(maps[0].mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-6)


def test_lambda_scale_and_resolution_factor():
    assert resolution_lambda_scale("1024", 64) == 16.0
    assert resolution_lambda_scale("256", 32) == 8.0
    with pytest.raises(KeyError):
        resolution_lambda_scale("512", 32)
    plain = perceptual_loss("vgg16_conv_random", layers=[2, 7], lambda_scale=1.0)
    scaled = perceptual_loss("vgg16_conv_random", layers=[2, 7], lambda_scale=4.0)
    assert scaled.lambdas == {k: 4.0 * v for k, v in plain.lambdas.items()}
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    plain.set_target(x)
    scaled.set_target(x)
    assert float(scaled(y)) == pytest.approx(16.0 * float(plain(y)), rel=1e-5)
    with pytest.raises(ValueError):
        perceptual_loss("mse", lambda_scale=0.0)


def test_random_resnet50_needs_no_weights_and_is_seeded():
    a = perceptual_loss("resnet50_random", seed=1, layers=["conv1", "layer1.2.conv1"])
    b = perceptual_loss("resnet50_random", seed=1, layers=["conv1", "layer1.2.conv1"])
    c = perceptual_loss("resnet50_random", seed=2, layers=["conv1", "layer1.2.conv1"])
    assert torch.equal(a.backbone.conv1.weight, b.backbone.conv1.weight)
    assert not torch.equal(a.backbone.conv1.weight, c.backbone.conv1.weight)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    a.set_target(x)
    assert float(a(x)) == 0.0 and float(a(x.flip(0))) > 0
    with pytest.raises(ValueError):
        perceptual_loss("resnet50_random", weights="x.pth")


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def test_detail_and_sharpness_ratios_see_blur():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert metrics.detail_ratio(x, x) == pytest.approx(1.0)
    assert metrics.sharpness_ratio(x, x) == pytest.approx(1.0)
    assert metrics.detail_ratio(_blur(x), x) < 0.3
    assert metrics.sharpness_ratio(_blur(x), x) < 0.6
    per = metrics.hf_artifact_energy_per_sample(_blur(x), x)
    assert len(per) == 2 and sum(per) / 2 == pytest.approx(metrics.hf_artifact_energy(_blur(x), x))
    assert sum(metrics.psnr_per_sample(_blur(x), x)) / 2 == pytest.approx(metrics.psnr(_blur(x), x))
    assert sum(metrics.ssim_per_sample(_blur(x), x)) / 2 == pytest.approx(metrics.ssim(_blur(x), x))


def test_vgg_feature_distance(tmp_path):
    trunk = vgg16_trunk(29, seed=3)
    path = tmp_path / "trunk.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    same = metrics.vgg_feature_distance_per_sample(x, x, weights=path)
    assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6)
    near = metrics.vgg_feature_distance(x + 0.05 * torch.randn_like(x), x, weights=path)
    far = metrics.vgg_feature_distance(x.flip(0), x, weights=path)
    assert 0 < near < far


def test_reconstruction_study_row_measures_and_pairs():
    from hrinv_nb.studies import reconstruction as study

    G = _tiny_generator()
    targets = _targets(G, 2)
    row = study.run_row("mse", G, targets, "mse", num_steps=3, progress=False, w_avg_samples=500, optimize_noise=False)
    assert set(row.measures) == {"psnr", "ssim", "hf_energy", "detail_ratio", "sharpness_ratio"}
    assert all(len(v) == 2 for v in row.measures.values())
    assert row.cpu_seconds >= 0 and row.seconds > 0
    same = study.paired(row, row, "psnr")
    assert same.mean == 0.0 and same.sem == 0.0 and same.n == 2
    numbers = study.numbers_of([row])
    assert numbers["mse"]["psnr_mean"] == pytest.approx(row.mean("psnr"))
    assert study.summary_rows([row], ["psnr", "lpips"])[0][2] == "–"


def test_busiest_box_finds_the_textured_window():
    from hrinv_nb.studies import reconstruction as study

    img = torch.zeros(1, 3, 32, 32)
    img[..., 20:28, 4:12] = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    top, left, h, w = study.busiest_box(img, 8)
    assert (h, w) == (8, 8) and abs(top - 20) <= 1 and abs(left - 4) <= 1


def test_scaled_loss_uses_the_resolution_factor():
    from hrinv_nb.studies import reconstruction as study

    full = study.scaled_loss("vgg16_conv_random", image_size=64)
    down = study.scaled_loss("vgg16_conv_random", image_size=64, downsample_size=32)
    printed = study.scaled_loss("vgg16_conv_random", image_size=64, lambda_scale="paper")
    img = torch.zeros(1, 3, 64, 64)
    assert full.lambdas == printed.lambdas  # the factor is applied at each call, from the size seen
    assert (full.lambda_factor(img), down.lambda_factor(img), printed.lambda_factor(img)) == (16.0, 8.0, 1.0)
    assert down.lambdas == perceptual_loss("vgg16_conv_random", downsample_size=32).lambdas
    with pytest.raises(ValueError):
        study.scaled_loss("vgg16_conv_random", image_size=64, lambda_scale="other")


def test_downsampled_table_is_a_choice():
    """A down-sampled loss uses the "256" λ table by default, or the "1024" one (the authors' public loss) on request."""
    from hrinv_nb.losses import LAMBDA_TABLES
    from hrinv_nb.studies import reconstruction as study

    kw = dict(image_size=64, downsample_size=32, lambda_scale="paper")
    t256 = study.scaled_loss("vgg16_conv_random", **kw)
    t1024 = study.scaled_loss("vgg16_conv_random", downsampled_table="1024", **kw)
    assert t256.lambdas == LAMBDA_TABLES["vgg16_conv_random"]["256"]
    assert t1024.lambdas == LAMBDA_TABLES["vgg16_conv_random"]["1024"]
    # the same network and input, only λ differs: the loss ratio is fixed by the two tables
    x, y = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    t256.set_target(y)
    t1024.set_target(y)
    assert float(t256(x)) != pytest.approx(float(t1024(x)), rel=0.1)
    # at full resolution the choice does not apply
    full = study.scaled_loss("vgg16_conv_random", image_size=64, downsampled_table="256", lambda_scale="paper")
    assert full.lambdas == LAMBDA_TABLES["vgg16_conv_random"]["1024"]
    with pytest.raises(ValueError):
        study.scaled_loss("vgg16_conv_random", downsampled_table="512", **kw)


def test_stack_figures_makes_one_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrinv_nb.notebook import plots

    a, b = plt.figure(figsize=(2, 1)), plt.figure(figsize=(3, 1))
    fig = plots.stack_figures([a, b], dpi=50)
    width, height = fig.get_size_inches() * 50
    assert width >= 140 and height >= 90
    plt.close("all")
