"""The measurement helpers behind the claims of notebooks 06 (Table I per step and memory), 13 (Fig. 8,
reference quality) and 14 (Figs. 3 and 10, Style-INR-GAN): rounds and their log ratios, the pair plan of
the reference versions, and the colour-shift and same-picture measures."""

from __future__ import annotations

import math

import pytest
import torch

from hrinv_nb.studies import cost, nonsquare, reference_quality


def test_round_specs_alternate_order_and_hold_each_task():
    even, odd = cost.round_specs("toy", 128, 4, 0), cost.round_specs("toy", 128, 4, 1)
    assert [s["label"] for s in even] == list(cost.ROUND_LABELS)
    assert [s["label"] for s in odd] == list(reversed(cost.ROUND_LABELS))
    steps = {s["label"]: s["steps"] for s in even}
    assert steps["generation_a"] == 4 and steps["inversion_a"] == 5 and steps["lso"] == 5  # +1: the setup step
    assert {s["task"] for s in even} == set(cost.TASKS)


def test_round_log_ratios_and_geometric_mean_of_copies():
    rounds = [
        {
            "generation_a": {"step_s": 1.0},
            "generation_b": {"step_s": 4.0},
            "inversion_a": {"step_s": 8.0},
            "inversion_b": {"step_s": 8.0},
            "lso": {"step_s": 16.0},
        }
    ]
    assert cost.round_log_ratios(rounds, "inversion", "generation") == [pytest.approx(math.log(8 / 2))]
    assert cost.round_log_ratios(rounds, "lso", "inversion") == [pytest.approx(math.log(2))]
    assert cost.round_log_ratios(rounds, "generation_a", "generation_b") == [pytest.approx(math.log(1 / 4))]


def test_paper_log_ratios_from_table_one():
    assert cost.paper_log_ratio("inversion", "generation") == pytest.approx(math.log(0.138 / 0.032))
    assert cost.paper_log_ratio("lso", "inversion") == pytest.approx(math.log(0.16 / 0.138))  # LSO's step costs more
    assert cost.paper_log_ratio("inversion", "lso", "memory") == pytest.approx(math.log(5.89 / 5.38))


def test_pair_plan_compares_versions_of_one_reference_on_one_content():
    content, style = reference_quality.pair_plan(n_refs=3, n_contents=2, n_versions=3)
    assert content.tolist() == [0, 1, 0] * 3
    assert style.tolist() == list(range(9))  # version-major
    values = torch.arange(9.0)
    assert reference_quality.by_version(values, 3)[:, 1].tolist() == [1.0, 4.0, 7.0]  # reference 1, every version


def test_colour_shift_of_a_constant_offset():
    target = torch.rand(1, 3, 16, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    recon = target + torch.tensor([2.0, 0.0, -2.0]).view(1, 3, 1, 1) / 127.5
    shift = nonsquare.colour_shift(recon, target)
    assert nonsquare.shift_magnitude(shift) == pytest.approx(math.sqrt(8 / 3), rel=1e-6)
    shift_map = nonsquare.colour_shift_map(recon, target, sigma=2.0)
    assert torch.allclose(shift_map, recon - target, atol=1e-6)  # a constant offset survives the low-pass


def test_centre_square_takes_the_middle():
    img = torch.zeros(1, 3, 8, 24)
    img[..., 8:16] = 1.0
    sq = nonsquare.centre_square(img, 4)
    assert sq.shape == (1, 3, 4, 4) and torch.allclose(sq, torch.ones_like(sq))


def test_same_picture_prefers_own_code_and_control_does_not():
    g = torch.Generator().manual_seed(1)
    native = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    renders = {(16, 16): native, (32, 32): torch.nn.functional.interpolate(native, size=(32, 32), mode="nearest")}
    effect, control, code = nonsquare.same_picture_psnr(renders, native)
    assert len(effect) == len(control) == len(code) == 4  # the native shape is skipped
    assert min(effect) > 5  # a nearest 2x render resized back is far closer to its own picture
    assert abs(sum(control) / len(control)) < 1


def test_round_log_ratios_refuse_a_task_without_copies():
    rounds = [{"lso": {"step_s": 1.0}, "inversion_a": {"step_s": 1.0}, "inversion_b": {"step_s": 1.0}}]
    with pytest.raises(KeyError):
        cost.round_log_ratios(rounds, "lso_a", "lso_b")
