"""Small files in the formats of the real assets the ``paper`` presets read, with random weights.

Used by ``tests/test_paper_presets.py``; every builder writes atomically and returns the path.

- NVIDIA StyleGAN2-ADA snapshot pickles (``G``, ``D``, ``G_ema``, ``training_set_kwargs``, ``augment_pipe``
  as NVIDIA's persistence-decorated classes pickle them; built by ``tests/test_checkpoints.py``'s builder)
  for G_s, the three fine-tuned G_t and a Style-INR-GAN (class ``StyleINRGenerator``), small: 64²,
  FFHQ's structure (8 mapping layers, 4 fp16 resolutions, conv clamp 256) at narrow widths;
- timm ``vgg16`` (``features.*``, ``pre_logits.fc1/fc2``, ``head.fc``) as safetensors, narrow; timm
  ``resnet50`` narrow (its ``channels`` are read from the weight shapes); timm ``deit_small_patch16_224``
  at full size (the loader builds that architecture only);
- torchvision ``vgg16-397923af.pth`` key names (``features.*``, ``classifier.*``) at the full trunk widths
  that LPIPS needs (a small classifier, which nobody reads);
- NVIDIA's TorchScript LPIPS ``vgg16.pt`` call signature (``model(x, resize_images=, return_lpips=)``);
- TreB1eN's ``model_ir_se50.pth`` (IR-SE-50 at full size: the architecture is fixed, about 175 MB);
- torch-fidelity's Inception-v3 state dict (``weights-inception-2015-12-05-6726825d.pth``);
- JPEG folders named like CelebA-HQ (``0.jpg``, ``1.jpg``, ..., ``10.jpg``) and style data sets.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from hrinv_nb.checkpoints import Networks
from hrinv_nb.files import atomic_write
from hrinv_nb.networks import Discriminator, Generator

RESOLUTION = 64
# FFHQ's structure (ffhq-res1024-mirror-stylegan2-noaug.pkl's init_kwargs) at 64² and narrow widths.
GENERATOR_KWARGS: dict = dict(
    z_dim=64,
    c_dim=0,
    w_dim=64,
    img_resolution=RESOLUTION,
    img_channels=3,
    mapping_kwargs={"num_layers": 8},
    synthesis_kwargs={"channel_base": 1024, "channel_max": 32, "num_fp16_res": 4, "conv_clamp": 256},
)
DISCRIMINATOR_KWARGS: dict = dict(
    c_dim=0,
    img_resolution=RESOLUTION,
    img_channels=3,
    architecture="resnet",
    channel_base=1024,
    channel_max=32,
    num_fp16_res=4,
    conv_clamp=256,
    block_kwargs={},
    mapping_kwargs={},
    epilogue_kwargs={"mbstd_group_size": 4},
)
VGG16_STAGE_WIDTHS = (8, 16, 16, 32, 32)  # a narrow timm vgg16 (the loader reads widths from the shapes)
RESNET50_CHANNELS = (8, 16, 16, 32)  # a narrow timm resnet50 (``channels``, read from the shapes)


# ----------------------------------------------------------------------------------------------- networks


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """Seed torch's global generator for a constructor that draws from it, restoring its state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def source_networks(seed: int = 0) -> Networks:
    """G (toRGB scaled so samples stay near [-1, 1], noise strengths non-zero as after training) and D."""
    with _global_seed(seed):
        G = Generator(**copy.deepcopy(GENERATOR_KWARGS))
        D = Discriminator(**copy.deepcopy(DISCRIMINATOR_KWARGS))
    with torch.no_grad():
        for name, param in G.named_parameters():
            if "torgb.weight" in name:
                param.mul_(0.2)
            if name.endswith("noise_strength"):
                param.fill_(0.05)
    return _networks(G.eval(), D.eval())


def _networks(G: nn.Module, D: nn.Module) -> Networks:
    return Networks(G=G, D=D, meta={"generator_init_kwargs": G.init_kwargs, "discriminator_init_kwargs": D.init_kwargs})


def fine_tuned(nets: Networks, seed: int, scale: float = 0.05) -> Networks:
    """A "fine-tuned" copy: the synthesis weights perturbed by seeded relative noise (mapping kept, as the
    target generators of the paper share FFHQ's mapping)."""
    G, D = copy.deepcopy(nets.G), copy.deepcopy(nets.D)
    gen = _seeded(seed)
    with torch.no_grad():
        for param in G.synthesis.parameters():
            if param.is_floating_point() and param.numel() > 1:
                param.add_(torch.randn(param.shape, generator=gen) * scale * (param.std() + 1e-3))
    return _networks(G, D)


def style_inr_networks(nets: Networks, seed: int = 0) -> Networks:
    """A Style-INR-GAN (``StyleINRGenerator``: the generator's mapping and blocks with a seeded INR head)."""
    from hrinv_nb.inr import attach_inr_head

    G = attach_inr_head(nets.G, {"hidden": 16}, seed=seed)
    return _networks(G, copy.deepcopy(nets.D))


def nvidia_pickle(path: Path, nets: Networks) -> Path:
    """``nets`` as an NVIDIA StyleGAN2-ADA snapshot pickle (``legacy.load_network_pkl``'s structure).

    NVIDIA's ``torch_utils.persistence`` and ``dnnlib.util`` are stood in for while pickling (the
    builder of ``tests/test_checkpoints.py``) and removed again; the loader needs neither.
    """
    from test_checkpoints import _install_fake_nvidia_modules, _nvidia_pickle

    with pytest.MonkeyPatch.context() as mp:
        easydict = _install_fake_nvidia_modules(mp)
        tmp = path.with_name(f".{path.name}.partial")
        _nvidia_pickle(tmp, nets, easydict, "# the module source NVIDIA embeds; never executed\n")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------- feature networks


def _save_safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp))


def _save_torch(path: Path, obj: object) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _kaiming_convs(module: nn.Module, seed: int) -> nn.Module:
    gen = _seeded(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=gen)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return module


def timm_vgg16(path: Path, stage_widths: Sequence[int] = VGG16_STAGE_WIDTHS, seed: int = 1) -> Path:
    """timm's ``vgg16`` class and key names (``features.N``, ``pre_logits.fc1/fc2``, ``head.fc``), narrow."""
    from timm.models.vgg import VGG

    from hrinv_nb.losses import vgg16_config, vgg16_conv_widths

    model = VGG(vgg16_config(vgg16_conv_widths(stage_widths)), num_classes=10, mlp_ratio=1 / 512)
    return _save_safetensors(path, _kaiming_convs(model, seed).state_dict())


def timm_resnet50(path: Path, channels: Sequence[int] = RESNET50_CHANNELS, seed: int = 2) -> Path:
    """timm's ``resnet50`` (its key names, BatchNorm statistics included) with narrow ``channels``."""
    import timm

    with _global_seed(seed):
        model = timm.create_model("resnet50", pretrained=False, channels=tuple(channels), num_classes=10)
    return _save_safetensors(path, model.state_dict())


def timm_deit_s16(path: Path, seed: int = 3) -> Path:
    """timm's ``deit_small_patch16_224`` at full size (22M parameters, random)."""
    import timm

    with _global_seed(seed):
        model = timm.create_model("deit_small_patch16_224", pretrained=False)
    return _save_safetensors(path, model.state_dict())


def torchvision_vgg16(path: Path, seed: int = 4) -> Path:
    """torchvision's ``vgg16-397923af.pth`` key names: the full-width trunk (``features.N``, which LPIPS
    copies layer by layer) and a small ``classifier.{0,3,6}`` (unused here; the real one is 124M)."""
    from hrinv_nb.losses import vgg16_config, vgg16_conv_widths

    gen = _seeded(seed)
    state: dict[str, torch.Tensor] = {}
    index, in_ch = 0, 3
    for item in vgg16_config(vgg16_conv_widths()):
        if item == "M":
            index += 1
            continue
        weight = torch.randn(int(item), in_ch, 3, 3, generator=gen) * (2.0 / (9 * int(item))) ** 0.5
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = weight, torch.zeros(int(item))
        index, in_ch = index + 2, int(item)  # conv, ReLU
    for k, (o, i) in zip((0, 3, 6), ((16, 32), (16, 16), (10, 16))):
        state[f"classifier.{k}.weight"] = torch.randn(o, i, generator=gen) * 0.1
        state[f"classifier.{k}.bias"] = torch.zeros(o)
    return _save_torch(path, state)


class _TorchScriptLPIPS(nn.Module):
    """NVIDIA's ``metrics/vgg16.pt`` interface: images in [0, 255]; with ``return_lpips`` the per-image
    vector of unit-normalised features, whose squared distance is the LPIPS distance. A narrow VGG here."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.convs = _kaiming_convs(
            nn.ModuleList([nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)]), seed
        )

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        x = x / 127.5 - 1.0
        if resize_images:
            x = F.interpolate(x, size=(224, 224), mode="area")
        parts = []
        for conv in self.convs:
            x = F.relu(conv(x))
            f = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) if return_lpips else x
            parts.append(f.flatten(1) / float(x.shape[2] * x.shape[3]) ** 0.5)
            x = F.max_pool2d(x, 2)
        return torch.cat(parts, dim=1)


def lpips_torchscript(path: Path, seed: int = 5) -> Path:
    """A TorchScript archive with the call signature of NVIDIA's LPIPS ``vgg16.pt``."""
    with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated; NVIDIA's file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(_TorchScriptLPIPS(seed).eval())
    return atomic_write(path, lambda tmp: scripted.save(tmp))


def arcface_ir_se50(path: Path, seed: int = 6) -> Path:
    """TreB1eN/InsightFace_Pytorch's ``model_ir_se50.pth``: a plain state dict of IR-SE-50 (random)."""
    from hrinv_nb.identity import IRSE50

    with _global_seed(seed):
        model = IRSE50()
    return _save_torch(path, model.state_dict())


def inception_weights(path: Path, seed: int = 7) -> Path:
    """torch-fidelity's Inception-v3 feature extractor as a state dict (random, variance-keeping init)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with pytest.MonkeyPatch.context() as mp:  # build the architecture without fetching its weights
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        with _global_seed(seed):
            model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    gen = _seeded(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
    return _save_torch(path, model.state_dict())


# ------------------------------------------------------------------------------------------------- images


def face_like(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB uint8 picture [H, W, 3]: a seeded background gradient and a bright ellipse ("a face")."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    base = rng.uniform(0.1, 0.6, size=3)
    slope = rng.uniform(-0.3, 0.3, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    cy, cx = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    ry, rx = rng.uniform(0.25, 0.35), rng.uniform(0.18, 0.28) * height / width
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img[inside] = rng.uniform(0.55, 0.95, size=3)
    img += rng.normal(0.0, 0.03, size=img.shape)  # sensor-like noise: JPEG has detail to keep
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """``pixels`` as a JPEG (``.jpg``) or PNG (by suffix), written atomically."""
    buffer = io.BytesIO()
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def numbered_folder(folder: Path, count: int, size: int = 128, seed: int = 0, suffix: str = ".jpg") -> Path:
    """``count`` images ``0<suffix>`` ... ``<count-1><suffix>`` (CelebA-HQ's naming), each ``size``²."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        write_image(folder / f"{k}{suffix}", face_like(size, size, seed * 10_000 + k))
    return folder
