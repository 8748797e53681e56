"""Perceptual losses: layers, λ tables, downsampling, weights, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from hrinv_nb.losses import (
    LAMBDA_TABLES,
    WeightsNotFoundError,
    area_resize,
    imagenet_normalise,
    perceptual_loss,
    vgg16_trunk,
)

WEIGHT_ENV_VARS = ("HRINV_VGG16_WEIGHTS", "HRINV_RESNET50_WEIGHTS", "HRINV_DEIT_S16_WEIGHTS", "HRINV_LPIPS_VGG16_PT")


@pytest.fixture(autouse=True)
def no_local_weights(monkeypatch, tmp_path):
    """Every test starts with no env var and an empty torch hub cache."""
    for name in WEIGHT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _images(batch: int = 1, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """A random VGG16 trunk state dict with timm/torchvision key names ``features.N.*``."""
    trunk = vgg16_trunk(30, seed=123)
    return {f"features.{k}": v.clone() for k, v in trunk.state_dict().items()}


@pytest.fixture(scope="module")
def vgg_files(vgg_state, tmp_path_factory) -> dict[str, str]:
    """The same trunk as a timm-style fp16 safetensors, a torchvision-style .pth and a trunk-only file."""
    folder = tmp_path_factory.mktemp("vgg_weights")
    timm_style = {k: v.half() for k, v in vgg_state.items()}
    timm_style |= {
        "pre_logits.fc1.weight": torch.zeros(8, 4),
        "head.fc.weight": torch.zeros(10, 8),
        "head.fc.bias": torch.zeros(10),
    }
    torchvision_style = dict(vgg_state) | {
        "classifier.0.weight": torch.zeros(8, 4),
        "classifier.6.bias": torch.zeros(10),
    }
    paths = {
        "timm": str(folder / "vgg16.tv_in1k.safetensors"),
        "torchvision": str(folder / "vgg16-397923af.pth"),
        "trunk": str(folder / "vgg16_trunk.safetensors"),
    }
    save_file(timm_style, paths["timm"])
    torch.save(torchvision_style, paths["torchvision"])
    save_file(dict(vgg_state), paths["trunk"])
    return paths


# ---------------------------------------------------------------------------------------------
# λ tables and layer selection


def test_vgg_conv_tables_follow_downsampling(vgg_files):
    full = perceptual_loss("vgg16_conv", weights=vgg_files["trunk"])
    assert full.lambdas == {2: 0.0002, 7: 0.0001, 14: 0.0001, 21: 0.0002, 28: 0.0005}
    assert full.downsample_size == -1
    down = perceptual_loss("vgg16_conv", weights=vgg_files["trunk"], downsample_size=256)
    assert down.lambdas == {2: 0.001, 7: 0.0006, 14: 0.0005, 21: 0.0005, 28: 0.001}
    assert down.downsample_size == 256


def test_relu_and_random_tables():
    relu_table = LAMBDA_TABLES["vgg16_relu"]
    assert relu_table["1024"] == {3: 0.0006, 8: 0.0004, 15: 0.0004, 22: 0.0007, 29: 0.007}
    assert relu_table["256"] == {3: 0.001, 8: 0.001, 15: 0.001, 22: 0.002, 29: 0.01}
    rand = perceptual_loss("vgg16_conv_random")
    assert rand.lambdas == {2: 0.002, 7: 0.003, 14: 0.005, 21: 0.008, 28: 0.02}
    assert perceptual_loss("vgg16_conv_random", downsample_size=32).lambdas == {
        2: 0.01,
        7: 0.01,
        14: 0.04,
        21: 0.05,
        28: 0.1,
    }


def test_layer_subset_and_lambda_override():
    loss = perceptual_loss("vgg16_conv_random", layers=["features_2", 7], lambdas={7: 0.5})
    assert loss.lambdas == {2: 0.002, 7: 0.5}
    assert len(loss.backbone) == 8  # the trunk stops at features.7
    only = perceptual_loss("vgg16_conv_random", lambdas={14: 1.0})
    assert only.lambdas == {14: 1.0} and len(only.backbone) == 15
    with pytest.raises(KeyError, match="no λ for layer 5"):
        perceptual_loss("vgg16_conv_random", layers=[5])


def test_d_h_default_and_authors_variant(vgg_files):
    paper = perceptual_loss("d_h", weights=vgg_files["trunk"])
    assert paper.lambdas == {21: 0.0002, 28: 0.0005}
    code = perceptual_loss("d_h", weights=vgg_files["trunk"], layers=[14, 21, 28])
    assert code.lambdas == {14: 0.0001, 21: 0.0002, 28: 0.0005}


# ---------------------------------------------------------------------------------------------
# Features, distance, gradients


def test_vgg_feature_shapes_and_no_classifier():
    loss = perceptual_loss("vgg16_conv_random")
    feats = loss.features(_images(2))
    expected = {2: (2, 64, 64, 64), 7: (2, 128, 32, 32), 14: (2, 256, 16, 16), 21: (2, 512, 8, 8), 28: (2, 512, 4, 4)}
    assert {k: tuple(v.shape) for k, v in feats.items()} == expected
    assert len(loss.backbone) == 29
    assert not any(isinstance(m, nn.Linear) for m in loss.modules())


def test_features_are_the_conv_outputs():
    loss = perceptual_loss("vgg16_conv_random", layers=[2, 7])
    img = _images()
    x = imagenet_normalise(img)
    direct = {}
    for index, layer in enumerate(loss.backbone):
        x = layer(x)
        direct[index] = x
    feats = loss.features(img)
    torch.testing.assert_close(feats[2], direct[2])
    torch.testing.assert_close(feats[7], direct[7])
    assert feats[2].min() < 0  # pre-ReLU: not overwritten by an in-place ReLU


def test_distance_is_lambda_scaled_sum_of_squares_over_batch():
    loss = perceptual_loss("vgg16_conv_random", lambda_scale=1.0)  # the tables as printed (Eq. 3 itself)
    target, img = _images(1, seed=1), _images(3, seed=2)
    loss.set_target(target)
    f_img, f_tgt = loss.features(img), loss.features(target)
    expected = sum(lam**2 * (f_img[k] - f_tgt[k]).square().sum() for k, lam in loss.lambdas.items()) / 3
    torch.testing.assert_close(loss(img), expected, rtol=1e-5, atol=0)
    flat = torch.cat([(loss.lambdas[k] * f_img[k]).flatten(1) for k in loss.lambdas], 1)
    flat_t = torch.cat([(loss.lambdas[k] * f_tgt[k]).flatten(1) for k in loss.lambdas], 1)
    torch.testing.assert_close(
        loss(img), F.mse_loss(flat, flat_t.expand_as(flat), reduction="sum") / 3, rtol=1e-5, atol=0
    )
    assert loss(target).item() == 0.0


def test_gradients_reach_the_image_not_the_backbone():
    loss = perceptual_loss("vgg16_conv_random")
    loss.set_target(_images(seed=1))
    img = _images(seed=2).requires_grad_(True)
    loss(img).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())
    loss.train()
    assert not loss.backbone.training


def test_loss_needs_a_target_and_checks_shapes():
    loss = perceptual_loss("vgg16_conv_random", layers=[2])
    with pytest.raises(RuntimeError, match="set_target"):
        loss(_images())
    loss.set_target(_images(1, 64, 64))
    with pytest.raises(ValueError, match="do not match"):
        loss(_images(1, 48, 48))
    with pytest.raises(AssertionError):
        loss(torch.zeros(1, 64, 64))


def test_non_square_images_run_at_full_resolution():
    loss = perceptual_loss("vgg16_conv_random")
    target = _images(1, 48, 112)
    loss.set_target(target)
    feats = loss.features(target)
    assert tuple(feats[2].shape[2:]) == (48, 112) and tuple(feats[28].shape[2:]) == (3, 7)
    img = _images(1, 48, 112, seed=3).requires_grad_(True)
    loss(img).backward()
    assert img.grad.shape == img.shape


def test_downsampling_is_area_after_normalisation():
    loss = perceptual_loss("vgg16_conv_random", downsample_size=32)
    img = _images()
    torch.testing.assert_close(loss.preprocess(img), F.interpolate(imagenet_normalise(img), size=(32, 32), mode="area"))
    assert loss.features(img)[2].shape[2:] == (32, 32)
    assert area_resize(_images(1, 48, 112), 32).shape[2:] == (32, 32)  # an int forces a square


def test_downsampled_loss_is_blind_to_the_top_band():
    """A ±δ checkerboard averages to zero over 2×2 cells: the 2× area-downsampled loss cannot see it."""
    target = _images(seed=4) * 0.5
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = 0.2 * (((yy + xx) % 2) * 2 - 1).float()
    perturbed = target + checker
    down = perceptual_loss("vgg16_conv_random", downsample_size=32)
    full = perceptual_loss("vgg16_conv_random")
    down.set_target(target)
    full.set_target(target)
    assert down(perturbed).item() < 1e-9 * full(perturbed).item() + 1e-10
    assert full(perturbed).item() > 0


def test_vgg_minimum_input_size():
    loss = perceptual_loss("vgg16_conv_random")
    with pytest.raises(ValueError, match="too small"):
        loss.set_target(_images(1, 8, 64))


def test_conv_and_relu_features_differ(vgg_files):
    conv = perceptual_loss("vgg16_conv", weights=vgg_files["trunk"])
    relu = perceptual_loss("vgg16_relu", weights=vgg_files["trunk"])
    assert relu.lambdas == {3: 0.0006, 8: 0.0004, 15: 0.0004, 22: 0.0007, 29: 0.007}
    img = _images()
    f_conv, f_relu = conv.features(img), relu.features(img)
    for conv_key, relu_key in zip((2, 7, 14, 21, 28), (3, 8, 15, 22, 29)):
        assert f_conv[conv_key].min() < 0 <= f_relu[relu_key].min()
        assert not torch.allclose(f_conv[conv_key], f_relu[relu_key])
        torch.testing.assert_close(F.relu(f_conv[conv_key]), f_relu[relu_key])


# ---------------------------------------------------------------------------------------------
# Weights: files, key mapping, env vars, random init


def test_weight_formats_load_the_same_trunk(vgg_files, vgg_state):
    img = _images()
    feats = {}
    for kind, path in vgg_files.items():
        loss = perceptual_loss("vgg16_conv", weights=path)
        assert loss.backbone[28].weight.dtype == torch.float32
        feats[kind] = loss.features(img)[28]
    torch.testing.assert_close(feats["trunk"], feats["torchvision"])
    torch.testing.assert_close(feats["trunk"], feats["timm"], atol=5e-2, rtol=5e-2)  # fp16 storage
    loss = perceptual_loss("vgg16_conv", weights=vgg_files["trunk"])
    torch.testing.assert_close(loss.backbone[0].weight, vgg_state["features.0.weight"])


def test_weights_from_env_var(vgg_files, monkeypatch):
    monkeypatch.setenv("HRINV_VGG16_WEIGHTS", vgg_files["torchvision"])
    loss = perceptual_loss("vgg16_conv", layers=[2])
    assert loss.lambdas == {2: 0.0002}


def test_missing_weights_name_the_env_var_and_the_file(tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match="HRINV_VGG16_WEIGHTS.*vgg16-397923af.pth"):
        perceptual_loss("vgg16_conv")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        perceptual_loss("vgg16_conv", weights=tmp_path / "missing.pth")
    monkeypatch.setenv("HRINV_RESNET50_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match="HRINV_RESNET50_WEIGHTS.*gone.pth"):
        perceptual_loss("resnet50")
    with pytest.raises(FileNotFoundError, match="HRINV_DEIT_S16_WEIGHTS"):
        perceptual_loss("deit_s16")


def test_hub_cache_is_searched(vgg_files, tmp_path):
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "vgg16-397923af.pth").symlink_to(vgg_files["torchvision"])
    assert perceptual_loss("vgg16_conv", layers=[2]).lambdas == {2: 0.0002}


def test_wrong_state_dict_is_rejected(tmp_path, vgg_state):
    bad = tmp_path / "bad.pth"
    torch.save({"encoder.weight": torch.zeros(3)} | dict(vgg_state), bad)
    with pytest.raises(ValueError, match="unexpected keys.*encoder.weight"):
        perceptual_loss("vgg16_conv", weights=bad)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in vgg_state.items() if not k.startswith("features.28")}, partial)
    with pytest.raises(ValueError, match="missing keys.*28.weight"):
        perceptual_loss("vgg16_conv", weights=partial)
    assert perceptual_loss("vgg16_conv", weights=partial, layers=[2, 21]).lambdas == {2: 0.0002, 21: 0.0002}


def test_random_vgg_is_seeded_kaiming():
    a = perceptual_loss("vgg16_conv_random", seed=7, layers=[28]).backbone
    b = perceptual_loss("vgg16_conv_random", seed=7, layers=[28]).backbone
    c = perceptual_loss("vgg16_conv_random", seed=8, layers=[28]).backbone
    torch.testing.assert_close(a[28].weight, b[28].weight, rtol=0, atol=0)
    assert not torch.equal(a[28].weight, c[28].weight)
    for layer in a:
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.weight.shape[0] * 9
            std = layer.weight.std().item()
            assert abs(std / math.sqrt(2.0 / fan_out) - 1) < 0.05
            assert torch.count_nonzero(layer.bias) == 0


# ---------------------------------------------------------------------------------------------
# Other backbones


def test_resnet50_from_a_torchvision_style_file(tmp_path):
    import timm

    model = timm.create_model("resnet50", pretrained=False)
    path = tmp_path / "resnet50.pth"
    torch.save(model.state_dict(), path)  # includes fc.weight / fc.bias (ignored)
    loss = perceptual_loss("resnet50", weights=path)
    assert loss.lambdas == dict(
        zip(
            ("conv1", "layer1.2.conv1", "layer2.3.conv1", "layer3.5.conv1", "layer4.2.conv1"),
            (0.001, 0.003, 0.004, 0.008, 0.008),
        )
    )
    assert perceptual_loss("resnet50", weights=path, downsample_size=256).lambdas["layer2.3.conv1"] == 0.01
    img = _images()
    feats = loss.features(img)
    model.eval()
    torch.testing.assert_close(feats["conv1"], model.conv1(imagenet_normalise(img)))
    assert feats["layer4.2.conv1"].shape == (1, 512, 2, 2)
    loss.set_target(_images(seed=5))
    img.requires_grad_(True)
    loss(img).backward()
    assert img.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())


def test_deit_always_sees_224(tmp_path):
    import timm

    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    path = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loss = perceptual_loss("deit_s16", weights=path)
    assert loss.lambdas == {
        "patch_embed": 0.02,
        "blocks.0": 0.02,
        "blocks.3": 0.02,
        "blocks.7": 0.005,
        "blocks.11": 0.005,
    }
    small, large = _images(1, 64, 64), _images(1, 96, 160)
    for img in (small, large):
        feats = loss.features(img)
        assert feats["patch_embed"].shape == (1, 196, 384)
        assert feats["blocks.11"].shape == (1, 197, 384)
    loss.set_target(small)
    assert loss(small).item() == 0.0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_lpips_torchscript_from_env(tmp_path, monkeypatch):
    class FakeLPIPS(nn.Module):
        """Same call signature as NVIDIA's vgg16.pt; returns per-image feature vectors."""

        def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
            return F.adaptive_avg_pool2d(x, 4).flatten(1) / 255.0

    path = tmp_path / "vgg16.pt"
    torch.jit.script(FakeLPIPS()).save(str(path))
    with pytest.raises(FileNotFoundError, match="HRINV_LPIPS_VGG16_PT.*vgg16.pt"):
        perceptual_loss("lpips_vgg")
    monkeypatch.setenv("HRINV_LPIPS_VGG16_PT", str(path))
    loss = perceptual_loss("lpips_vgg", downsample_size=32)
    target, img = _images(seed=1), _images(seed=2)
    loss.set_target(target)
    expected = (
        F.adaptive_avg_pool2d(area_resize((img + 1) * 127.5, 32), 4)
        - F.adaptive_avg_pool2d(area_resize((target + 1) * 127.5, 32), 4)
    ).square().sum() / 255.0**2
    torch.testing.assert_close(loss(img), expected)


def test_mse_is_the_mean_squared_error():
    loss = perceptual_loss("mse")
    target, img = _images(seed=1), _images(2, seed=2)
    loss.set_target(target)
    torch.testing.assert_close(loss(img), F.mse_loss(img, target.expand_as(img)))


def test_unknown_loss_name_and_misplaced_weights(tmp_path):
    with pytest.raises(ValueError, match="unknown perceptual loss"):
        perceptual_loss("vgg19")
    with pytest.raises(ValueError, match="takes no weights"):
        perceptual_loss("vgg16_conv_random", weights=tmp_path / "x.pth")


# ---------------------------------------------------------------------------------------------
# The discriminator as perceptual network


@pytest.fixture(scope="module")
def tiny_D():
    from hrinv_nb.networks import Discriminator

    torch.manual_seed(0)
    return Discriminator(c_dim=0, img_resolution=64, img_channels=3, channel_base=4096, channel_max=128)


def test_discriminator_blocks_and_weights(tiny_D):
    from hrinv_nb.networks import discriminator_features

    default = perceptual_loss("discriminator", D=tiny_D)
    assert default.lambdas == {64: 0.01, 32: 0.008, 16: 0.008}  # the 'ffhq' table; b8 has weight 0
    one = perceptual_loss("discriminator", D=tiny_D, blocks=["b32"])
    assert one.lambdas == {32: 0.008}
    real = perceptual_loss("discriminator", D=tiny_D, blocks=[64, 8], table="real_face")
    assert real.lambdas == {64: 0.005, 8: 0.004}
    target, img = _images(seed=1), _images(seed=2)
    real.set_target(target)
    ft, fi = discriminator_features(tiny_D, target), discriminator_features(tiny_D, img)
    expected = 0.005**2 * (fi[64] - ft[64]).square().sum() + 0.004**2 * (fi[8] - ft[8]).square().sum()
    torch.testing.assert_close(real(img), expected, rtol=1e-5, atol=0)


def test_discriminator_loss_leaves_D_untouched(tiny_D):
    loss = perceptual_loss("discriminator", D=tiny_D, blocks=[16])
    assert all(p.requires_grad for p in tiny_D.parameters())
    loss.set_target(_images(seed=1))
    img = _images(seed=2).requires_grad_(True)
    loss(img).backward()
    assert img.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_D.parameters()) and all(p.grad is None for p in loss.parameters())
    with pytest.raises(ValueError, match="needs D"):
        perceptual_loss("discriminator")


# ---------------------------------------------------------------------------------------------
# Narrow trunks (the toy world's VGG16 and ResNet50) load through the code of the real weights


def test_narrow_vgg16_file_loads_with_widths_from_its_shapes(tmp_path):
    narrow = vgg16_trunk(30, seed=5, widths=(8, 16, 32, 64, 64))
    path = tmp_path / "narrow_vgg.safetensors"
    state = {f"features.{k}": v.half() for k, v in narrow.state_dict().items()}
    save_file(state | {"head.weight": torch.zeros(4, 64), "head.bias": torch.zeros(4)}, str(path))
    for name in ("vgg16_conv", "vgg16_relu", "d_h"):
        loss = perceptual_loss(name, weights=path)
        assert loss.backbone[0].out_channels == 8 and loss.backbone[21].out_channels == 64, name
    loss = perceptual_loss("vgg16_conv", weights=path)
    torch.testing.assert_close(loss.backbone[28].weight, narrow[28].weight.half().float())
    img = _images(height=128, width=128)
    loss.set_target(img)
    x = (img * 0.9).requires_grad_(True)
    loss(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ from the requested widths"):
        vgg16_trunk(30, weights=path, widths=(64, 128, 256, 512, 512))


def test_full_width_vgg16_is_timms(vgg_files):
    import timm

    with torch.device("meta"):
        reference = timm.create_model("vgg16", pretrained=False).features
    loaded = perceptual_loss("vgg16_conv", weights=vgg_files["timm"]).backbone
    assert repr(loaded) == repr(reference[:29]).replace("inplace=True", "")  # hooked ReLUs are not in place
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {
        k: v.shape for k, v in reference[:29].state_dict().items()
    }


def test_narrow_resnet50_file_loads_through_the_resnet50_path(tmp_path):
    import timm

    from hrinv_nb.losses import RESNET50_LAYERS, resnet50_widths_from_state

    model = timm.create_model("resnet50", pretrained=False, channels=(8, 16, 32, 64), num_classes=7).eval()
    path = tmp_path / "narrow_resnet50.safetensors"
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_file(state, str(path))
    assert resnet50_widths_from_state(state) == {"channels": (8, 16, 32, 64)}
    assert resnet50_widths_from_state(timm.create_model("resnet50", pretrained=False).state_dict()) == {}
    loss = perceptual_loss("resnet50", weights=path)
    assert loss.backbone.layer4[2].conv3.out_channels == 256 and loss.backbone.num_classes == 0
    assert set(loss.lambdas) == set(RESNET50_LAYERS)
    img = _images(height=128, width=128)
    with torch.no_grad():
        expected = model.layer4[2].conv1(
            model.layer4[:2](
                model.layer3(
                    model.layer2(
                        model.layer1(model.maxpool(model.act1(model.bn1(model.conv1(imagenet_normalise(img))))))
                    )
                )
            )
        )
    feats = loss.features(img)
    torch.testing.assert_close(feats["layer4.2.conv1"], expected, atol=5e-2, rtol=5e-2)  # fp16 storage
    loss.set_target(img)
    assert torch.isfinite(loss(img * 0.9)) and loss(img * 0.9) > 0


@pytest.mark.parametrize("size, down, factor", [(64, -1, 16.0), (32, -1, 32.0), (64, 32, 8.0)])
def test_resolution_default_keeps_the_per_element_weight(size, down, factor):
    # Eq. 3 sums over feature elements while λ_mse·MSE is a mean: the default multiplies λ by the table's size
    # over the side the backbone sees ("1024" full-resolution table, "256" when downsampled), λ² on the term.
    printed = perceptual_loss("vgg16_conv_random", downsample_size=down, lambda_scale=1.0)
    auto = perceptual_loss("vgg16_conv_random", downsample_size=down)
    target, img = _images(1, size, size, seed=1), _images(2, size, size, seed=2)
    printed.set_target(target)
    auto.set_target(target)
    assert auto.lambda_factor(img) == factor
    torch.testing.assert_close(auto(img), printed(img) * factor**2, rtol=1e-5, atol=0)


def test_resolution_factor_is_one_at_the_papers_sizes_and_for_non_square_uses_the_area():
    meta = torch.empty(1, 3, 1024, 1024, device="meta")
    assert perceptual_loss("vgg16_conv_random").lambda_factor(meta) == 1.0
    assert perceptual_loss("vgg16_conv_random", downsample_size=256).lambda_factor(meta) == 1.0
    wide = torch.empty(1, 3, 128, 512, device="meta")
    assert perceptual_loss("vgg16_conv_random").lambda_factor(wide) == 1024 / 256  # sqrt(128 * 512) = 256
    assert perceptual_loss("mse").lambda_factor(wide) == 1.0
    with pytest.raises(ValueError, match="resolution"):
        perceptual_loss("vgg16_conv_random", lambda_scale="paper")
    with pytest.raises(ValueError):
        perceptual_loss("vgg16_conv_random", lambda_scale=float("nan"))
