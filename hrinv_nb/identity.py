"""Face-identity embedders for ID retrieval: ArcFace IR-SE-50 (real faces), pluggable others.

``IRSE50`` is the architecture of TreB1eN/InsightFace_Pytorch's ``model_ir_se50.pth`` (a plain
state dict), re-written here with the same module names so the file loads with ``strict=True``.
Preprocessing follows the authors' evaluation code: images in [-1, 1], the whole image resized to 112x112 with bilinear
antialiasing (no detection or crop), L2-normalised 512-d embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .torch_files import load_torch_file

ARCFACE_ENV = "HRINV_ARCFACE_WEIGHTS"
Embedder = Callable[[torch.Tensor], torch.Tensor]


class SEModule(nn.Module):
    """Squeeze-and-excitation with 1x1 convolutions (names fc1, fc2 as in the original)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN -> SE, plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE50(nn.Module):
    """ArcFace IR-SE-50 backbone: 112x112 RGB in [-1, 1] -> unit-norm 512-d embedding."""

    UNITS = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))

    def __init__(self, drop_ratio: float = 0.6) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        for in_c, depth, n in self.UNITS:
            units.append(BottleneckIRSE(in_c, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1:] == (3, 112, 112), f"IR-SE-50 expects [B,3,112,112], got {tuple(x.shape)}"
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, dim=1)


def arcface_preprocess(img: torch.Tensor) -> torch.Tensor:
    """The authors' preprocessing: [-1, 1] images, whole image resized to 112x112 (bilinear, antialias) unless already 112."""
    assert img.ndim == 4 and img.shape[1] == 3, f"expected [B,3,H,W], got {tuple(img.shape)}"
    if tuple(img.shape[-2:]) != (112, 112):
        img = F.interpolate(img, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
    return img


def load_arcface(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> IRSE50:
    """IR-SE-50 with the user's local ``model_ir_se50.pth`` (argument or ``HRINV_ARCFACE_WEIGHTS``).

    The file is read by :func:`~hrinv_nb.torch_files.load_torch_file` (checked, ``weights_only``).
    """
    path = weights or os.environ.get(ARCFACE_ENV)
    hint = (
        f"Download nothing here: put TreB1eN/InsightFace_Pytorch's model_ir_se50.pth somewhere local and pass "
        f"weights=... or set {ARCFACE_ENV}=/path/to/model_ir_se50.pth"
    )
    if path is None:
        raise FileNotFoundError(f"no ArcFace weights given. {hint}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ArcFace weights not found: {path}. {hint}")
    state = load_torch_file(path, map_location="cpu")
    model = IRSE50()
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)


def arcface_embedder(model: IRSE50, batch_size: int = 32) -> Embedder:
    """An embedder function ``img [B,3,H,W] in [-1,1] -> [B,512]`` around a loaded IR-SE-50."""

    def embed(img: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        out = []
        with torch.no_grad():
            for i in range(0, img.shape[0], batch_size):
                out.append(model(arcface_preprocess(img[i : i + batch_size].to(device))).cpu())
        return torch.cat(out)

    return embed
