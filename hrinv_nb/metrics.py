"""Reconstruction metrics (PSNR, SSIM, LPIPS, as the paper reports them) and high-frequency measures.

The spectral primitives (:func:`residual_band_power`, :func:`band_power`) live in
:mod:`hrinv_nb.spectral`, which documents the frequency conventions; they are re-exported here.
All functions take ``(img, target)`` tensors ``[B, 3, H, W]`` in [-1, 1] and return a float
(the mean over the batch). PSNR and SSIM use scikit-image on uint8 images (rounded, data range 255).
LPIPS uses the ``lpips`` package (``net='vgg'``, v0.1) and needs torchvision's ImageNet VGG16
weights ``vgg16-397923af.pth`` locally (``weights=``, env ``HRINV_TORCHVISION_VGG16`` or the torch
hub cache); without them it raises :class:`MetricUnavailable` instead of downloading or guessing.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .images import to_uint8
from .spectral import band_power, relative_band_power, residual_band_power  # noqa: F401 (band_power: public here too)

TORCHVISION_VGG16_ENV = "HRINV_TORCHVISION_VGG16"
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (e.g. its network weights are not available locally)."""


def _pairs(img: torch.Tensor, target: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-sample uint8 ``[H, W, 3]`` pairs; checks that shapes match."""
    assert img.ndim == 4 and img.shape[1] == 3, f"expected [B,3,H,W], got {tuple(img.shape)}"
    assert img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    return [(to_uint8(img[i]), to_uint8(target[i])) for i in range(img.shape[0])]


def psnr(img: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB (skimage, uint8, data range 255); ``inf`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    values = []
    for a, b in _pairs(img, target):
        if np.array_equal(a, b):
            values.append(float("inf"))
        else:
            values.append(float(peak_signal_noise_ratio(b, a, data_range=255)))
    return float(np.mean(values))


def ssim(img: torch.Tensor, target: torch.Tensor) -> float:
    """Structural similarity (skimage, uint8, data range 255, channel axis 2, default 7×7 window)."""
    from skimage.metrics import structural_similarity

    values = [float(structural_similarity(b, a, channel_axis=2, data_range=255)) for a, b in _pairs(img, target)]
    return float(np.mean(values))


def _torchvision_vgg16_path(weights: str | os.PathLike | None) -> Path:
    """Local torchvision VGG16 ImageNet weights, or :class:`MetricUnavailable`."""
    where = (
        f"pass weights=, set {TORCHVISION_VGG16_ENV}=/path/to/{TORCHVISION_VGG16_FILE}, or copy it to "
        f"{Path(torch.hub.get_dir()) / 'checkpoints' / TORCHVISION_VGG16_FILE}"
    )
    candidates = [weights, os.environ.get(TORCHVISION_VGG16_ENV) or None]
    for candidate in candidates:
        if candidate is not None:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise MetricUnavailable(f"LPIPS: VGG16 weights file not found: {path}; {where}")
            return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG16_FILE
    if cached.is_file():
        return cached
    raise MetricUnavailable(
        f"LPIPS (net='vgg') needs torchvision's ImageNet VGG16 weights ({TORCHVISION_VGG16_FILE}), which are not "
        f"available locally and are never downloaded; {where}"
    )


@functools.lru_cache(maxsize=2)
def _lpips_model(vgg_path: str, device: str) -> torch.nn.Module:
    """``lpips.LPIPS(net='vgg')`` with its trunk loaded from ``vgg_path`` (no download)."""
    import lpips as lpips_package

    from .losses import load_state_dict_file

    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips_package.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False)
    state = load_state_dict_file(vgg_path)
    loaded = 0
    for trunk_slice in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for index, layer in trunk_slice.named_children():
            if isinstance(layer, torch.nn.Conv2d):
                try:
                    layer.weight.data.copy_(state[f"features.{index}.weight"])
                    layer.bias.data.copy_(state[f"features.{index}.bias"])
                except (KeyError, RuntimeError) as err:
                    raise MetricUnavailable(f"{vgg_path} is not a torchvision VGG16 state dict: {err}") from err
                loaded += 1
    assert loaded == 13, loaded
    return model.eval().requires_grad_(False).to(device)


def lpips(img: torch.Tensor, target: torch.Tensor, *, weights: str | os.PathLike | None = None) -> float:
    """LPIPS (``lpips`` package, ``net='vgg'``, v0.1) at full resolution on [-1, 1] inputs."""
    assert img.ndim == 4 and img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    path = _torchvision_vgg16_path(weights)
    model = _lpips_model(str(path), str(img.device))
    with torch.no_grad():
        value = model(img.float(), target.float().to(img.device))
    return float(value.mean())


def hf_artifact_energy(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> float:
    """Residual power above ``cutoff`` × Nyquist, averaged over batch and channels.

    With ``cutoff=0.5`` this is the band that a 2× downsampled loss input cannot see; a negative
    cutoff includes every bin and gives the plain MSE.
    """
    return float(residual_band_power(img, target, cutoff).mean())


def hf_energy_ratio(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> float:
    """Fraction of the residual power above ``cutoff`` × Nyquist (0 when the residual is zero)."""
    total = float(residual_band_power(img, target, -1.0).mean())
    return hf_artifact_energy(img, target, cutoff) / total if total > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# Substitute perceptual metric and detail measures (for the toy world, where LPIPS weights are absent)

FEATURE_DISTANCE_LAYERS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (LPIPS-VGG's taps)


@functools.lru_cache(maxsize=4)
def _vgg_trunk_cached(weights: str, last_index: int, device: str) -> torch.nn.Module:
    from .losses import vgg16_trunk

    return vgg16_trunk(last_index, weights=weights).to(device)


def vgg_feature_distance_per_sample(
    img: torch.Tensor,
    target: torch.Tensor,
    *,
    weights: str | os.PathLike,
    layers: tuple[int, ...] = FEATURE_DISTANCE_LAYERS,
) -> torch.Tensor:
    """LPIPS-style distance on a VGG16 trunk from ``weights``, per sample ``[B]``.

    Like LPIPS-VGG without its learned linear heads: at each ReLU tap, unit-normalise the feature
    vector of every position across channels, take the squared difference summed over channels,
    average over positions, and sum the layers with equal weights. *Uncalibrated*: not comparable to
    LPIPS values, and biased towards whatever the trunk was trained on (the metric's backbone).
    """
    from .losses import hooked_features, imagenet_normalise

    assert img.ndim == 4 and img.shape == target.shape and img.shape[1] == 3, (
        f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    )
    trunk = _vgg_trunk_cached(str(weights), max(layers), str(img.device))
    with torch.no_grad():
        both = imagenet_normalise(torch.cat([img.float(), target.float().to(img.device)]))
        feats = hooked_features(trunk, {k: trunk[k] for k in layers}, both)
        total = torch.zeros(img.shape[0], device=img.device)
        for key in layers:
            f = feats[key]
            f = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            a, b = f[: img.shape[0]], f[img.shape[0] :]
            total += (a - b).square().sum(dim=1).mean(dim=(1, 2))
    return total


def vgg_feature_distance(
    img: torch.Tensor,
    target: torch.Tensor,
    *,
    weights: str | os.PathLike,
    layers: tuple[int, ...] = FEATURE_DISTANCE_LAYERS,
) -> float:
    """Batch mean of :func:`vgg_feature_distance_per_sample`."""
    return float(vgg_feature_distance_per_sample(img, target, weights=weights, layers=layers).mean())


def detail_ratio(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> float:
    """Band power of ``img`` above ``cutoff`` × Nyquist over that of ``target`` (batch mean of per-sample ratios).

    1 means as much fine detail as the target; < 1 is blurrier; > 1 has extra high-frequency content
    (texture or artifacts — pair it with :func:`hf_artifact_energy`, which measures the *error* in that band).
    The batch mean of :func:`hrinv_nb.spectral.relative_band_power`.
    """
    return float(relative_band_power(img, target, cutoff).mean())


def gradient_magnitude(img: torch.Tensor) -> torch.Tensor:
    """Mean finite-difference gradient magnitude per sample ``[B]`` (a sharpness measure, images in [-1, 1])."""
    assert img.ndim == 4, f"expected [B,C,H,W], got {tuple(img.shape)}"
    x = img.detach().double()
    gy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    gx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    return (gx.square() + gy.square()).sqrt().mean(dim=(1, 2, 3))


def sharpness_ratio(img: torch.Tensor, target: torch.Tensor) -> float:
    """Mean gradient magnitude of ``img`` over that of ``target`` (batch mean of per-sample ratios; 1 = as sharp)."""
    assert img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    return float((gradient_magnitude(img) / gradient_magnitude(target).clamp_min(1e-20)).mean())


def psnr_per_sample(img: torch.Tensor, target: torch.Tensor) -> list[float]:
    """:func:`psnr` of each sample (a list of B floats)."""
    return [psnr(img[i : i + 1], target[i : i + 1]) for i in range(img.shape[0])]


def ssim_per_sample(img: torch.Tensor, target: torch.Tensor) -> list[float]:
    """:func:`ssim` of each sample (a list of B floats)."""
    return [ssim(img[i : i + 1], target[i : i + 1]) for i in range(img.shape[0])]


def hf_artifact_energy_per_sample(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> list[float]:
    """:func:`hf_artifact_energy` of each sample (a list of B floats)."""
    return [float(v) for v in residual_band_power(img, target, cutoff).mean(dim=1)]
