"""Perceptual losses for GAN inversion (Eq. 3 and the discriminator-feature loss of Sec. IV-B).

Every loss is an ``nn.Module`` with ``set_target(img)`` (target features cached under no-grad)
and ``loss(img) -> scalar`` for a batch of images in [-1, 1]. The feature losses follow Eq. 3:
features of the hooked layers are flattened per sample, scaled by their λ, and the distance is the
sum of squared differences divided by the batch size (λ sits inside the norm, so layers weigh λ²).

Build them with :func:`perceptual_loss`. Pretrained weights are never downloaded: pass
``weights=`` (a local file) or set the environment variable of :data:`WEIGHT_ENV_VARS`; the torch
hub cache (``$TORCH_HOME/hub/checkpoints``) is also searched for the files of
:data:`HUB_CACHE_FILES`. Accepted formats: safetensors or a torch state dict (``.pth``), with
timm, torchvision or trunk-only (``features.*``) key names; fp16 tensors are cast to fp32.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .torch_files import load_torch_file

LayerKey = int | str

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG_CONV_LAYERS = (2, 7, 14, 21, 28)  # conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (pre-ReLU)
VGG_RELU_LAYERS = (3, 8, 15, 22, 29)  # the ReLUs right after them
RESNET50_LAYERS = ("conv1", "layer1.2.conv1", "layer2.3.conv1", "layer3.5.conv1", "layer4.2.conv1")
DEIT_S16_LAYERS = ("patch_embed", "blocks.0", "blocks.3", "blocks.7", "blocks.11")
DEIT_INPUT_SIZE = 224


def _table(keys: Sequence[LayerKey], values: Sequence[float]) -> dict[LayerKey, float]:
    assert len(keys) == len(values)
    return dict(zip(keys, values))


# λ tables from the authors' loss configurations, one row per (network, configuration):
# (name, configuration, layers, λ per layer). LAMBDA_TABLES maps name -> configuration -> {layer: λ}.
_DISC_BLOCKS = (1024, 512, 256, 128, 64, 32, 16, 8)
_LAMBDA_ROWS: tuple[tuple[str, str, Sequence[LayerKey], Sequence[float]], ...] = (
    ("vgg16_conv", "1024", VGG_CONV_LAYERS, (0.0002, 0.0001, 0.0001, 0.0002, 0.0005)),
    ("vgg16_conv", "256", VGG_CONV_LAYERS, (0.001, 0.0006, 0.0005, 0.0005, 0.001)),
    ("vgg16_relu", "1024", VGG_RELU_LAYERS, (0.0006, 0.0004, 0.0004, 0.0007, 0.007)),
    ("vgg16_relu", "256", VGG_RELU_LAYERS, (0.001, 0.001, 0.001, 0.002, 0.01)),
    ("vgg16_conv_random", "1024", VGG_CONV_LAYERS, (0.002, 0.003, 0.005, 0.008, 0.02)),
    ("vgg16_conv_random", "256", VGG_CONV_LAYERS, (0.01, 0.01, 0.04, 0.05, 0.1)),
    ("resnet50", "1024", RESNET50_LAYERS, (0.001, 0.003, 0.004, 0.008, 0.008)),
    ("resnet50", "256", RESNET50_LAYERS, (0.003, 0.008, 0.01, 0.03, 0.02)),
    ("deit_s16", "224", DEIT_S16_LAYERS, (0.02, 0.02, 0.02, 0.005, 0.005)),
    ("d_h", "default", (14, 21, 28), (0.0001, 0.0002, 0.0005)),
    ("discriminator", "ffhq", _DISC_BLOCKS, (0.01, 0.015, 0.015, 0.015, 0.01, 0.008, 0.008, 0.0)),
    ("discriminator", "real_face", _DISC_BLOCKS, (0.005,) * 5 + (0.004,) * 3),
)


def _lambda_tables(
    rows: Sequence[tuple[str, str, Sequence[LayerKey], Sequence[float]]],
) -> dict[str, dict[str, dict[LayerKey, float]]]:
    tables: dict[str, dict[str, dict[LayerKey, float]]] = {}
    for name, config, keys, values in rows:
        tables.setdefault(name, {})[config] = _table(keys, values)
    return tables


LAMBDA_TABLES = _lambda_tables(_LAMBDA_ROWS)
D_H_DEFAULT_LAYERS = (21, 28)  # the paper's d_h (Eq. 4); (14, 21, 28) is the authors' LSO code

WEIGHT_ENV_VARS = {
    "vgg16": "HRINV_VGG16_WEIGHTS",
    "resnet50": "HRINV_RESNET50_WEIGHTS",
    "deit_s16": "HRINV_DEIT_S16_WEIGHTS",
    "lpips_vgg": "HRINV_LPIPS_VGG16_PT",
}
HUB_CACHE_FILES = {
    "vgg16": "vgg16-397923af.pth",  # torchvision's ImageNet VGG16 (what timm 0.5.4 loaded)
    "resnet50": "resnet50_a1_0-14fe96d1.pth",  # timm's resnet50 (a1) ImageNet weights
    "deit_s16": "deit_small_patch16_224-cd65a155.pth",
    "lpips_vgg": "vgg16.pt",  # NVIDIA's TorchScript LPIPS-VGG16 (metrics/vgg16.pt)
}
_HEAD_PREFIXES = ("classifier.", "pre_logits.", "head.", "fc.", "head_dist.")


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not available locally (they are never downloaded)."""


# ----------------------------------------------------------------------------------------------
# Weight files


def _hub_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(kind: str, weights: str | os.PathLike | None) -> Path:
    """Locate the local weight file of ``kind``: ``weights``, then its env var, then the hub cache."""
    env = WEIGHT_ENV_VARS[kind]
    where = (
        f"pass weights='/path/to/{HUB_CACHE_FILES[kind]}', set the environment variable {env}=/path/to/file, "
        f"or copy the file to {_hub_cache_dir() / HUB_CACHE_FILES[kind]} (nothing is downloaded)"
    )
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{kind} weights file not found: {path}; {where}")
        return path
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"{env}={path} does not name an existing file; {where}")
        return path
    cached = _hub_cache_dir() / HUB_CACHE_FILES[kind]
    if cached.is_file():
        return cached
    raise WeightsNotFoundError(f"no {kind} weights found ({HUB_CACHE_FILES[kind]}); {where}")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch state dict as float32 CPU tensors (``module.`` prefixes dropped).

    A torch file is read by :func:`~hrinv_nb.torch_files.load_torch_file` (checked, ``weights_only``);
    a file it refuses raises :class:`~hrinv_nb.errors.CheckpointError` naming the file.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        state = load_torch_file(path, map_location="cpu")
        for wrapper in ("state_dict", "model"):
            if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
                state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key[len("module.") :] if key.startswith("module.") else key
        out[key] = value.float() if value.is_floating_point() else value
    return out


def _load_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, kind: str) -> None:
    """Copy ``state`` into ``module`` (strict): unknown non-head keys and missing keys are errors."""
    wanted = module.state_dict()
    unexpected = [k for k in state if k not in wanted and not k.startswith(_HEAD_PREFIXES)]
    missing = [k for k in wanted if k not in state]
    if unexpected or missing:
        raise ValueError(
            f"{path} is not a {kind} state dict: missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    try:
        module.load_state_dict({k: state[k] for k in wanted}, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: incompatible {kind} weights: {err}") from err


def _vgg_trunk_state(state: Mapping[str, torch.Tensor], last_index: int) -> dict[str, torch.Tensor]:
    """Map timm / torchvision / trunk-only VGG keys ``features.N.*`` to trunk keys ``N.*`` (N ≤ last)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            if index <= last_index:
                out[key[len("features.") :]] = value
        elif not key.startswith(_HEAD_PREFIXES):
            out[key] = value  # reported as unexpected by _load_into
    return out


# ----------------------------------------------------------------------------------------------
# Backbones (all frozen, in eval mode, with non-in-place activations)


def _freeze(module: nn.Module) -> nn.Module:
    """Disable in-place activations (hooked outputs stay intact), freeze, and set eval mode."""
    for sub in module.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
    return module.eval().requires_grad_(False)


def _materialise(module: nn.Module) -> nn.Module:
    """Allocate a meta-device module on the CPU (uninitialised storage; filled by the caller)."""
    return module.to_empty(device="cpu")


# The 13 convolutions of VGG16 (timm ``features.N`` indices), their stage depths and full widths.
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_STAGE_DEPTHS = (2, 2, 3, 3, 3)
VGG16_STAGE_WIDTHS = (64, 128, 256, 512, 512)


def vgg16_conv_widths(stage_widths: Sequence[int] = VGG16_STAGE_WIDTHS) -> tuple[int, ...]:
    """Per-stage widths (5) -> the output channels of each of the 13 convolutions."""
    assert len(stage_widths) == len(VGG16_STAGE_DEPTHS), f"VGG16 has 5 stages, got {stage_widths}"
    return tuple(int(w) for w, depth in zip(stage_widths, VGG16_STAGE_DEPTHS) for _ in range(depth))


def vgg16_config(conv_widths: Sequence[int]) -> list[int | str]:
    """timm ``VGG`` ``cfg`` list (widths and ``'M'`` max-pools) with the 13 given conv widths."""
    assert len(conv_widths) == len(VGG16_CONV_INDICES), f"VGG16 has 13 convolutions, got {len(conv_widths)}"
    cfg: list[int | str] = []
    k = 0
    for depth in VGG16_STAGE_DEPTHS:
        cfg += [int(w) for w in conv_widths[k : k + depth]] + ["M"]
        k += depth
    return cfg


def vgg16_widths_from_state(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """The 13 conv widths of a VGG16 state dict (keys ``features.N.weight``), read from the weight shapes.

    A convolution absent from ``state`` keeps its full width (the loader then reports it as missing
    if the trunk needs it). A full-width file gives :data:`VGG16_STAGE_WIDTHS`' widths, i.e. timm's ``vgg16``.
    """
    widths = list(vgg16_conv_widths())
    for k, index in enumerate(VGG16_CONV_INDICES):
        weight = state.get(f"features.{index}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim == 4:
            widths[k] = int(weight.shape[0])
    return tuple(widths)


def vgg16_trunk(
    last_index: int,
    *,
    weights: str | os.PathLike | None = None,
    seed: int | None = None,
    widths: Sequence[int] | None = None,
) -> nn.Sequential:
    """timm VGG16 ``features[0 .. last_index]``, loaded from ``weights`` or Kaiming-initialised from ``seed``.

    With ``seed`` given the trunk is random (``vgg16_conv_random``: Kaiming-normal fan_out/relu,
    zero bias, drawn from ``torch.Generator().manual_seed(seed)``) with the per-stage ``widths``
    (default :data:`VGG16_STAGE_WIDTHS`, timm's ``vgg16``); otherwise weights are resolved with
    :func:`resolve_weights` and the channel widths are read from the file's weight shapes, so a
    narrow trunk (the toy world's) and timm's full-width ``vgg16`` go through the same code.
    Only the trunk is materialised (no pre-logits / classifier).
    """
    from timm.models.vgg import VGG

    assert 0 <= last_index <= 30, last_index
    state: dict[str, torch.Tensor] | None = None
    if seed is not None:
        conv_widths = vgg16_conv_widths(widths if widths is not None else VGG16_STAGE_WIDTHS)
    else:
        path = resolve_weights("vgg16", weights)
        state = load_state_dict_file(path)
        conv_widths = vgg16_widths_from_state(state)
        if widths is not None and vgg16_conv_widths(widths) != conv_widths:
            raise ValueError(f"{path}: conv widths {conv_widths} differ from the requested widths {tuple(widths)}")
    with torch.device("meta"):
        full = VGG(vgg16_config(conv_widths))
    trunk = _materialise(full.features[: last_index + 1])
    if state is None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in trunk:
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                    nn.init.zeros_(layer.bias)
    else:
        _load_into(trunk, _vgg_trunk_state(state, last_index), path, "VGG16")
    return _freeze(trunk)


RESNET50_CHANNELS = (64, 128, 256, 512)  # timm ResNet ``channels`` (bottleneck planes per stage)


def resnet50_widths_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """timm ``ResNet`` width argument ``channels`` of a resnet50 state dict, read from the weight shapes.

    ``layer{i}.0.conv3.weight`` is [4 * channels[i-1], ...] (Bottleneck expansion 4); timm's plain
    7x7 stem is 64 wide whatever ``channels`` is. Returns ``{}`` for timm's full-width ``resnet50``
    (so it is built exactly as before) or where those keys are missing (the loader reports them).
    """
    keys = [f"layer{i}.0.conv3.weight" for i in range(1, 5)]
    if not all(isinstance(state.get(k), torch.Tensor) and state[k].ndim == 4 for k in keys):
        return {}
    channels = tuple(int(state[k].shape[0]) // 4 for k in keys)
    return {} if channels == RESNET50_CHANNELS else {"channels": channels}


def _timm_backbone(
    model_name: str,
    kind: str,
    weights: str | os.PathLike | None,
    arch_from_state: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]] | None = None,
) -> nn.Module:
    """A timm model without classifier, loaded from local weights (never downloaded).

    ``arch_from_state(state)`` may return extra ``timm.create_model`` arguments read from the file
    (e.g. the channel widths of a narrow resnet50, :func:`resnet50_widths_from_state`).
    """
    import timm

    path = resolve_weights(kind, weights)
    state = load_state_dict_file(path)
    arch = arch_from_state(state) if arch_from_state is not None else {}
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, **arch)
    model.reset_classifier(0)
    persistent = set(model.state_dict())
    assert all(name in persistent for name, _ in model.named_buffers()), "non-persistent buffers need an init"
    model = _materialise(model)
    _load_into(model, state, path, kind)
    return _freeze(model)


# ----------------------------------------------------------------------------------------------
# Feature extraction by forward hooks


class _StopForward(Exception):
    """Raised by the hook of the last needed layer so that deeper layers are not computed."""


def hooked_features(
    model: nn.Module, modules: Mapping[LayerKey, nn.Module], x: torch.Tensor
) -> dict[LayerKey, torch.Tensor]:
    """Run ``model(x)`` and return the outputs of ``modules`` (stopping once all have fired)."""
    out: dict[LayerKey, torch.Tensor] = {}
    pending = set(modules)

    def make_hook(key: LayerKey) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            out[key] = output
            pending.discard(key)
            if not pending:
                raise _StopForward

        return hook

    handles = [module.register_forward_hook(make_hook(key)) for key, module in modules.items()]
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if pending:
        raise RuntimeError(f"layers {sorted(map(str, pending))} were not reached in the forward pass")
    return out


def imagenet_normalise(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] -> per-channel ImageNet normalisation (timm IMAGENET_DEFAULT)."""
    mean = torch.tensor(IMAGENET_MEAN, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    return ((img + 1.0) / 2.0 - mean) / std


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def area_resize(img: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """``F.interpolate(mode='area')`` of ``img`` [B, C, H, W] to ``size``: an int gives a square (as in the
    authors' code), a pair is (H', W'). A box average when shrinking; nearest-neighbour when enlarging."""
    assert img.ndim == 4, f"expected [B,C,H,W], got {tuple(img.shape)}"
    assert isinstance(size, int) or len(size) == 2, f"size must be an int or (H, W), got {size!r}"
    return F.interpolate(img, size=_size_pair(size), mode="area")


def _check_image(img: torch.Tensor) -> None:
    assert isinstance(img, torch.Tensor) and img.ndim == 4 and img.shape[1] == 3, (
        f"expected images [B,3,H,W], got {tuple(img.shape) if isinstance(img, torch.Tensor) else type(img)}"
    )


def select_lambdas(
    table: Mapping[LayerKey, float],
    layers: Iterable[LayerKey] | None,
    lambdas: Mapping[LayerKey, float] | None,
    normalise_key: Callable[[LayerKey], LayerKey] = lambda k: k,
) -> dict[LayerKey, float]:
    """Per-layer λ: ``layers`` (default: ``lambdas``' keys, else the table's) looked up in ``lambdas`` then ``table``."""
    overrides = {normalise_key(k): float(v) for k, v in (lambdas or {}).items()}
    if layers is None:
        keys = list(overrides) if overrides else list(table)
    else:
        keys = [normalise_key(k) for k in layers]
    out = {}
    for key in keys:
        if key in overrides:
            out[key] = overrides[key]
        elif key in table:
            out[key] = float(table[key])
        else:
            raise KeyError(f"no λ for layer {key!r}: not in the table {sorted(map(str, table))}; pass lambdas=")
    if not out:
        raise ValueError("no layers selected")
    return out


def vgg_layer_index(key: LayerKey) -> int:
    """``2``, ``'2'``, ``'features_2'`` or ``'features.2'`` -> 2."""
    if isinstance(key, int):
        return key
    text = str(key)
    for prefix in ("features_", "features."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return int(text)


def block_resolution(key: LayerKey) -> int:
    """``64``, ``'64'`` or ``'b64'`` -> 64."""
    return key if isinstance(key, int) else int(str(key).lstrip("b"))


# ----------------------------------------------------------------------------------------------
# Loss modules


class PerceptualLoss(nn.Module):
    """Base: ``set_target(img)`` caches target features; ``forward(img)`` is Σ_l ‖λ_l (φ_l(img) − φ_l(target))‖² / B."""

    def __init__(
        self, name: str, lambdas: Mapping[LayerKey, float], downsample_size: int | tuple[int, int] = -1
    ) -> None:
        super().__init__()
        self.name = name
        self.lambdas: dict[LayerKey, float] = dict(lambdas)
        self.downsample_size = downsample_size
        self._target: dict[LayerKey, torch.Tensor] | None = None

    def features(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        """Features of ``img`` ([B,3,H,W] in [-1,1]) at the layers of ``self.lambdas``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Backbones stay in eval mode whatever the parent does."""
        super().train(mode)
        for child in self.children():
            child.eval()
        return self

    def set_target(self, img: torch.Tensor) -> None:
        """Compute and cache the target features (no grad)."""
        _check_image(img)
        with torch.no_grad():
            self._target = {k: v.detach() for k, v in self.features(img).items()}

    @property
    def has_target(self) -> bool:
        return self._target is not None

    def lambda_factor(self, img: torch.Tensor) -> float:
        """The factor every λ is multiplied by for an input like ``img`` (1 unless resolution-scaled)."""
        return 1.0

    def distance_terms(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        """Per-layer terms ‖λ_l (φ_l(img) − φ_l(target))‖² / B (λ times :meth:`lambda_factor`)."""
        _check_image(img)
        if self._target is None:
            raise RuntimeError(f"{self.name}: call set_target(target) before computing the loss")
        feats = self.features(img)
        batch = img.shape[0]
        factor = self.lambda_factor(img)
        terms = {}
        for key, lam in self.lambdas.items():
            lam = lam * factor
            pred, target = feats[key], self._target[key]
            if target.shape[0] not in (1, batch) or target.shape[1:] != pred.shape[1:]:
                raise ValueError(
                    f"{self.name} layer {key!r}: features {tuple(pred.shape)} do not match the target's "
                    f"{tuple(target.shape)} (same image size as the target, batch 1 or equal?)"
                )
            # λ² · Σ (φ − φ_t)², the same as Σ (λφ − λφ_t)²; mse_loss saves no extra activation for backward
            terms[key] = F.mse_loss(pred, target.expand_as(pred), reduction="sum") * (lam**2 / batch)
        return terms

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        terms = self.distance_terms(img)
        return torch.stack(list(terms.values())).sum()


class HookedFeatureLoss(PerceptualLoss):
    """Eq. 3 on a frozen backbone: ImageNet normalisation, optional area resize, hooked layer outputs."""

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        module_names: Mapping[LayerKey, str],
        lambdas: Mapping[LayerKey, float],
        downsample_size: int | tuple[int, int] = -1,
        table: str = "",
    ) -> None:
        super().__init__(name, lambdas, downsample_size)
        assert set(module_names) == set(lambdas), (module_names, lambdas)
        self.backbone = backbone
        self.module_names = dict(module_names)
        self.table = table
        self.resolution_scaled = False  # set by perceptual_loss(lambda_scale="resolution")

    def seen_size(self, img: torch.Tensor) -> tuple[int, int]:
        """(H, W) of the backbone's input for ``img``: the downsampled size, else the image's."""
        if self.downsample_size != -1 and _size_pair(self.downsample_size)[0] > 0:
            return _size_pair(self.downsample_size)
        return int(img.shape[2]), int(img.shape[3])

    def lambda_factor(self, img: torch.Tensor) -> float:
        """``resolution_lambda_scale`` of the table at the size the backbone sees (√(H·W) for a non-square
        input), when resolution-scaled; else 1. At the table's own size (the paper's) it is exactly 1."""
        if not self.resolution_scaled or self.table not in TABLE_INPUT_SIZE:
            return 1.0
        h, w = self.seen_size(img)
        return resolution_lambda_scale(self.table, math.sqrt(h * w))

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """Normalise, then (optionally) area-downsample (the authors' order: normalisation sees the full-resolution image)."""
        x = imagenet_normalise(img)
        if self.downsample_size != -1 and _size_pair(self.downsample_size)[0] > 0:
            x = area_resize(x, self.downsample_size)
        return x

    def features(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        _check_image(img)
        modules = {key: self.backbone.get_submodule(name) for key, name in self.module_names.items()}
        return hooked_features(self.backbone, modules, self.preprocess(img))


class VGGFeatureLoss(HookedFeatureLoss):
    """VGG16 trunk loss; checks that the input survives the max-pools before the deepest layer."""

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        x = super().preprocess(img)
        pools = sum(isinstance(m, nn.MaxPool2d) for m in self.backbone)
        if min(x.shape[2:]) < 2**pools:
            raise ValueError(
                f"{self.name}: input {tuple(x.shape[2:])} is too small for {pools} max-pools "
                f"(short side must be at least {2**pools} px)"
            )
        return x


class DeiTLoss(HookedFeatureLoss):
    """DeiT-S/16 features; the input is always area-resized to 224² (DeiT's fixed patch grid needs it)."""

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        return area_resize(imagenet_normalise(img), DEIT_INPUT_SIZE)

    def seen_size(self, img: torch.Tensor) -> tuple[int, int]:
        return DEIT_INPUT_SIZE, DEIT_INPUT_SIZE


class MSELoss(PerceptualLoss):
    """Mean squared error over all B·3·H·W pixels on [-1, 1] images."""

    def __init__(self) -> None:
        super().__init__("mse", {"pixels": 1.0})

    def features(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        _check_image(img)
        return {"pixels": img}

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _check_image(img)
        if self._target is None:
            raise RuntimeError("mse: call set_target(target) before computing the loss")
        return (img - self._target["pixels"]).square().mean()


class TorchScriptLPIPSLoss(PerceptualLoss):
    """NVIDIA's TorchScript LPIPS-VGG16 (``vgg16.pt``): input in [0, 255], area-downsampled when larger."""

    def __init__(self, model: torch.jit.ScriptModule, downsample_size: int = -1) -> None:
        super().__init__("lpips_vgg", {"lpips": 1.0}, downsample_size)
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def features(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        _check_image(img)
        x = (img + 1.0) * 127.5
        if self.downsample_size > 0 and x.shape[2] > self.downsample_size:
            x = area_resize(x, self.downsample_size)
        return {"lpips": self.model(x, resize_images=False, return_lpips=True)}


class DiscriminatorFeatureLoss(PerceptualLoss):
    """StyleGAN2 discriminator blocks as perceptual network, on a frozen deep copy of D."""

    def __init__(
        self, D: nn.Module, lambdas: Mapping[LayerKey, float], c: torch.Tensor | None = None, table: str = ""
    ) -> None:
        super().__init__("discriminator", lambdas)
        self.D = _freeze(copy.deepcopy(D))
        self.c = c
        self.table = table

    def features(self, img: torch.Tensor) -> dict[LayerKey, torch.Tensor]:
        from .networks import discriminator_features

        _check_image(img)
        feats = discriminator_features(self.D, img, self.c)
        missing = [key for key in self.lambdas if key not in feats]
        if missing:
            raise KeyError(f"discriminator has no blocks {missing}; it has {sorted(feats)}")
        return {key: feats[key] for key in self.lambdas}


# ----------------------------------------------------------------------------------------------
# Factory

LOSS_NAMES = (
    "vgg16_conv",
    "vgg16_relu",
    "vgg16_conv_random",
    "resnet50",
    "resnet50_random",
    "deit_s16",
    "lpips_vgg",
    "d_h",
    "mse",
    "discriminator",
)
# The image side each λ table was tuned for: "1024" tables see 1024² inputs, "256" tables 256².
TABLE_INPUT_SIZE = {"1024": 1024, "256": 256, "224": 224}


def resolution_lambda_scale(table: str, input_size: float) -> float:
    """Factor on λ that keeps a table's per-element weight when the loss input is ``input_size``² instead.

    Eq. 3 sums squares over every feature element, so at a side ``s`` instead of the table's ``S``
    the sum shrinks by (s/S)²; multiplying every λ by S/s (λ² by (S/s)²) restores the balance against
    the mean-squared-error term (λ_mse = 50), e.g. ×16 for the "1024" table on 64² toy images and
    ×8 for the "256" table on 32² inputs. Layer-relative weights are unchanged.
    """
    if table not in TABLE_INPUT_SIZE:
        raise KeyError(f"no input size known for λ table {table!r}; known: {sorted(TABLE_INPUT_SIZE)}")
    if input_size <= 0:
        raise ValueError(f"input_size must be > 0, got {input_size}")
    return TABLE_INPUT_SIZE[table] / float(input_size)


def random_resnet50(seed: int) -> nn.Module:
    """timm ``resnet50`` (no classifier) with timm's own random initialisation drawn under ``torch.manual_seed(seed)``.

    Not the paper's ImageNet ResNet50: a stand-in where no pretrained weights exist (eval mode, so
    BatchNorm uses its initial running statistics, i.e. it is the identity).
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model("resnet50", pretrained=False)
    model.reset_classifier(0)
    return _freeze(model)


def _resolution_table(downsample_size: int | tuple[int, int]) -> str:
    return "256" if _size_pair(downsample_size)[0] > 0 else "1024"


def _vgg_loss(
    name: str,
    table_name: str,
    layer_table: Mapping[LayerKey, float],
    layers: Iterable[LayerKey] | None,
    lambdas: Mapping[LayerKey, float] | None,
    downsample_size: int | tuple[int, int],
    weights: str | os.PathLike | None,
    seed: int | None,
) -> VGGFeatureLoss:
    chosen = select_lambdas(layer_table, layers, lambdas, vgg_layer_index)
    trunk = vgg16_trunk(max(chosen), weights=weights, seed=seed)
    for key in chosen:
        if not 0 <= key < len(trunk):
            raise KeyError(f"VGG16 has no features.{key}")
    return VGGFeatureLoss(name, trunk, {k: str(k) for k in chosen}, chosen, downsample_size, table_name)


def perceptual_loss(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    downsample_size: int | tuple[int, int] = -1,
    layers: Iterable[LayerKey] | None = None,
    lambdas: Mapping[LayerKey, float] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    D: nn.Module | None = None,
    blocks: Iterable[LayerKey] | None = None,
    table: str | None = None,
    c: torch.Tensor | None = None,
    lambda_scale: float | str = "resolution",
) -> PerceptualLoss:
    """Build the perceptual loss ``name`` (one of :data:`LOSS_NAMES`) on ``device``.

    ``downsample_size > 0`` area-downsamples the (normalised) input to that size and selects the
    "256" λ table instead of the "1024" one; ``layers`` picks a subset (VGG: feature indices,
    ResNet/DeiT: module names, discriminator: block resolutions); ``lambdas`` overrides λ per
    layer. ``seed`` seeds ``vgg16_conv_random``. ``discriminator`` needs ``D=`` and takes
    ``blocks=`` (default: the blocks of D with non-zero weight) and ``table=`` ('ffhq' or 'real_face').
    ``resnet50_random`` is ResNet50 randomly initialised from ``seed`` (no weights exist for it).
    ``lambda_scale``: the balance of the perceptual term against λ_mse·MSE, set here for every caller.
    ``"resolution"`` (default) multiplies every λ of the VGG16, ResNet50 and DeiT tables by
    :func:`resolution_lambda_scale` of the table at the size the backbone actually sees, computed at each
    call: Eq. 3 sums over feature elements while MSE is a mean, so a smaller input would otherwise shrink
    the perceptual term's weight (×8 on λ, ×64 on the term, for the "1024" table at 128²). At the paper's
    sizes (1024² with the "1024" table, 256² with the "256" table, DeiT's 224²) the factor is exactly 1.
    A number multiplies every λ instead (``1.0``: the tables as printed, as the authors' code uses them);
    ``mse``, ``lpips_vgg``, ``d_h`` and ``discriminator`` are never resolution-scaled.
    """
    if isinstance(lambda_scale, str):
        if lambda_scale != "resolution":
            raise ValueError(f"lambda_scale must be 'resolution' or a number > 0, got {lambda_scale!r}")
    elif not (lambda_scale > 0 and math.isfinite(lambda_scale)):
        raise ValueError(f"lambda_scale must be 'resolution' or a finite number > 0, got {lambda_scale}")
    if name in ("vgg16_conv_random", "resnet50_random", "mse", "discriminator") and weights is not None:
        raise ValueError(f"{name} takes no weights file (got weights={weights!r})")
    if name in ("vgg16_conv", "vgg16_relu", "vgg16_conv_random"):
        table_name = table or _resolution_table(downsample_size)
        random_seed = seed if name == "vgg16_conv_random" else None
        loss: PerceptualLoss = _vgg_loss(
            name, table_name, LAMBDA_TABLES[name][table_name], layers, lambdas, downsample_size, weights, random_seed
        )
    elif name == "d_h":
        chosen_layers = D_H_DEFAULT_LAYERS if layers is None and lambdas is None else layers
        loss = _vgg_loss(
            name, "default", LAMBDA_TABLES["d_h"]["default"], chosen_layers, lambdas, downsample_size, weights, None
        )
    elif name in ("resnet50", "resnet50_random"):
        table_name = table or _resolution_table(downsample_size)
        chosen = select_lambdas(LAMBDA_TABLES["resnet50"][table_name], layers, lambdas, str)
        backbone = (
            random_resnet50(seed)
            if name == "resnet50_random"
            else _timm_backbone("resnet50", "resnet50", weights, resnet50_widths_from_state)
        )
        loss = HookedFeatureLoss(name, backbone, {k: str(k) for k in chosen}, chosen, downsample_size, table_name)
    elif name == "deit_s16":
        chosen = select_lambdas(LAMBDA_TABLES[name]["224"], layers, lambdas, str)
        backbone = _timm_backbone("deit_small_patch16_224", "deit_s16", weights)
        loss = DeiTLoss(name, backbone, {k: str(k) for k in chosen}, chosen, DEIT_INPUT_SIZE, "224")
    elif name == "lpips_vgg":
        path = resolve_weights("lpips_vgg", weights)
        try:
            with warnings.catch_warnings():  # torch >= 2.9 flags TorchScript as deprecated
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(f"{path}: not a TorchScript LPIPS-VGG16 file (NVIDIA's metrics/vgg16.pt): {err}") from err
        size = downsample_size if isinstance(downsample_size, int) else _size_pair(downsample_size)[0]
        loss = TorchScriptLPIPSLoss(model, size)
    elif name == "mse":
        loss = MSELoss()
    elif name == "discriminator":
        if D is None:
            raise ValueError("perceptual_loss('discriminator') needs D=<a StyleGAN2 Discriminator>")
        table_name = table or "ffhq"
        weight_table = LAMBDA_TABLES["discriminator"][table_name]
        chosen_blocks = blocks if blocks is not None else layers
        if chosen_blocks is None and lambdas is None:
            chosen_blocks = [r for r in D.block_resolutions if weight_table.get(r, 0.0) > 0]
        chosen = select_lambdas(weight_table, chosen_blocks, lambdas, block_resolution)
        loss = DiscriminatorFeatureLoss(D, chosen, c, table_name)
    else:
        raise ValueError(f"unknown perceptual loss {name!r}; choose one of {LOSS_NAMES}")
    if lambda_scale == "resolution":
        if isinstance(loss, HookedFeatureLoss) and name != "d_h":
            loss.resolution_scaled = True
    elif lambda_scale != 1.0 and name != "mse":
        loss.lambdas = {key: lam * float(lambda_scale) for key, lam in loss.lambdas.items()}
    return loss.to(device).eval()
