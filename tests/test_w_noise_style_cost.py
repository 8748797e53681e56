"""hrinv_nb.noise_maps (rendering with given noise maps, the w/n split), hrinv_nb.studies.w_vs_noise
(what w and n reconstruct, Fig. 4) and hrinv_nb.studies.cost (Table I timing and memory)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb import noise_maps
from hrinv_nb.losses import perceptual_loss
from hrinv_nb.networks import Generator, noise_buffers
from hrinv_nb.studies import cost
from hrinv_nb.studies import w_vs_noise as wn


def _generator(noise_strength: float) -> Generator:
    return tiny_generator(noise_strength=noise_strength).requires_grad_(False)


@pytest.fixture(scope="module")
def G() -> Generator:
    return _generator(0.3)


@pytest.fixture(scope="module")
def w(G) -> torch.Tensor:
    with torch.no_grad():
        return G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)), None)


def _random_noise(G: Generator, seed: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in noise_buffers(G).items()}


def test_synthesize_defaults_to_own_maps_and_leaves_G_unchanged(G, w):
    before = {k: v.clone() for k, v in noise_buffers(G).items()}
    ids = {k: id(v) for k, v in noise_buffers(G).items()}
    with torch.no_grad():
        reference = G.synthesis(w, noise_mode="const")
    assert torch.equal(noise_maps.synthesize(G, w), reference)
    other = noise_maps.synthesize(G, w, _random_noise(G))
    assert not torch.allclose(other, reference)
    after = noise_buffers(G)
    assert {k: id(v) for k, v in after.items()} == ids
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(noise_maps.synthesize(G, w), reference)


def test_scale_zero_is_zero_noise_and_scale_one_is_the_maps(G, w):
    noise = _random_noise(G)
    zero = noise_maps.synthesize(G, w, noise_maps.zero_noise(G))
    assert torch.equal(noise_maps.synthesize(G, w, noise, scale=0.0), zero)
    series = noise_maps.noise_scale_series(G, w, noise, [0.0, 0.5, 1.0])
    assert series.shape == (3, 3, 32, 32)
    assert torch.equal(series[:1], zero) and torch.equal(series[2:], noise_maps.synthesize(G, w, noise))
    assert torch.isfinite(series).all()


def test_split_adds_up_and_vanishes_without_noise_strength(G, w):
    noise = _random_noise(G)
    split = noise_maps.split_w_noise(G, w, noise)
    assert torch.allclose(split.w_only + split.contribution, split.full)
    assert split.contribution.abs().max() > 0
    quiet = _generator(0.0)
    split0 = noise_maps.split_w_noise(quiet, w, noise)
    assert torch.equal(split0.contribution, torch.zeros_like(split0.contribution))


def test_noise_strengths_lists_every_noisy_layer(G):
    strengths = noise_maps.noise_strengths(G)
    assert len(strengths) == len(noise_buffers(G)) and all(v == pytest.approx(0.3) for v in strengths.values())


def test_with_noise_strength_copies(G, w):
    quiet = _generator(0.0)
    loud = noise_maps.with_noise_strength(quiet, 0.3)
    assert all(v == pytest.approx(0.3) for v in noise_maps.noise_strengths(loud).values())
    assert all(v == 0.0 for v in noise_maps.noise_strengths(quiet).values())
    assert torch.allclose(noise_maps.synthesize(loud, w), noise_maps.synthesize(G, w), atol=1e-6)


def test_reconstruction_measures_of_the_target_itself():
    gen = torch.Generator().manual_seed(4)
    target = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    out = wn.reconstruction_measures({"same": target, "blurred": blurred}, target, cutoff=0.5, lowpass_size=8)
    assert out["same"]["psnr_db"] == float("inf") and out["same"]["hf_ratio_to_target"] == pytest.approx(1.0)
    assert out["same"]["hf_residual_energy"] == 0.0
    assert out["blurred"]["hf_ratio_to_target"] < 0.5 and out["blurred"]["hf_residual_energy"] > 0
    assert out["blurred"]["lowpass_psnr_db"] > out["blurred"]["psnr_db"]


def test_signed_difference_is_grey_for_equal_images():
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(wn.signed_difference(x, x), torch.zeros_like(x))
    assert wn.signed_difference(x, x - 1).min() == 1  # clamped


def test_format_seconds_in_the_papers_style():
    assert cost.format_seconds(0.032) == "32 ms"
    assert cost.format_seconds(8.0) == "8.0 s"
    assert cost.format_seconds(138.0) == "2 m 18 s"
    assert cost.format_seconds(3 * 3600 + 5 * 60) == "3 h 05 m"
    assert cost.format_seconds(6 * 86400 + 3 * 3600) == "6 d 03 h"


def test_time_inversion_extrapolates_from_a_few_steps(G):
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    row = cost.time_inversion(G, perceptual_loss("mse"), target, steps=3, total_steps=1000, w_avg_samples=100)
    assert row["steps_run"] == 3 and row["steps_timed"] == 2 and row["extrapolated"]
    assert row["run_s"] == pytest.approx(row["first_step_s"] + 999 * row["step_s"])
    full = cost.time_inversion(G, perceptual_loss("mse"), target, steps=2, total_steps=2, w_avg_samples=100)
    assert not full["extrapolated"]


def test_time_lso_and_generation(G, w):
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    row = cost.time_lso(G, w, content, perceptual_loss("mse"), steps=2, total_steps=50)
    assert row["steps_run"] == 2 and row["step_s"] > 0 and row["run_s"] >= row["first_step_s"]
    gen = cost.time_generation(G, repeats=2)
    assert gen["step_s"] > 0 and not gen["extrapolated"]


def test_memory_probes():
    assert cost.current_rss_bytes() > 0 and cost.peak_rss_bytes() >= cost.current_rss_bytes() // 2
    assert isinstance(cost.reset_peak_rss(), bool)


def test_ffhq_generator_config():
    G = cost.ffhq_generator(64)
    assert (G.z_dim, G.w_dim, G.img_resolution) == (512, 512, 64)
    assert G.init_kwargs["synthesis_kwargs"]["channel_base"] == 32768
    assert G.init_kwargs["synthesis_kwargs"]["channel_max"] == 512


def test_training_records(tmp_path):
    record = {
        "asset": "G_x",
        "training_seconds": 100.0,
        "pretrain_seconds": 20.0,
        "threads": 1,
        "train_config": {"steps": 10, "batch": 4},
        "pretrain_config": {"steps": 5, "batch": 2},
        "adversarial_config": {"steps": 10, "batch": 4},
    }  # a duplicate phase counts once
    (tmp_path / "G_x.json").write_text(json.dumps(record))
    (tmp_path / "vgg.json").write_text("{}")
    out = cost.training_records(tmp_path)
    assert list(out) == ["G_x"]
    assert out["G_x"]["seconds"] == 100.0 and out["G_x"]["kimg"] == pytest.approx(0.05)


def test_training_records_v2(tmp_path):
    """A budgeted v2 record states steps done, images seen, resolution and a D-only critic phase."""
    record = {
        "training_seconds": 60.0,
        "critic_seconds": 9.0,
        "steps_done": 25,
        "images_seen": 200,
        "resolution": 128,
        "train_config": {"steps": 1000000, "batch": 8},
    }
    (tmp_path / "G_s.json").write_text(json.dumps(record))
    out = cost.training_records(tmp_path)["G_s"]
    assert out["seconds"] == 69.0 and out["kimg"] == pytest.approx(0.2) and out["steps"] == 25 and out["res"] == 128


def test_paper_rows_and_bad_specs():
    assert cost.paper_cost("inversion")["seconds"] == 138.0
    assert cost.paper_cost("generation")["gpu_mem_gb"] == 0.78
    with pytest.raises(ValueError):
        cost.build_networks("nope", 64, "cpu")
    with pytest.raises(AssertionError):
        cost.measure([{"task": "fly", "assets": "toy", "resolution": 64, "steps": 1}])


def test_measure_in_a_fresh_process():
    rows = cost.measure([{"task": "generation", "assets": "ffhq", "resolution": 32, "steps": 1}], threads=1)
    assert len(rows) == 1 and "error" not in rows[0], rows
    assert rows[0]["resolution"] == 32 and rows[0]["peak_mem_gib"] >= 0 and rows[0]["mem_kind"].startswith("peak RSS")
