"""hrinv_nb.studies.mechanisms: the measurements behind the mechanism figures."""

from __future__ import annotations

import pytest
import torch

from hrinv_nb.losses import perceptual_loss
from hrinv_nb.studies import mechanisms as M


def _target(size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size), mode="bilinear")
    return smooth * 1.6 - 0.8


def test_sinusoids_have_the_asked_frequency_and_amplitude():
    p = M.sinusoids((64, 64), 0.5, 3, torch.Generator().manual_seed(0), amplitude=0.1)
    assert p.shape == (3, 3, 64, 64) and float(p.abs().max()) <= 0.1 + 1e-6
    freq, power = M.radial_spectrum(p[:1], n_bins=32)
    assert abs(float(freq[power.argmax()]) - 0.5) < 0.06  # the peak sits at half the Nyquist frequency


def test_a_downsampled_loss_does_not_see_high_frequencies_a_full_resolution_loss_does():
    # Prediction (box filter of a 4x area downsample): a pattern at 0.9 Nyquist keeps ~2 % of its power
    # through the average of each 4x4 block, one at 0.1 Nyquist ~90 %; a full-resolution loss has no such filter.
    torch.manual_seed(0)
    target = _target(64)
    freqs = [0.1, 0.9]
    full = M.frequency_penalty(perceptual_loss("vgg16_conv_random", seed=1), target, freqs)
    down = M.frequency_penalty(perceptual_loss("vgg16_conv_random", seed=1, downsample_size=16), target, freqs)
    assert (full > 0).all() and (down > 0).all()
    high_over_low_full, high_over_low_down = float(full[1] / full[0]), float(down[1] / down[0])
    assert high_over_low_down < 0.2 * high_over_low_full, (high_over_low_full, high_over_low_down)


def test_gradient_spectrum_of_mse_is_the_residuals():
    target, img = _target(32, 0), _target(32, 1)
    freq, power = M.gradient_spectrum(perceptual_loss("mse"), img, target)
    _, residual = M.radial_spectrum(img - target)
    scale = (2.0 / img.numel()) ** 2  # ∂ mean((x - t)^2) / ∂x = 2 (x - t) / N
    torch.testing.assert_close(power, residual * scale, rtol=1e-5, atol=0)  # float32 gradient
    assert 0 <= M.share_above(freq, power, 0.5) <= 1


def test_relu_zero_share_is_what_the_relu_loss_zeroes():
    img = _target(32, 2)
    conv = perceptual_loss("vgg16_conv_random", seed=3, layers=[2, 7])
    relu_feats = perceptual_loss("vgg16_conv_random", seed=3, layers=[3, 8], lambdas={3: 1.0, 8: 1.0}).features(img)
    share = M.relu_zero_share(conv, img)
    assert set(share) == {2, 7}
    for conv_key, relu_key in ((2, 3), (7, 8)):
        assert share[conv_key] == pytest.approx(float((relu_feats[relu_key] == 0).double().mean()), abs=1e-12)
        assert 0 < share[conv_key] < 1


def test_highband_split_separates_blur_from_spurious_detail():
    from hrinv_nb.metrics import hf_artifact_energy_per_sample

    g = torch.Generator().manual_seed(5)
    target = (torch.rand(1, 3, 64, 64, generator=g) * 1.6 - 0.8).clamp(-1, 1)
    blur = torch.nn.functional.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False)
    noisy = target + 0.4 * torch.randn(1, 3, 64, 64, generator=g)
    half = 0.5 * target + 0.5 * blur
    out = {
        name: M.highband_split(img, target, 0.5)
        for name, img in (("t", target), ("b", blur), ("n", noisy), ("h", half))
    }
    assert float(out["t"]["matched"][0]) == pytest.approx(1.0) and float(out["t"]["spurious"][0]) < 1e-20
    # A blur removes the target's detail (missing), adds none of its own; noise adds spurious detail, keeps the target's.
    assert float(out["b"]["matched"][0]) < 0.3 and float(out["b"]["spurious_ratio"][0]) < 0.1
    assert (
        float(out["n"]["matched"][0]) == pytest.approx(1.0, abs=0.05) and float(out["n"]["spurious_ratio"][0]) > 0.5
    )  # 0.4² / var(U[-.8, .8]) ≈ 0.75
    assert 0.4 < float(out["h"]["matched"][0]) < 0.7
    for name, img in (("b", blur), ("n", noisy), ("h", half)):  # the split is exact: missing + spurious = residual band
        expected = hf_artifact_energy_per_sample(img, target, 0.5)[0]
        assert float(out[name]["residual"][0]) == pytest.approx(expected, rel=1e-9)


def test_spurious_map_is_black_for_the_target_and_bright_where_noise_was_added():
    target = _target(32, 4)
    noisy = target.clone()
    noisy[..., :8, :8] += 0.3 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(M.spurious_map(target, target, 0.5).max()) == pytest.approx(-1.0)
    m = M.spurious_map(noisy, target, 0.5)
    assert m.shape == target.shape and float(m[..., :8, :8].mean()) > float(m[..., 16:, 16:].mean()) + 0.3
