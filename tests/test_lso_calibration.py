"""hrinv_nb.studies.lso_calibration: the λ_reg sweep of LSO and its choice."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb.gallery import style_codes
from hrinv_nb.studies.cross_domain import GramStyleDistance
from hrinv_nb.studies.lso_calibration import (
    SweepPoint,
    choose_reg_weight,
    plot_tradeoff,
    random_directions,
    reg_weight_sweep,
)


def _embed(x: torch.Tensor) -> torch.Tensor:
    v = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
    return v / v.norm(dim=1, keepdim=True)


def test_sweep_moves_from_free_to_pinned():
    # Prediction: with no L2, LSO (MSE towards the content, all rows) restores the most identity and changes
    # the most style; a huge λ_reg pins w at the mixed code (nothing restored, nothing changed).
    G_s, G_t = tiny_generator(seed=0), tiny_generator(seed=1)
    w_s, w_t = style_codes(G_s, 2, seed=3), style_codes(G_t, 2, seed=4)
    with torch.no_grad():
        contents = G_s.synthesis(w_s, noise_mode="const").clamp(-1, 1)
    gram = GramStyleDistance(None, layers=(2, 7), seed=0)
    kwargs = dict(num_steps=8, loss="mse", seed=0, rows=tuple(range(G_s.num_ws)))
    points = reg_weight_sweep(G_s, G_t, w_s, w_t, contents, [0.0, 1e6], embed=_embed, gram=gram, lso_kwargs=kwargs)
    free, pinned = points
    assert len(free.identity_restored) == 4 and free.reg_weight == 0.0
    assert free.mean("identity_restored") > 0.05 and free.mean("offset_norm") > 10 * pinned.mean("offset_norm")
    assert abs(pinned.mean("style_changed")) < 0.1 * free.mean("style_changed")
    # The absolute identity distances agree with the share restored, pair by pair.
    for p in points:
        assert len(p.id_before) == len(p.id_after) == 4
        share = [(b - a) / b for b, a in zip(p.id_before, p.id_after)]
        assert share == pytest.approx(p.identity_restored, rel=1e-5, abs=1e-6)
    with pytest.raises(AssertionError):
        reg_weight_sweep(G_s, G_t, w_s, w_t, contents, [1.0], embed=_embed, gram=gram, lso_kwargs={"reg_weight": 1})


def test_choice_is_the_best_identity_minus_style():
    pts = [
        SweepPoint(0.0, [0.9, 0.9], [0.8, 0.8], [5.0, 5.0]),  # free: 0.1
        SweepPoint(1.0, [0.6, 0.6], [0.2, 0.2], [2.0, 2.0]),  # 0.4
        SweepPoint(10.0, [0.05, 0.05], [0.0, 0.0], [0.1, 0.1]),  # pinned: 0.05
    ]
    assert choose_reg_weight(pts).reg_weight == 1.0


def test_tradeoff_plot_draws_both_measures_and_the_marks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [SweepPoint(r, [0.3 / (1 + r * 1e5)] * 4, [0.2 / (1 + r * 1e5)] * 4, [1.0] * 4) for r in (0.0, 1e-5, 1e-4)]
    fig, ax = plt.subplots()
    plot_tradeoff(ax, pts, [0, 0, 1, 1], marks={"paper": 1.6e-4, "chosen": 1e-5})
    labels = ax.get_legend_handles_labels()[1]
    assert len(labels) == 4 and any("paper" in x for x in labels) and ax.get_xscale() == "symlog"
    plt.close(fig)


def test_random_directions_are_orthonormal_and_seeded():
    d = random_directions(16, 5, seed=3)
    assert d.shape == (5, 16) and torch.allclose(d @ d.T, torch.eye(5), atol=1e-5)
    assert torch.equal(d, random_directions(16, 5, seed=3)) and not torch.equal(d, random_directions(16, 5, seed=4))
