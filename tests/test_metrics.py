"""PSNR / SSIM / LPIPS and the high-frequency artifact energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hrinv_nb import metrics
from hrinv_nb.images import to_uint8


def _from_uint8(array: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 127.5 - 1.0)[None]


def _random_uint8(seed: int, size: int = 48) -> np.ndarray:
    return np.random.RandomState(seed).randint(20, 236, size=(size, size, 3)).astype(np.uint8)


def test_psnr_of_a_constant_offset():
    base = _random_uint8(0)
    shifted = base + 5  # no overflow: values stay within 25..240
    value = metrics.psnr(_from_uint8(shifted), _from_uint8(base))
    assert value == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)
    assert metrics.psnr(_from_uint8(base), _from_uint8(base)) == math.inf


def test_psnr_and_ssim_match_skimage_on_rounded_uint8():
    target = _from_uint8(_random_uint8(1))
    img = (target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    a, b = to_uint8(img), to_uint8(target)
    assert metrics.psnr(img, target) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255))
    assert metrics.ssim(img, target) == pytest.approx(structural_similarity(b, a, channel_axis=2, data_range=255))
    assert metrics.ssim(target, target) == pytest.approx(1.0)
    assert 0 < metrics.ssim(img, target) < 1


def test_batch_is_averaged():
    t0, t1 = _from_uint8(_random_uint8(2)), _from_uint8(_random_uint8(3))
    i0, i1 = _from_uint8(_random_uint8(2) + 2), _from_uint8(_random_uint8(3) + 7)
    batch = metrics.psnr(torch.cat([i0, i1]), torch.cat([t0, t1]))
    assert batch == pytest.approx((metrics.psnr(i0, t0) + metrics.psnr(i1, t1)) / 2)


def test_lpips_is_unavailable_without_local_vgg_weights(monkeypatch, tmp_path):
    monkeypatch.delenv(metrics.TORCHVISION_VGG16_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    img = torch.zeros(1, 3, 32, 32)
    with pytest.raises(metrics.MetricUnavailable, match="vgg16-397923af.pth"):
        metrics.lpips(img, img)
    monkeypatch.setenv(metrics.TORCHVISION_VGG16_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(metrics.MetricUnavailable, match="absent.pth"):
        metrics.lpips(img, img)


def test_lpips_with_a_local_torchvision_style_file(monkeypatch, tmp_path):
    """The loading path, exercised with random VGG weights in torchvision's key layout."""
    from hrinv_nb.losses import vgg16_trunk

    trunk = vgg16_trunk(29, seed=0)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(
        {f"features.{k}": v for k, v in trunk.state_dict().items()} | {"classifier.0.bias": torch.zeros(4)}, path
    )
    monkeypatch.setenv(metrics.TORCHVISION_VGG16_ENV, str(path))
    target = _from_uint8(_random_uint8(4, 64))
    assert metrics.lpips(target, target) == pytest.approx(0.0, abs=1e-7)
    noisy = (target + 0.3 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    assert metrics.lpips(noisy, target) > 0
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(metrics.MetricUnavailable, match="bad.pth"):
        metrics.lpips(noisy, target, weights=bad)


def _grid(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")


def test_hf_energy_of_all_bins_is_the_mse():
    generator = torch.Generator().manual_seed(2)
    target, img = torch.rand(2, 3, 40, 56, generator=generator), torch.rand(2, 3, 40, 56, generator=generator)
    assert metrics.hf_artifact_energy(img, target, cutoff=-1.0) == pytest.approx(float((img - target).square().mean()))


def test_hf_energy_separates_bands():
    yy, xx = _grid()
    target = torch.zeros(1, 3, 64, 64)
    checker = (((yy + xx) % 2) * 2 - 1).expand(1, 3, 64, 64) * 0.1  # at the Nyquist corner
    smooth = torch.sin(2 * math.pi * xx / 32).expand(1, 3, 64, 64) * 0.1  # 1/16 of Nyquist
    assert metrics.hf_artifact_energy(checker, target) == pytest.approx(0.01, rel=1e-6)
    assert metrics.hf_energy_ratio(checker, target) == pytest.approx(1.0)
    assert metrics.hf_artifact_energy(smooth, target) < 1e-12  # float32 input rounding only
    assert metrics.hf_energy_ratio(smooth + checker, target) == pytest.approx(0.01 / (0.01 + 0.005), rel=1e-6)
    mixed = smooth + checker
    energies = [metrics.hf_artifact_energy(mixed, target, c) for c in (0.0, 0.1, 0.5, 1.0, 1.5)]
    assert all(a >= b for a, b in zip(energies, energies[1:]))
    assert metrics.hf_energy_ratio(target, target) == 0.0
