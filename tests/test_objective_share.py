"""hrinv_nb.studies.objective_share: the objective's shares per step and per term, and LSO's random-offset control."""

import numpy as np
import pytest
import torch

from hrinv_nb.studies import objective_share as share


def test_shares_sum_to_one_and_follow_the_weights():
    hist = {"perceptual": [3.0, 1.0], "mse": [0.02, 0.01]}  # λ_mse·MSE = 1.0, 0.5
    s = share.objective_shares(hist, mse_weight=50.0)
    np.testing.assert_allclose(s["perceptual"] + s["mse"], 1.0)
    np.testing.assert_allclose(s["perceptual"], [0.75, 2 / 3])
    np.testing.assert_allclose(s["mse_term"], [1.0, 0.5])


def test_printed_table_scale_divides_the_perceptual_term():
    """A run with λ ×8 has its perceptual term ×64; scaling by 1/64 gives the table-as-printed share."""
    hist = {"perceptual": [64.0], "mse": [1.0 / 50]}
    printed = share.objective_shares(hist, mse_weight=50.0, perceptual_scale=1 / 64)
    assert printed["perceptual"][0] == pytest.approx(0.5)


def test_zero_objective_has_no_shares():
    with pytest.raises(AssertionError):
        share.objective_shares({"perceptual": [0.0], "mse": [0.0]})


def test_random_offset_keeps_every_rows_norm_and_is_seeded():
    offset = torch.randn(3, 5, 16)
    a, b = share.random_offset_like(offset, 1), share.random_offset_like(offset, 1)
    assert torch.equal(a, b) and not torch.equal(a, share.random_offset_like(offset, 2))
    torch.testing.assert_close(a.norm(dim=2), offset.norm(dim=2))
    cos = torch.nn.functional.cosine_similarity(a, offset, dim=2)
    assert cos.abs().max() < 0.9  # a random direction, not the offset's


class _Terms(torch.nn.Module):
    """A stand-in perceptual loss: one 'layer', the sum of squared differences."""

    def set_target(self, img):
        self.t = img

    def distance_terms(self, img):
        return {2: (img - self.t).square().sum() / img.shape[0]}


def test_objective_terms_name_each_layer_and_the_weighted_mse():
    x, y = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    terms = share.objective_terms(_Terms(), x, y, mse_weight=50.0)
    assert terms == {"layer 2": pytest.approx(12.0), "λ_mse·MSE": pytest.approx(12.5)}
