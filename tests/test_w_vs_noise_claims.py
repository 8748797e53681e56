"""hrinv_nb.studies.w_vs_noise's resampling measures (notebooks 03 and 05): band powers of a change,
the colour / detail split of a gap closed, per-sample noise maps."""

import math

import pytest
import torch

from hrinv_nb.studies import w_vs_noise as wn


def _sinusoid(freq_cycles: int, size: int = 32, amp: float = 0.3) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64)
    row = amp * torch.cos(2 * math.pi * freq_cycles * x / size)
    return row[None, None, None, :].expand(1, 3, size, size).float().contiguous()


def test_difference_bands_put_a_slow_change_low_and_a_fast_one_high():
    base = torch.zeros(1, 3, 32, 32)
    slow = wn.difference_bands(_sinusoid(1), base, low=0.125, high=0.5)  # 1 cycle: 1/16 of Nyquist
    fast = wn.difference_bands(_sinusoid(12), base, low=0.125, high=0.5)  # 12 cycles: 0.75 of Nyquist
    assert slow["high_share"].item() == pytest.approx(0.0, abs=1e-9) and slow["low"].item() > 0.04
    assert fast["high_share"].item() == pytest.approx(1.0) and fast["low"].item() == pytest.approx(0.0, abs=1e-9)
    assert slow["total"].item() == pytest.approx(0.045, rel=1e-3)  # amp² / 2, Parseval


def test_identical_images_have_no_change():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    b = wn.difference_bands(x, x.clone(), 0.1, 0.5)
    assert all(float(v.abs().max()) == 0 for v in b.values())


def test_thumbnail_split_adds_back_up():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    thumb, detail = wn.thumbnail_split(x, 8)
    assert thumb.shape == (2, 3, 8, 8) and detail.shape == x.shape
    up = torch.nn.functional.interpolate(thumb, size=(32, 32), mode="nearest")
    torch.testing.assert_close(up + detail, x)


def test_gap_closed_is_zero_for_doing_nothing_and_one_for_the_target():
    start, target = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    nothing = wn.gap_closed(start, start, target, 8)
    full = wn.gap_closed(target, start, target, 8)
    for k in ("colour", "detail"):
        assert torch.equal(nothing[k], torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(full[k], torch.ones(3, dtype=torch.float64))


def test_gap_closed_separates_a_colour_move_from_a_detail_move():
    start, target = torch.zeros(1, 3, 32, 32), _sinusoid(8) + 0.5  # a colour shift plus 4-px stripes (0 in 4x4 means)
    only_detail = start + _sinusoid(8)
    g = wn.gap_closed(only_detail, start, target, 8)
    assert g["detail"].item() == pytest.approx(1.0, abs=1e-6) and abs(g["colour"].item()) < 1e-6


def test_per_sample_maps_shapes():
    maps = {"a": torch.zeros(4, 4), "b": torch.zeros(2, 8, 8), "c": torch.zeros(2, 1, 2, 2)}
    out = wn.per_sample_maps(maps, 2)
    assert [tuple(v.shape) for v in out.values()] == [(2, 1, 4, 4), (2, 1, 8, 8), (2, 1, 2, 2)]
