"""hrinv_nb.spectral: the frequency conventions, known signals, and equality with the measures it replaced."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrinv_nb import metrics, spectral
from hrinv_nb.losses import area_resize


def _images(seed: int, batch: int = 2, size: int = 32) -> torch.Tensor:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False) + 0.1 * x  # some smooth, some fine


# ---- the former implementations, verbatim in substance, as references ---------------------------------------


def _old_rbp(img, target, cutoff):
    residual = img.detach().double() - target.detach().double()
    h, w = residual.shape[2:]
    power = torch.fft.fft2(residual).abs().square() / float(h * w) ** 2
    fy = torch.fft.fftfreq(h, dtype=torch.float64) / 0.5
    fx = torch.fft.fftfreq(w, dtype=torch.float64) / 0.5
    return (power * (torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) > cutoff)).sum(dim=(2, 3))


def _old_metrics_band_power(img, cutoff):  # metrics.band_power: centred in the input's dtype
    centred = img - img.mean(dim=(2, 3), keepdim=True)
    return _old_rbp(centred, torch.zeros_like(centred), cutoff).mean(dim=1)


def _old_detail_ratio(img, target, cutoff):
    ref = _old_metrics_band_power(target.double(), cutoff)
    return float((_old_metrics_band_power(img.double(), cutoff) / ref.clamp_min(1e-20)).mean())


def _old_wn_band_power(x, cutoff):  # studies.w_vs_noise.band_power: no centring, batch and channel mean
    return float(_old_rbp(x, torch.zeros_like(x), cutoff).mean())


def _old_wn_hf_fraction(x, cutoff):  # studies.w_vs_noise.hf_fraction: pooled over batch and channels
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    total = _old_wn_band_power(centred, -1.0)
    return _old_wn_band_power(centred, cutoff) / total if total > 0 else 0.0


def _old_wn_hf_energy_ratio_to(img, target, cutoff):
    return _old_wn_band_power(img, cutoff) / _old_wn_band_power(target, cutoff)


def _old_rq_hf_fraction(img, cutoff=0.25):  # studies.reference_quality.hf_fraction: mean of per-channel shares
    mean = img.mean(dim=(2, 3), keepdim=True).expand_as(img)
    return (_old_rbp(img, mean, cutoff) / _old_rbp(img, mean, -1.0).clamp_min(1e-20)).mean(dim=1).float()


# ---- conventions and known signals ----------------------------------------------------------------------------


def test_radial_frequency_is_in_units_of_nyquist():
    r = spectral.radial_frequency(8, 16)
    assert r.shape == (8, 16) and r.dtype == torch.float64
    assert r[0, 0] == 0 and r[4, 0] == pytest.approx(1.0) and r[0, 8] == pytest.approx(1.0)
    assert r[4, 8] == pytest.approx(math.sqrt(2)) and r[0, 4] == pytest.approx(0.5)


def test_residual_band_power_obeys_parseval_and_the_cutoff():
    img, target = _images(0), _images(1)
    total = spectral.residual_band_power(img, target, -1.0)
    assert total.shape == (2, 3)
    torch.testing.assert_close(total, (img.double() - target.double()).square().mean(dim=(2, 3)))
    powers = [float(spectral.residual_band_power(img, target, c).sum()) for c in (-1.0, 0.0, 0.5, 1.0, 1.5)]
    assert all(a >= b for a, b in zip(powers, powers[1:])) and powers[-1] == 0.0


def test_high_frequency_share_of_known_signals():
    white = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    # white noise: the share of the [-1, 1]² frequency square outside the radius-0.5 disc, 1 − π/16
    assert float(spectral.high_frequency_share(white, 0.5)) == pytest.approx(1 - math.pi / 16, abs=0.03)
    xx = torch.arange(32.0).expand(32, 32)
    low = torch.cos(2 * torch.pi * xx / 32).expand(1, 3, 32, 32)
    nyquist = ((xx % 2) * 2 - 1).expand(1, 3, 32, 32)
    assert float(spectral.high_frequency_share(low, 0.25)) == pytest.approx(0.0, abs=1e-12)
    assert float(spectral.high_frequency_share(nyquist, 0.25)) == pytest.approx(1.0, abs=1e-12)
    assert float(spectral.high_frequency_share(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    # pooled over channels: a faint noisy channel next to two strong smooth ones barely counts
    mixed = torch.cat([low[:, :2], 0.01 * nyquist[:, :1]], dim=1)
    assert float(spectral.high_frequency_share(mixed, 0.25)) < 1e-3


def test_band_power_ignores_the_mean_and_relative_band_power_sees_blur():
    img = _images(2)
    torch.testing.assert_close(spectral.band_power(img + 0.5, 0.0), spectral.band_power(img, 0.0))
    torch.testing.assert_close(spectral.band_power(img, -1.0), img.double().var(dim=(2, 3), unbiased=False).mean(1))
    torch.testing.assert_close(spectral.relative_band_power(img, img), torch.ones(2, dtype=torch.float64))
    blurred = F.avg_pool2d(img, 3, stride=1, padding=1, count_include_pad=False)
    assert (spectral.relative_band_power(blurred, img) < 0.5).all()


def test_residual_band_split_adds_up():
    img, target = _images(3), _images(4)
    split = spectral.residual_band_split(img, target, 0.25, 0.5)
    mid = float(spectral.residual_band_power(img, target, 0.25).mean()) - split["high"]
    assert split["low"] + mid + split["high"] == pytest.approx(split["total"], rel=1e-12)
    assert split["low"] > 0 and split["high"] > 0 and mid > 0


def test_lowpass_psnr_ignores_fine_detail():
    base = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 0.5
    checker = (torch.arange(32).view(32, 1) + torch.arange(32).view(1, 32)) % 2 * 0.2 - 0.1
    assert spectral.lowpass_psnr(base + checker, base, 16) == float("inf")  # a Nyquist pattern averages out
    assert spectral.lowpass_psnr(base + 0.2, base, 16) < 30


def test_area_resize_takes_an_int_or_a_pair():
    x = _images(6, 1, 48)
    assert area_resize(x, 16).shape == (1, 3, 16, 16)
    assert torch.equal(area_resize(x, (16, 16)), area_resize(x, 16))
    assert torch.equal(area_resize(x, [12, 24]), F.interpolate(x, size=(12, 24), mode="area"))


# ---- the same numbers as before where the measure is the same --------------------------------------------------


def test_metrics_keep_their_numbers_and_names():
    img, target = _images(7), _images(8)
    assert metrics.residual_band_power is spectral.residual_band_power and metrics.band_power is spectral.band_power
    for cutoff in (-1.0, 0.25, 0.5):
        assert torch.equal(metrics.residual_band_power(img, target, cutoff), _old_rbp(img, target, cutoff))
        assert metrics.hf_artifact_energy(img, target, cutoff) == float(_old_rbp(img, target, cutoff).mean())
    for cutoff in (0.25, 0.5):
        assert metrics.detail_ratio(img, target, cutoff) == _old_detail_ratio(img, target, cutoff)
        # float32 input: the mean is now removed in float64, so only float32 rounding separates them
        torch.testing.assert_close(
            metrics.band_power(img, cutoff), _old_metrics_band_power(img, cutoff), rtol=1e-6, atol=0
        )


def test_single_image_measures_match_the_former_study_helpers():
    """Notebook 03/05 call these on one image at a time: same numbers up to float32 rounding of the centring."""
    img, target = _images(9, 1), _images(10, 1)
    for cutoff in (0.25, 0.5):
        assert float(spectral.high_frequency_share(img, cutoff)) == pytest.approx(
            _old_wn_hf_fraction(img, cutoff), rel=1e-6
        )
        assert metrics.detail_ratio(img, target, cutoff) == pytest.approx(
            _old_wn_hf_energy_ratio_to(img, target, cutoff), rel=1e-12
        )
    old_lowpass = metrics.psnr(
        F.interpolate(img, size=(16, 16), mode="area"), F.interpolate(target, size=(16, 16), mode="area")
    )
    assert spectral.lowpass_psnr(img, target, 16) == old_lowpass


def test_reference_quality_share_changed_only_by_pooling_the_channels():
    """The former reference-quality share averaged per-channel shares; now the power is pooled over channels."""
    grey = _images(11).mean(dim=1, keepdim=True).expand(2, 3, 32, 32)  # equal channels: both definitions agree
    torch.testing.assert_close(
        spectral.high_frequency_share(grey, 0.25), _old_rq_hf_fraction(grey).double(), rtol=1e-6, atol=0
    )
    colour = _images(12) * torch.tensor([1.0, 0.2, 0.05]).view(1, 3, 1, 1)
    assert not torch.allclose(
        spectral.high_frequency_share(colour, 0.25), _old_rq_hf_fraction(colour).double(), rtol=1e-3
    )
