"""hrinv_nb.toy.build_assets: G_s's three phases (paired L1, D-only critic, adversarial), each G_t
fine-tuned adversarially from G_s with its mapping shared bit for bit, records that say so."""

from __future__ import annotations

import json

import pytest
import torch

from hrinv_nb.checkpoints import load_networks
from hrinv_nb.toy import build_assets as B


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("world")
    plan = {"G_s": B.Plan(2, None), "G_t_cartoon": B.Plan(2, None)}
    records = B.build(("G_s", "G_t_cartoon"), out, torch.device("cpu"), plan, batch=2, progress=False, pool=0)
    return out, records


def test_G_s_runs_its_adversarial_phase_after_the_critic(built):
    out, records = built
    rec = records["G_s"]
    assert "failed" not in rec, rec
    assert rec["critic_steps"] >= 1 and rec["adversarial_steps"] >= 1
    acfg = rec["adversarial_config"]
    assert acfg["adv_weight"] == B.ADV_WEIGHT_G_S > 0 and acfg["train_d"] and acfg["freeze_mapping"]
    assert (out / "_work" / f"G_s_adv_{rec['steps_done']}" / "state.pt").is_file()
    assert json.loads((out / "G_s.json").read_text())["adversarial_steps"] == rec["adversarial_steps"]


def test_G_t_trains_adversarially_and_shares_the_mapping(built):
    out, records = built
    rec = records["G_t_cartoon"]
    assert "failed" not in rec, rec
    cfg = rec["train_config"]
    assert cfg["adv_weight"] == B.ADV_WEIGHT and cfg["train_d"] and cfg["freeze_mapping"]
    G_s, G_t = load_networks(out / "G_s.safetensors").G, load_networks(out / "G_t_cartoon.safetensors").G
    for (name, a), (_, b) in zip(G_s.mapping.state_dict().items(), G_t.mapping.state_dict().items()):
        assert torch.equal(a, b), name
    changed = [not torch.equal(a, b) for a, b in zip(G_s.synthesis.parameters(), G_t.synthesis.parameters())]
    assert any(changed)


def test_no_adversarial_phase_when_its_share_is_zero(tmp_path):
    torch.set_num_threads(1)
    rec = B.build(("G_s",), tmp_path, torch.device("cpu"), {"G_s": B.Plan(1, None)}, 2, False, pool=0, adv_share=0)
    assert "adversarial_steps" not in rec["G_s"] and not list(tmp_path.glob("_work/G_s_adv_*"))


def test_command_line_adv_weight_and_defaults_reach_the_record(built, tmp_path):
    torch.set_num_threads(1)
    out, _ = built
    (tmp_path / "G_s.safetensors").write_bytes((out / "G_s.safetensors").read_bytes())
    argv = ["--out-dir", str(tmp_path), "--only", "G_t_anime", "--steps-scale", "2e-6", "--adv-weight", "0.05"]
    assert B.main([*argv, "--quiet"]) == 0
    rec = json.loads((tmp_path / "G_t_anime.json").read_text())
    assert rec["steps_done"] == 2 and rec["train_config"]["adv_weight"] == 0.05
    assert rec["train_config"]["batch"] == 8 and rec["data"]["pool"] == 0  # what every shipped generator used
    assert "--adv-weight 0.05" in rec["command"]


def test_shipped_target_generators_follow_the_recipe():
    """Each shipped G_t's provenance names the recipe the rebuild command uses for it (GAN and Laplacian weights)."""
    import json

    from hrinv_nb.toy import build_assets as ba

    assert set(ba.LAP_WEIGHTS) <= {f"G_t_{s}" for s in ba.TARGET_STYLES}
    for style in ba.TARGET_STYLES:
        name = f"G_t_{style}"
        cfg = json.loads((ba.DATA / f"{name}.json").read_text())["train_config"]
        recipe = ba.generator_config(name, ba.CPU_PLAN[name], batch=8, train_d=False)
        assert cfg["adv_weight"] == recipe.adv_weight == ba.ADV_WEIGHT, name
        assert cfg["lap_weight"] == recipe.lap_weight == ba.LAP_WEIGHTS.get(name, 0.0), name
