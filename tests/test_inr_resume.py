"""Resumable toy Style-INR training: a paused or interrupted run, resumed, is the uninterrupted one bit for bit."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb.torch_files import load_torch_file
from hrinv_nb.toy.inr_training import train_toy_inr


def _scene(z: torch.Tensor, size: tuple[int, int], noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """A cheap deterministic stand-in for the photo render: z-coloured halves plus texture maps."""
    h, w = size
    left = (torch.arange(w) < w // 2).float()[None, None, None, :]
    img = torch.tanh(z[:, :3, None, None]) * 0.5 * left + torch.tanh(z[:, 3:6, None, None]) * 0.5 * (1 - left)
    assert noise["fine"].shape == (z.shape[0], 1, h, w) and noise["coarse"].shape == (z.shape[0], 1, h // 2, w // 2)
    return (img.expand(-1, -1, h, -1) + 0.1 * noise["fine"] + 0.05 * noise["grain"]).clamp(-1, 1)


# Small and fast; the pool (chunks of 3) stops after its first round: its budget is 1e9 * 1e-15 s. The
# 1e9-s training budget leaves the lr schedule step-driven (elapsed / 1e9 is far below every step / steps
# but the first, where both give the full rate), so runs are reproducible bit for bit.
KW = dict(device="cpu", steps=12, seed=3, batch=2, render_fn=_scene, eval_samples=0, log_every=5, wide_pool=9,
          render_batch=3, pool_fraction=1e-15)  # fmt: skip


@pytest.fixture(scope="module")
def G_s():
    return tiny_generator(noise_strength=0.05)


@pytest.fixture(scope="module")
def reference(G_s):
    """The uninterrupted run, without a work_dir."""
    return train_toy_inr(G_s, time_budget_s=1e9, **KW)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _losses(record: dict) -> list[dict]:
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in record["log"]]


def test_paused_and_resumed_run_is_the_uninterrupted_one(G_s, reference, tmp_path):
    G_ref, rec_ref = reference
    assert rec_ref["pool_sizes"] == {"32x48": 3, "32x64": 3, "32x96": 3}  # the budget cut the pool short
    # the same run with a work_dir: saving changes nothing
    G_saved, rec_saved = train_toy_inr(G_s, time_budget_s=1e9, work_dir=tmp_path / "a", checkpoint_every=4, **KW)
    assert _same(G_saved, G_ref) and rec_saved["final_l1"] == rec_ref["final_l1"]
    # paused at step 5 (states at 4 and 5), then resumed without a time budget: the pool is not rendered
    # to wide_pool (9) but at the saved sizes, so the resumed run draws exactly the same batches
    _, rec1 = train_toy_inr(G_s, time_budget_s=1e9, work_dir=tmp_path / "b", checkpoint_every=4, pause_at=5, **KW)
    assert rec1["steps"] == 5 and load_torch_file(tmp_path / "b" / "state.pt")["step"] == 5
    G2, rec2 = train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path / "b", checkpoint_every=4, **KW)
    assert rec2["resumed_from"] == 5 and rec2["steps"] == 12 and rec2["pool_sizes"] == rec_ref["pool_sizes"]
    assert _same(G2, G_ref)
    assert rec2["final_l1"] == rec_ref["final_l1"] and _losses(rec2) == _losses(rec_ref)
    assert rec2["seconds"] >= rec1["seconds"]  # elapsed time accumulates over the calls
    # a further call finds the run finished: nothing trained, same weights
    G3, rec3 = train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path / "b", **KW)
    assert rec3["resumed_from"] == rec3["steps"] == 12 and _same(G3, G_ref)


def test_interrupted_run_resumes_from_its_last_state(G_s, tmp_path):
    """A run that dies mid-way (here its renderer raises) loses at most ``checkpoint_every`` steps."""
    kw = KW | {"wide_pool": 0}  # every wide step (steps 0, 2, 4, ...) renders afresh
    G_ref, rec_ref = train_toy_inr(G_s, time_budget_s=None, **kw)
    calls = []

    def dies_at_step_8(z, size, noise):
        calls.append(size)
        if len(calls) == 5:
            raise RuntimeError("session ended")
        return _scene(z, size, noise)

    with pytest.raises(RuntimeError, match="session ended"):
        train_toy_inr(
            G_s, time_budget_s=None, work_dir=tmp_path, checkpoint_every=3, **kw | {"render_fn": dies_at_step_8}
        )
    assert load_torch_file(tmp_path / "state.pt")["step"] == 6
    G, rec = train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path, checkpoint_every=3, **kw)
    assert rec["resumed_from"] == 6 and rec["pool_sizes"] == {} and _same(G, G_ref)
    assert _losses(rec) == _losses(rec_ref)


def test_resume_with_other_settings_names_them(G_s, tmp_path):
    train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path, **KW | {"steps": 2})
    before = (tmp_path / "state.pt").read_bytes()
    for change, keys in [({"seed": 4}, "seed"), ({"batch": 3}, "batch"), ({"seed": 4, "lr": 1e-3}, "lr, seed"),
                         ({"wide_shapes": [(32, 64)]}, "wide_shapes")]:  # fmt: skip
        with pytest.raises(ValueError, match=rf"other settings \({keys}\)"):
            train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path, **KW | change)
    with pytest.raises(ValueError, match="G_s_sha256"):  # another G_s
        train_toy_inr(tiny_generator(noise_strength=0.05, seed=1), time_budget_s=None, work_dir=tmp_path, **KW)
    assert (tmp_path / "state.pt").read_bytes() == before  # a refused resume writes nothing
    # steps and the time budget are stopping rules: they may change
    _, rec = train_toy_inr(G_s, time_budget_s=1e9, work_dir=tmp_path, **KW | {"steps": 3})
    assert rec["resumed_from"] == 2 and rec["steps"] == 3


def test_state_loads_weights_only(G_s, tmp_path):
    train_toy_inr(G_s, time_budget_s=None, work_dir=tmp_path, **KW | {"steps": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temporaries left behind
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert load_torch_file(tmp_path / "state.pt").keys() == state.keys()
    assert state["step"] == 2 and state["n_wide"] == 1  # steps 0 (wide) and 1 (square)
    assert state["pool_sizes"] == [[32, 48, 9], [32, 64, 9], [32, 96, 9]]  # no budget: all of wide_pool
    assert {k: state["config"][k] for k in ("seed", "batch", "steps", "wide_pool", "render_batch")} == {
        "seed": 3, "batch": 2, "steps": 2, "wide_pool": 9, "render_batch": 3}  # fmt: skip
    assert state["seconds"] > 0 and isinstance(state["rng"], torch.Tensor) and "state" in state["opt"]
    assert any(k.startswith("inr_net.") for k in state["synthesis"])


def test_without_work_dir_nothing_is_written(G_s, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, rec = train_toy_inr(G_s, time_budget_s=None, **KW | {"steps": 2})
    assert rec["steps"] == 2 and list(tmp_path.iterdir()) == []
