"""The toy "pretrained" VGG16 trunk: loads through the loss factory, is trained, training step works."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from hrinv_nb.losses import perceptual_loss, vgg16_trunk
from hrinv_nb.toy.render import NUISANCE_FACTORS, STYLES, render, sample_identity, sample_nuisance
from hrinv_nb.toy.vgg import (
    NUISANCE_TARGETS,
    TOY_VGG_PATH,
    TOY_VGG_WIDTHS,
    VGGPretrainNet,
    evaluate_style_classifier,
    load_toy_vgg_path,
    main,
    style_classifier,
    train_toy_vgg,
)

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.delenv("HRINV_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def shipped() -> str:
    if not TOY_VGG_PATH.is_file():
        pytest.fail(f"shipped asset missing: {TOY_VGG_PATH} (python -m hrinv_nb.toy.vgg rebuilds it)")
    return str(load_toy_vgg_path())


@pytest.fixture(scope="module")
def faces() -> dict[str, torch.Tensor]:
    """Photo renders at 64x64: ``a``; ``b`` = other identities, same nuisances; ``a2`` = same identities,
    other nuisances of the kinds the VGG was not trained to report (background, textures, shirt)."""
    g = torch.Generator().manual_seed(0)
    i1, i2 = sample_identity(8, g), sample_identity(8, g)
    n1, n2 = sample_nuisance(8, g), sample_nuisance(8, g)
    keep = [NUISANCE_FACTORS.index(name) for name in NUISANCE_TARGETS]
    n2[:, keep] = n1[:, keep]
    return {
        "a": render(i1, n1, "photo", size=(64, 64)),
        "b": render(i2, n1, "photo", size=(64, 64)),
        "a2": render(i1, n2, "photo", size=(64, 64)),
    }


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m hrinv_nb\.toy\.vgg"):
        load_toy_vgg_path(tmp_path / "absent.safetensors")


def test_shipped_file_is_a_timm_vgg16_trunk_with_its_head(shipped):
    with safe_open(shipped, framework="pt") as f:
        keys = set(f.keys())
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
        widths = [f.get_slice(f"features.{i}.weight").get_shape()[0] for i in CONV_INDICES]
    assert keys == {f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")} | {
        "head.weight",
        "head.bias",
    }
    assert dtypes == {"F16"}
    assert widths == [w for w, d in zip(TOY_VGG_WIDTHS, (2, 2, 3, 3, 3)) for _ in range(d)]


def test_shipped_style_classifier_recognises_128px_renders(shipped):
    """The pretraining head classifies renders at the generators' size (area-resized to 32²)."""
    result = evaluate_style_classifier(style_classifier(path=shipped), per_style=12, size=128, seed=99)
    assert result["min"] >= 0.9, result["accuracy"]


@pytest.mark.parametrize("size", [64, 128])
def test_perceptual_loss_loads_and_is_finite(shipped, size):
    loss = perceptual_loss("vgg16_conv", weights=shipped)
    g = torch.Generator().manual_seed(size)
    target = render(sample_identity(1, g), sample_nuisance(1, g), "photo", size=(size, size))
    other = render(sample_identity(1, g), sample_nuisance(1, g), "photo", size=(size, size))
    loss.set_target(target)
    value = loss(other)
    assert torch.isfinite(value) and value > 0
    assert loss(target).item() == pytest.approx(0.0, abs=1e-6)
    x = other.clone().requires_grad_(True)
    loss(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_trained_trunk_differs_from_random_init(shipped):
    trained = vgg16_trunk(28, weights=shipped)
    random = vgg16_trunk(28, seed=0, widths=TOY_VGG_WIDTHS)
    for i in CONV_INDICES:
        w_t, w_r = trained[i].weight, random[i].weight
        assert (w_t - w_r).abs().mean() > 0.1 * w_r.abs().mean(), i


@pytest.mark.parametrize("layer", [14, 21])
def test_trained_features_respond_to_identity(shipped, faces, layer):
    """conv3_3 / conv4_3 move more with identity than with irrelevant nuisances; random features do not."""
    stats = {}
    for name, loss in (
        ("trained", perceptual_loss("vgg16_conv", weights=shipped, layers=[layer])),
        ("random", perceptual_loss("vgg16_conv_random", seed=0, layers=[layer])),  # full width: a stricter baseline
    ):
        fa, fb, fa2 = (loss.features(faces[k])[layer] for k in ("a", "b", "a2"))
        d_identity = (fa - fb).square().flatten(1).sum(1)
        d_nuisance = (fa - fa2).square().flatten(1).sum(1)
        stats[name] = ((d_identity / d_nuisance).median().item(), (d_identity > d_nuisance).float().mean().item())
    assert stats["trained"][0] > 1.5 and stats["trained"][0] > 1.3 * stats["random"][0], stats
    assert stats["trained"][1] >= 0.75, stats


def test_batchnorm_folding_is_exact():
    net = VGGPretrainNet(seed=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # give the BatchNorms non-trivial statistics and affine parameters
        for bn in net.norms.values():
            bn.running_mean.normal_(0, 0.5, generator=g)
            bn.running_var.uniform_(0.5, 2.0, generator=g)
            bn.weight.uniform_(0.5, 1.5, generator=g)
            bn.bias.normal_(0, 0.2, generator=g)
    net.eval()
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        before = net(x)
        after = net.fold_batchnorm()(x)
    assert len(net.norms) == 0
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4 * before.abs().max().item())


def test_narrow_trunk_has_the_layer_indices_of_vgg16():
    narrow, full = VGGPretrainNet(seed=0).features, vgg16_trunk(30, seed=0)
    assert len(narrow) == len(full) == 31
    for a, b in zip(narrow, full):
        assert type(a) is type(b)
    assert [narrow[i].out_channels for i in CONV_INDICES] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]


def test_one_training_step_writes_a_loadable_file(tmp_path):
    out = tmp_path / "vgg.safetensors"
    argv = ["--out", str(out), "--steps", "1", "--batch-size", "4", "--n-train", "8", "--n-val", "4"]
    provenance = main([*argv, "--check-per-style", "1", "--no-cache"])
    loss = perceptual_loss("vgg16_conv", weights=out)
    assert loss.backbone[28].out_channels == 128  # the widths come from the file
    img = torch.zeros(1, 3, 128, 128)
    loss.set_target(img)
    assert torch.isfinite(loss(img + 0.1))
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["steps"] == 1 and written["steps_done"] == 1 and written["size_bytes"] == out.stat().st_size
    assert 0.0 <= written["heldout"]["style_accuracy"] <= 1.0
    assert written["fold_max_abs_diff"] < 1e-2 * (1 + abs(written["heldout"]["identity_mae"]))
    assert set(written["style_classifier_check"]["accuracy"]) == set(STYLES)
    assert provenance["command"].startswith("python -m hrinv_nb.toy.vgg")
    classify = style_classifier(path=out)
    for size in (32, 64, 128):
        logits = classify(torch.zeros(3, 3, size, size))
        assert logits.shape == (3, len(STYLES)) and torch.isfinite(logits).all()
    with pytest.raises(AssertionError):
        classify(torch.zeros(2, 1, 32, 32))


def test_time_budget_stops_training_and_still_saves(tmp_path):
    out = tmp_path / "budget" / "vgg.safetensors"
    provenance = train_toy_vgg(
        out, steps=100_000, batch_size=4, n_train=16, n_val=4, check_per_style=1, time_budget_s=3.0,
        work_dir=None, progress=False,
    )  # fmt: skip
    assert 1 <= provenance["steps_done"] < 100_000 and provenance["time_budget_s"] == 3.0
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["steps_done"] == provenance["steps_done"]
    assert perceptual_loss("vgg16_relu", weights=out).backbone[29] is not None


def test_cached_sets_are_reused(tmp_path):
    kwargs = {"steps": 1, "batch_size": 4, "n_train": 8, "n_val": 4, "check_per_style": 1, "progress": False}
    train_toy_vgg(tmp_path / "a.safetensors", work_dir=tmp_path / "work", **kwargs)
    cached = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert len(cached) == 2 and all(name.endswith(".pt") for name in cached)
    first = json.loads((tmp_path / "a.json").read_text())
    second = train_toy_vgg(tmp_path / "b.safetensors", work_dir=tmp_path / "work", **kwargs)
    for key in ("style_accuracy", "identity_mae", "nuisance_mae"):
        assert second["heldout"][key] == pytest.approx(first["heldout"][key], rel=1e-4), key
