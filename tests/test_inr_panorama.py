"""Style-INR measurements: renders at several shapes, resizing them back, residual bands, colour shift."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY

import hrinv_nb
from hrinv_nb.inr import attach_inr_head
from hrinv_nb.spectral import residual_band_split
from hrinv_nb.studies import nonsquare as panorama


def test_render_shapes_gives_every_shape():
    G = attach_inr_head(hrinv_nb.load_networks(TINY).G)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), None)
    out = panorama.render_shapes(G, ws, [[16, 16], [32, 96]])
    assert out[(16, 16)].shape == (2, 3, 16, 16) and out[(32, 96)].shape == (2, 3, 32, 96)
    with pytest.raises(TypeError):
        panorama.render_shapes(hrinv_nb.load_networks(TINY).G, ws, [[16, 16]])


def test_colour_shift_of_a_constant_offset():
    target = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = target + torch.tensor([0.1, -0.2, 0.0]).view(1, 3, 1, 1)
    shift = panorama.colour_shift(recon, target)
    assert shift["per_channel"] == pytest.approx([12.75, -25.5, 0.0], abs=1e-4)
    assert shift["max_abs"] == pytest.approx(25.5) and shift["dc_fraction"] == pytest.approx(1.0)
    noisy = recon + 0.05 * torch.randn(recon.shape, generator=torch.Generator().manual_seed(1))
    assert panorama.colour_shift(noisy, target)["dc_fraction"] < 1.0


def test_band_split_separates_low_and_high_frequencies():
    target = torch.zeros(1, 3, 32, 32)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.cos(2 * torch.pi * xx / 32).expand(1, 3, 32, 32) * 0.1  # 1/16 of Nyquist
    checker = ((xx + yy) % 2 * 2 - 1).expand(1, 3, 32, 32) * 0.1  # at Nyquist
    low = residual_band_split(smooth, target)
    high = residual_band_split(checker, target)
    assert low["low"] == pytest.approx(low["total"], rel=1e-6) and low["high"] < 1e-12
    assert high["high"] == pytest.approx(high["total"], rel=1e-6) and high["low"] < 1e-12


def test_antialiased_resize_keeps_smooth_images_and_mixed_shapes():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 24), indexing="ij")
    ramp = (xx + yy).expand(1, 3, 48, 24) - 1  # a linear ramp: bilinear resizing reproduces it
    out = panorama.antialiased_resize(ramp, (32, 32))  # shrinks H, enlarges W
    assert out.shape == (1, 3, 32, 32)
    yy2, xx2 = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    assert (out[0, 0] - (xx2 + yy2 - 1)).abs().max() < 0.06
