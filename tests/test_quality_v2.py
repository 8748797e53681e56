"""hrinv_nb.toy.quality: the toy world's measurements on tiny generators with known answers, and main()
on folders with missing assets (every section degrades to "unavailable: ...", nothing crashes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_KWARGS, tiny_generator

from hrinv_nb.toy import quality as q


def toy_tiny(noise_strength: float, seed: int = 0):
    """:func:`tiny_generator` with the toy world's z_dim (64), so that z maps to render factors."""
    from hrinv_nb.networks import Generator

    torch.manual_seed(seed)
    G = Generator(**{**TINY_KWARGS, "z_dim": 64})
    reference = tiny_generator(noise_strength=noise_strength, seed=seed)
    own = dict(G.named_parameters())
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if not name.startswith("mapping.fc0"):
                own[name].copy_(param)
    return G.eval()


def _embed(img: torch.Tensor) -> torch.Tensor:
    """A stand-in identity embedder: the unit-norm 4x4 area thumbnail."""
    return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(img, 4).flatten(1), dim=1)


def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    assert q.psnr_db(a, a) == math.inf
    assert q.psnr_db(a + 0.2, a) == pytest.approx(10 * math.log10(4 / 0.04))  # peak-to-peak 2


def test_band_share_and_band_power():
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert q.band_share(flat, 0.25) == pytest.approx(0.0)  # all DC
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1.0
    assert q.band_share(checker.expand(1, 3, 16, 16), 0.25) == pytest.approx(1.0)  # all at the corner frequency
    assert math.isnan(q.band_share(torch.zeros(1, 3, 8, 8)))
    img = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert q.band_power_of_difference(img, img) == 0.0
    assert q.own_band_power(img + 5.0, 0.5) == pytest.approx(q.own_band_power(img, 0.5))


def test_radial_spectrum_peaks_at_a_cosine():
    x = torch.cos(math.pi * 0.5 * torch.arange(32, dtype=torch.float64))  # half Nyquist along x
    freq, power = q.radial_spectrum(x.expand(1, 3, 32, 32).float(), n_bins=28)
    assert freq.shape == power.shape == (28,)
    assert abs(float(freq[power.argmax()]) - 0.5) < math.sqrt(2) / 28


def test_noise_inert_generator_gives_infinite_psnr():
    G = tiny_generator(noise_strength=0.0)
    out = q.measure_noise(G, _embed, n=4, seed=0)
    assert out["psnr_between_draws_db"] == math.inf and out["max_strength"] == 0.0
    assert out["identity_distance_ratio"] == 0.0 and math.isnan(out["high_band_share"])
    assert out["noise_strengths"] and not any(out["noise_strengths"].values()) and out["seconds"] >= 0


def test_noise_live_generator_is_finite_and_seeded():
    G = tiny_generator(noise_strength=0.5)
    a, b = q.measure_noise(G, None, n=4, seed=3), q.measure_noise(G, None, n=4, seed=3)
    assert math.isfinite(a["psnr_between_draws_db"]) and a["psnr_between_draws_db"] == b["psnr_between_draws_db"]
    assert 0 < a["high_band_share"] <= 1 and a["max_strength"] == pytest.approx(0.5)
    assert a["identity_distance_ratio"].startswith("unavailable")


def test_style_measures_of_an_unchanged_copy():
    G = toy_tiny(0.1)
    band = q.style_band_ratio(G, G, "cartoon", n=3, seed=0)
    assert band["generators"] == 0.0 and band["renders"] > 0 and band["ratio"] == 0.0

    def classify(img: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(img.shape[0], 4)  # always "cartoon"

    out = q.style_consistency(G, G, "cartoon", _embed, classify, n=5, seed=0)
    assert out["classifier_share"] == 1.0 and out["identity_top1"] == 1.0 and out["identity_chance"] == 0.2
    out = q.style_consistency(G, G, "anime", None, classify, n=5, seed=0)
    assert out["classifier_share"] == 0.0 and out["identity_top1"].startswith("unavailable")


@pytest.mark.parametrize("resolution", [32, 128, 1024])
def test_rows_to_blocks_matches_the_synthesis_network(resolution: int):
    from hrinv_nb.networks import SynthesisNetwork

    info = q.rows_to_blocks(resolution)
    assert info["num_ws"] == 2 * int(math.log2(resolution)) - 2
    assert info["early_rows_reach_block"] == 16 and info["early_rows_reach"] == 16 / resolution
    if resolution <= 128:  # the real network's W+ split, block by block
        synth = SynthesisNetwork(w_dim=8, img_resolution=resolution, img_channels=3, channel_base=1024, channel_max=8)
        assert synth.num_ws == info["num_ws"]
        ws = torch.arange(synth.num_ws, dtype=torch.float32)[None, :, None].expand(1, -1, 8)
        layers = dict(q.synthesis_layers(resolution))
        for res, rows in zip(synth.block_resolutions, synth.block_ws(ws)):
            names = (["conv1"] if res == 4 else ["conv0", "conv1"]) + ["torgb"]
            assert [layers[f"b{res}.{n}"] for n in names] == rows[0, :, 0].long().tolist()
    assert q.measure_perceptual(resolution)["scale_gap"] == resolution / 32


def test_inr_fidelity_of_an_untrained_head_is_finite():
    from hrinv_nb.inr import attach_inr_head

    G = tiny_generator(noise_strength=0.1)
    out = q.measure_inr_fidelity(attach_inr_head(G, seed=0), G, n=2, seed=0)
    assert math.isfinite(out["psnr_vs_G_s_db"])


def test_summary_targets_and_merging():
    sections = {"noise": {"psnr_between_draws_db": 30.0, "high_band_share": 0.5}, "styles": "unavailable: x"}
    rows = {(r["key"], r["style"]): r for r in q.summary_rows(sections)}
    assert rows[("noise.psnr_between_draws_db", None)]["met"] is True
    assert rows[("noise.psnr_between_draws_db", None)]["today"] == 67.9
    assert rows[("noise.high_band_share", None)]["met"] is False
    assert rows[("styles.band_ratio", "cartoon")]["value"].startswith("unavailable")
    assert rows[("styles.band_ratio", "cartoon")]["today"] == 0.13
    assert q.target_text("noise.psnr_between_draws_db") == "20–35" and q.target_text("sharpness.ratio") == "0.5–2"
    live = q.summary_rows({"styles": {"cartoon": {"band_ratio": 0.7}}})
    merged = {(r["key"], r["style"]): r for r in q.merged_summary(list(rows.values()), live, n_live=4)}
    assert merged[("styles.band_ratio", "cartoon")]["value"] == 0.7
    assert merged[("styles.band_ratio", "cartoon")]["source"] == "live, n=4"
    assert merged[("noise.psnr_between_draws_db", None)]["source"] == "quality.json"
    header, body = q.summary_table(list(merged.values()))
    assert len(header) == len(body[0]) == 6
    assert q.json_safe({"a": math.inf, "b": (1, torch.tensor([2.0]))}) == {"a": "inf", "b": [1, [2.0]]}


def test_main_on_an_empty_folder_records_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "quality.json"
    assert q.main(["--assets", str(tmp_path), "--out", str(out), "--figures-dir", ""]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.json"], "--figures-dir '' writes no figure"
    record = json.loads(out.read_text())
    assert record["schema"] == q.SCHEMA and "G_s" in record["assets"]
    assert record["sections"]["noise"].startswith("unavailable")
    assert all(v.startswith("unavailable") for v in record["sections"]["styles"].values())
    assert record["sections"]["inr"]["fidelity"].startswith("unavailable")
    assert all(isinstance(r["value"], str) or r["value"] is None for r in record["summary"][:5])
    assert q.stored_summary(out, q.load_assets(tmp_path))[0] is None  # no G_s: not a record of these assets


def test_main_with_only_G_s(tmp_path: Path):
    from hrinv_nb.checkpoints import save_networks

    G = toy_tiny(0.2)
    save_networks(tmp_path / "G_s.safetensors", G)
    out = tmp_path / "q.json"
    argv = ["--assets", str(tmp_path), "--out", str(out), "--figures-dir", str(tmp_path / "figs")]
    argv += ["--n-noise", "4", "--n-sharpness", "4", "--n-band", "2", "--n-consistency", "2", "--n-frechet", "2"]
    assert q.main(argv + ["--n-inr", "2", "--invert-steps", "0"]) == 0
    record = json.loads(out.read_text())
    noise = record["sections"]["noise"]
    assert math.isfinite(noise["psnr_between_draws_db"]) and noise["n"] == 4
    assert noise["identity_distance_ratio"].startswith("unavailable")
    assert record["sections"]["sharpness"]["ratio"] > 0
    assert record["sections"]["perceptual"]["scale_gap"] == TINY_KWARGS["img_resolution"] / 32
    assert record["resolution"] == 32 and record["sizes"]["noise"] == 4
    assert sorted(p.name for p in (tmp_path / "figs").glob("*.png")) == [
        "toy_world_generators.png",
        "toy_world_noise.png",
        "toy_world_rows.png",
        "toy_world_scale.png",
        "toy_world_spectrum.png",
    ]
    rows, note = q.stored_summary(out, q.load_assets(tmp_path))
    assert rows is not None and str(out) in note
