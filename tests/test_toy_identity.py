"""The toy identity embedder: shipped file, unit-norm embeddings, cross-style retrieval, training step."""

from __future__ import annotations

import json

import pytest
import torch

from hrinv_nb.retrieval import id_retrieval
from hrinv_nb.toy.identity import (
    ID_EMBEDDER_PATH,
    ToyIdEmbedder,
    evaluate_id_retrieval,
    id_embedder_fn,
    load_id_embedder,
    main,
    render_retrieval_set,
    supcon_loss,
    train_id_embedder,
)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def embedder() -> ToyIdEmbedder:
    if not ID_EMBEDDER_PATH.is_file():
        pytest.fail(f"shipped asset missing: {ID_EMBEDDER_PATH} (python -m hrinv_nb.toy.identity rebuilds it)")
    return load_id_embedder()


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m hrinv_nb\.toy\.identity"):
        load_id_embedder(tmp_path / "absent.safetensors")


def test_shipped_embedder_is_frozen_and_unit_norm(embedder):
    assert not embedder.training and not any(p.requires_grad for p in embedder.parameters())
    assert 5e5 <= sum(p.numel() for p in embedder.parameters()) <= 2e6
    embed = id_embedder_fn(embedder, batch_size=3)
    g = torch.Generator().manual_seed(0)
    for size in (64, 48, 128):
        img = torch.rand(5, 3, size, size, generator=g) * 2 - 1
        emb = embed(img)
        assert emb.shape == (5, embedder.dim) and torch.isfinite(emb).all()
        assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-4)
        assert not emb.requires_grad
    # batching does not change the result
    img = torch.rand(7, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        direct = embedder(img)
    assert torch.allclose(id_embedder_fn(embedder, batch_size=2)(img), direct, atol=1e-5)
    with pytest.raises(AssertionError):
        embed(torch.zeros(2, 1, 64, 64))


def test_cross_style_retrieval_is_far_above_chance(embedder):
    data = render_retrieval_set(n_ids=8, per_style=2, seed=777)  # identities unseen in training
    result = evaluate_id_retrieval(id_embedder_fn(embedder), data)
    assert result["num_contents"] == 8 and result["n_per_style"] == 16
    assert result["top1_min"] >= 0.75, result["top1"]  # chance is 1/8
    # a random-init network of the same shape is much worse on the same set
    random_model = ToyIdEmbedder(**embedder.config).init_weights(torch.Generator().manual_seed(1)).eval()
    random_result = evaluate_id_retrieval(id_embedder_fn(random_model), data)
    assert sum(random_result["top1"].values()) <= sum(result["top1"].values()) - 1.0, random_result["top1"]


def test_same_identity_closer_than_other_identities(embedder):
    data = render_retrieval_set(n_ids=6, per_style=1, seed=778)
    embed = id_embedder_fn(embedder)
    photo = embed(data["photo"])
    cartoon = embed(data["cartoon"])
    sim = cartoon @ photo.t()  # [6 cartoons, 6 photos]
    own = sim.diagonal()
    others = sim.masked_fill(torch.eye(6, dtype=torch.bool), -2).max(dim=1).values
    assert (own > others).float().mean() >= 5 / 6, (own, others)
    assert id_retrieval(photo, cartoon, data["labels"])["top1"] >= 5 / 6


def test_supcon_loss_prefers_grouped_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    grouped = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [0.1, 1]]), dim=1)
    mixed = grouped[[0, 2, 1, 3]]
    assert supcon_loss(grouped, labels) < supcon_loss(mixed, labels)


def test_one_training_step_writes_a_loadable_file(tmp_path):
    out = tmp_path / "emb.safetensors"
    provenance = main(
        [
            "--out",
            str(out),
            "--steps",
            "1",
            "--n-ids",
            "4",
            "--ids-per-batch",
            "2",
            "--eval-ids",
            "3",
            "--eval-per-style",
            "1",
            "--no-cache",
        ]
    )
    model = load_id_embedder(out)
    emb = id_embedder_fn(model)(torch.zeros(2, 3, 64, 64))
    assert emb.shape == (2, 128) and torch.isfinite(emb).all()
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["steps"] == 1 and written["size_bytes"] == out.stat().st_size
    assert set(written["retrieval"]["top1"]) == {"cartoon", "caricature", "anime"}
    assert provenance["command"].startswith("python -m hrinv_nb.toy.identity")


def test_time_budget_stops_training_and_still_saves(tmp_path):
    out = tmp_path / "budget" / "emb.safetensors"
    provenance = train_id_embedder(
        out, steps=100_000, ids_per_batch=2, n_ids=4, eval_ids=3, eval_per_style=1, time_budget_s=4.0,
        work_dir=None, progress=False,
    )  # fmt: skip
    assert 1 <= provenance["steps_done"] < 100_000 and provenance["time_budget_s"] == 4.0
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["steps_done"] == provenance["steps_done"] and written["n_ids"] == 4
    model = load_id_embedder(out)
    assert id_embedder_fn(model)(torch.zeros(1, 3, 128, 128)).shape == (1, 128)


def test_training_set_is_cached_and_reused(tmp_path):
    kwargs = {"steps": 1, "ids_per_batch": 2, "n_ids": 4, "eval_ids": 3, "eval_per_style": 1, "progress": False}
    first = train_id_embedder(tmp_path / "a.safetensors", work_dir=tmp_path / "work", **kwargs)
    assert len(list((tmp_path / "work").glob("idemb_train_*.pt"))) == 1
    second = train_id_embedder(tmp_path / "b.safetensors", work_dir=tmp_path / "work", **kwargs)
    assert second["retrieval"]["top1"] == first["retrieval"]["top1"]
