"""Spectral measures of images and of reconstruction residuals, each defined once.

Conventions shared by every function here:

* Frequencies are **radial**, in units of the **Nyquist frequency**: a bin of an ``fft2`` of size
  H×W sits at ``sqrt(fy² + fx²) / 0.5`` (cycles per pixel over 0.5), so 1 is Nyquist along one axis
  and the corners of the spectrum reach √2. A ``cutoff`` keeps the bins *strictly above*
  ``cutoff`` × Nyquist; the DC bin sits at 0, so any ``cutoff >= 0`` leaves it out and a negative
  cutoff keeps every bin.
* Power is normalised so that the sum over all bins equals the mean square of the signal (Parseval):
  the power of a residual over all bins is its MSE.
* Everything is computed in float64 on detached inputs ``[B, C, H, W]``.

The measures:

* :func:`residual_band_power` – power of ``img − target`` above the cutoff, per sample and channel
  (the high-frequency *error*; :func:`hrinv_nb.metrics.hf_artifact_energy` is its mean);
* :func:`band_power` – an image's own power above the cutoff (each channel's mean removed), per sample;
* :func:`relative_band_power` – :func:`band_power` of an image over that of a target, per sample
  (1: as much fine detail as the target; :func:`hrinv_nb.metrics.detail_ratio` is its mean);
* :func:`high_frequency_share` – the share of an image's mean-removed power above the cutoff, per
  sample, power pooled over channels (a contrast-independent sharpness measure);
* :func:`residual_band_split` – the residual's power below a low and above a high cutoff;
* :func:`lowpass_psnr` – PSNR of area-downsampled thumbnails (how well the coarse layout matches).
"""

from __future__ import annotations

import torch


def radial_frequency(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """|f| / Nyquist for every bin of an ``fft2`` of size ``height``×``width``, float64 ``[H, W]``."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64) / 0.5
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64) / 0.5
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def residual_band_power(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Power of ``img − target`` above ``cutoff`` × Nyquist, per sample and channel, float64 ``[B, C]``.

    The sum over all bins (``cutoff < 0``) is the mean squared residual of each channel.
    """
    assert img.ndim == 4 and img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    residual = img.detach().double() - target.detach().double().to(img.device)
    height, width = residual.shape[2:]
    spectrum = torch.fft.fft2(residual)
    power = spectrum.abs().square() / float(height * width) ** 2
    mask = radial_frequency(height, width, residual.device) > cutoff
    return (power * mask).sum(dim=(2, 3))


def _centred(img: torch.Tensor) -> torch.Tensor:
    """``img`` in float64 with each channel's spatial mean removed (the DC bin set to zero)."""
    x = img.detach().double()
    return x - x.mean(dim=(2, 3), keepdim=True)


def _channel_power(img: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Power of the mean-removed ``img`` above ``cutoff`` × Nyquist, per sample and channel ``[B, C]``."""
    centred = _centred(img)
    return residual_band_power(centred, torch.zeros_like(centred), cutoff)


def band_power(img: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Power of ``img`` itself above ``cutoff`` × Nyquist, averaged over channels, per sample ``[B]``.

    Each channel's mean is removed first, so a negative cutoff gives the variance (not the mean
    square); for ``cutoff >= 0`` the DC bin is excluded anyway and the removal changes nothing.
    """
    assert img.ndim == 4, f"expected [B,C,H,W], got {tuple(img.shape)}"
    return _channel_power(img, cutoff).mean(dim=1)


def relative_band_power(img: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """:func:`band_power` of ``img`` over that of ``target``, per sample ``[B]``.

    1 means as much fine detail as the target; < 1 is blurrier; > 1 has extra high-frequency
    content (texture or artifacts). A target without power above the cutoff is treated as having
    1e-20 (so the ratio is huge rather than undefined).
    """
    assert img.shape == target.shape, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    return band_power(img, cutoff) / band_power(target, cutoff).clamp_min(1e-20)


def high_frequency_share(img: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Share of the mean-removed power of ``img`` above ``cutoff`` × Nyquist, per sample ``[B]`` in [0, 1].

    The power is pooled over channels (high-band power of all channels over their total power), so a
    low-contrast channel weighs less than a high-contrast one. Independent of contrast: blurring
    lowers it, noise and texture raise it; white noise gives the share of the spectrum outside the
    radius-``cutoff`` disc. A flat image (no power at all) gives 0.
    """
    assert img.ndim == 4, f"expected [B,C,H,W], got {tuple(img.shape)}"
    high = _channel_power(img, cutoff).mean(dim=1)
    total = _channel_power(img, -1.0).mean(dim=1)
    return torch.where(total > 0, high / total.clamp_min(1e-300), torch.zeros_like(total))


def residual_band_split(
    img: torch.Tensor, target: torch.Tensor, low: float = 0.25, high: float = 0.5
) -> dict[str, float]:
    """Residual power of ``img − target`` below ``low`` and above ``high`` × Nyquist, and in total.

    Values are mean squared residuals (Parseval), averaged over batch and channels, so
    ``low + mid + high = total``; the low band holds contours and colours, the high band fine detail.
    """
    assert 0 <= low <= high, (low, high)
    total = float(residual_band_power(img, target, -1.0).mean())
    above_low = float(residual_band_power(img, target, low).mean())
    high_power = float(residual_band_power(img, target, high).mean())
    return {"total": total, "low": total - above_low, "high": high_power}


def lowpass_psnr(img: torch.Tensor, target: torch.Tensor, size: int = 16) -> float:
    """PSNR (dB) of ``size``² area-downsampled copies: how well the coarse layout and colours match.

    A ``size``² area average keeps roughly the frequencies below ``size / H`` × Nyquist.
    """
    from .losses import area_resize
    from .metrics import psnr

    assert img.shape == target.shape and img.ndim == 4, f"shape mismatch: {tuple(img.shape)} vs {tuple(target.shape)}"
    return psnr(area_resize(img, size), area_resize(target, size))
