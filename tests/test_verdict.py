"""hrinv_nb.studies.verdict: the paired difference, its sample standard error and the 2-s.e. rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrinv_nb.studies.verdict import (
    PairedDifference,
    beyond_noise,
    difference_summary,
    noise_threshold,
    paired_difference,
    standard_error,
    verdict,
)


def test_paired_difference_uses_the_sample_standard_error():
    a = [1.0, 2.0, 3.0, 4.0]
    b = [1.5, 2.0, 4.0, 4.5]  # b − a = 0.5, 0, 1, 0.5
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.5) and d.n == 4 and d.positive_share == pytest.approx(0.75)
    assert d.sem == pytest.approx(np.std([0.5, 0, 1, 0.5], ddof=1) / 2)
    assert d.sem != pytest.approx(np.std([0.5, 0, 1, 0.5], ddof=0) / 2)  # not the population s.d.
    assert standard_error([0.5, 0, 1, 0.5]) == pytest.approx(d.sem)
    assert difference_summary([0.5, 0, 1, 0.5]) == d


def test_one_sample_is_never_beyond_noise():
    d = paired_difference([1.0], [5.0])
    assert d.mean == 4.0 and math.isnan(d.sem)
    assert not beyond_noise(d, +1) and not beyond_noise(d, -1) and verdict(d) is None


def test_beyond_noise_needs_the_sign_and_two_standard_errors():
    assert beyond_noise(PairedDifference(mean=0.21, sem=0.1, n=10), +1)
    assert not beyond_noise(PairedDifference(mean=0.19, sem=0.1, n=10), +1)
    assert not beyond_noise(PairedDifference(mean=0.21, sem=0.1, n=10), -1)
    assert beyond_noise(PairedDifference(mean=-0.21, sem=0.1, n=10), -1)
    assert beyond_noise(PairedDifference(mean=0.15, sem=0.1, n=10), +1, k=1.0)
    assert noise_threshold(PairedDifference(mean=0.0, sem=0.1, n=10)) == pytest.approx(0.2)
    with pytest.raises(AssertionError):
        beyond_noise(PairedDifference(0.1, 0.01, 3), 0)


def test_verdict_is_three_valued():
    assert verdict(PairedDifference(0.3, 0.1, 5), +1) is True
    assert verdict(PairedDifference(-0.3, 0.1, 5), +1) is False
    assert verdict(PairedDifference(0.1, 0.1, 5), +1) is None
    assert verdict(PairedDifference(-0.3, 0.1, 5), -1) is True


def test_bad_inputs_are_refused():
    with pytest.raises(AssertionError):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(AssertionError):
        difference_summary([1.0, float("nan")])
    with pytest.raises(AssertionError):
        difference_summary([])
