"""The toy "pretrained" ResNet50: timm's resnet50 topology, narrow; loads through the resnet50 loss path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from hrinv_nb.losses import RESNET50_LAYERS, perceptual_loss
from hrinv_nb.toy.resnet import (
    TOY_RESNET_CHANNELS,
    TOY_RESNET_PATH,
    ResNetPretrainNet,
    load_toy_resnet_path,
    main,
    train_toy_resnet,
)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.delenv("HRINV_RESNET50_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m hrinv_nb\.toy\.resnet"):
        load_toy_resnet_path(tmp_path / "absent.safetensors")


def test_topology_is_timms_resnet50_narrowed():
    import timm

    net = ResNetPretrainNet(seed=0)
    with torch.device("meta"):
        full = timm.create_model("resnet50", pretrained=False)
    assert [n for n, _ in net.model.named_modules()] == [n for n, _ in full.named_modules()]
    assert [len(getattr(net.model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert net.model.layer4[2].conv3.out_channels == 4 * TOY_RESNET_CHANNELS[-1]
    for name in RESNET50_LAYERS:
        net.model.get_submodule(name)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, net.n_outputs)
    again = ResNetPretrainNet(seed=0)
    torch.testing.assert_close(again.model.layer3[0].conv2.weight, net.model.layer3[0].conv2.weight, rtol=0, atol=0)


def test_one_training_step_writes_a_file_the_loss_loads(tmp_path):
    out = tmp_path / "resnet.safetensors"
    provenance = main(
        ["--out", str(out), "--steps", "2", "--batch-size", "4", "--n-train", "8", "--n-val", "4", "--no-cache"]
    )
    assert provenance["command"].startswith("python -m hrinv_nb.toy.resnet")
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
        assert {f.get_slice(k).get_dtype() for k in keys} <= {"F16", "I64"} and "fc.weight" in keys
    loss = perceptual_loss("resnet50", weights=out)
    assert loss.backbone.layer1[0].conv3.out_channels == 4 * TOY_RESNET_CHANNELS[0]
    img = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    loss.set_target(img)
    x = (img * 0.9).requires_grad_(True)
    loss(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["steps_done"] == 2 and written["size_bytes"] == out.stat().st_size
    assert written["fp16_max_abs_diff"] < 0.1


def test_time_budget_stops_training_and_still_saves(tmp_path):
    out = tmp_path / "resnet.safetensors"
    provenance = train_toy_resnet(
        out, steps=100_000, batch_size=4, n_train=16, n_val=4, time_budget_s=3.0, work_dir=None, progress=False
    )
    assert 1 <= provenance["steps_done"] < 100_000
    assert json.loads(out.with_suffix(".json").read_text())["steps_done"] == provenance["steps_done"]
    perceptual_loss("resnet50", weights=out, downsample_size=32)


def test_shipped_file_loads_and_is_trained():
    if not TOY_RESNET_PATH.is_file():
        pytest.fail(f"shipped asset missing: {TOY_RESNET_PATH} (python -m hrinv_nb.toy.resnet rebuilds it)")
    provenance = json.loads(TOY_RESNET_PATH.with_suffix(".json").read_text())
    assert provenance["heldout"]["style_accuracy"] >= 0.95, provenance["heldout"]
    loss = perceptual_loss("resnet50", weights=TOY_RESNET_PATH)
    assert loss.backbone.layer4[2].conv3.out_channels == 4 * TOY_RESNET_CHANNELS[-1]
