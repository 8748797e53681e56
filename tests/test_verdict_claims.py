"""hrinv_nb.studies.verdict, pre-registered claims: the cluster-robust standard error of samples that
share a content, the smallest detectable effect, sample sizes, the four outcomes of a claim test with
its do-nothing control, and the report ``Claim`` that records them."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from hrinv_nb.notebook import report
from hrinv_nb.studies.verdict import (
    NOISE_K,
    ClaimTest,
    PairedDifference,
    claim_from_test,
    clustered_difference,
    difference_summary,
    evaluate_claim,
    minimum_detectable_effect,
    required_samples,
)


def _shared_contents(rng: np.random.Generator, contents: int, per_content: int, sd_content: float, sd_noise: float):
    """Null differences (true mean 0): a content's own offset shared by its samples, plus per-sample noise."""
    offsets = np.repeat(rng.normal(0.0, sd_content, contents), per_content)
    labels = np.repeat([f"content{i}" for i in range(contents)], per_content)
    return offsets + rng.normal(0.0, sd_noise, contents * per_content), labels


# --- the cluster-robust standard error ---------------------------------------------------------------


def test_one_sample_per_cluster_gives_exactly_the_ordinary_standard_error():
    # G = n and S_g = e_i: G/(G−1)·Σe²/n² = Σe²/(n(n−1)) = std(ddof=1)²/n, the same number.
    d = np.random.default_rng(0).normal(0.3, 1.0, 17)
    clustered, ordinary = clustered_difference(d, list(range(17))), difference_summary(d)
    assert clustered.sem == pytest.approx(ordinary.sem, rel=1e-12)
    assert clustered.mean == pytest.approx(ordinary.mean) and clustered.n == 17 and clustered.n_clusters == 17
    assert clustered.positive_share == pytest.approx(ordinary.positive_share)


def test_clustered_standard_error_by_hand():
    d = [1.0, 2.0, 3.0, 6.0]  # mean 3, residuals −2, −1, 0, 3
    got = clustered_difference(d, ["a", "a", "b", "b"])  # S_a = −3, S_b = 3
    assert got.mean == pytest.approx(3.0) and got.n_clusters == 2
    assert got.sem == pytest.approx(math.sqrt(2 / 1 * (9 + 9) / 16))
    assert "2 contents" in str(got)


def test_one_content_has_no_standard_error():
    got = clustered_difference([1.0, 2.0, 4.0], ["c", "c", "c"])
    assert math.isnan(got.sem) and got.n_clusters == 1
    assert evaluate_claim(_test(got, control=None, paper_effect=1.0)).outcome == "inconclusive"


def test_shared_contents_make_the_naive_standard_error_too_small():
    d, labels = _shared_contents(np.random.default_rng(1), contents=10, per_content=8, sd_content=1.0, sd_noise=0.5)
    assert clustered_difference(d, labels).sem > 2 * difference_summary(d).sem


def test_clustered_standard_error_matches_the_spread_of_the_mean_over_simulations():
    # 10 contents x 8 samples, content s.d. 1, noise s.d. 0.5: the mean of 80 samples has variance
    # 1/10 + 0.25/80 = 0.103125 (the contents dominate). With equal cluster sizes CR1's variance is unbiased.
    g, m, runs = 10, 8, 2000
    true_var = 1.0 / g + 0.25 / (g * m)
    rng = np.random.default_rng(2)
    means, cr_var, naive_var = np.empty(runs), np.empty(runs), np.empty(runs)
    for r in range(runs):
        d, labels = _shared_contents(rng, g, m, 1.0, 0.5)
        c = clustered_difference(d, labels)
        means[r], cr_var[r], naive_var[r] = c.mean, c.sem**2, difference_summary(d).sem ** 2
    # The empirical variance of 2000 normal means has relative s.e. sqrt(2/1999) ≈ 3.2 %: 12 % is ~4 s.e.
    assert means.var(ddof=1) == pytest.approx(true_var, rel=0.12)
    # Each CR1 variance is true_var · χ²₉/9 (relative s.d. sqrt(2/9)); averaged over 2000 runs ≈ 1.05 %: 5 % is ~5 s.e.
    assert cr_var.mean() == pytest.approx(true_var, rel=0.05)
    assert naive_var.mean() < 0.25 * true_var  # ignoring the contents: about 7x too small a variance
    # Under this null, the 2-s.e. rule with the naive s.e. "finds" an effect in ~40 % of runs; with the
    # clustered s.e. about 8 % (t with 9 degrees of freedom beyond 2: 7.7 %; 2000 runs: ±0.6 %).
    assert np.mean(np.abs(means) > NOISE_K * np.sqrt(naive_var)) > 0.3
    assert np.mean(np.abs(means) > NOISE_K * np.sqrt(cr_var)) < 0.11


def test_clustered_difference_refuses_bad_input():
    with pytest.raises(AssertionError):
        clustered_difference([1.0, 2.0], ["a"])
    with pytest.raises(AssertionError):
        clustered_difference([1.0, float("nan")], ["a", "b"])
    with pytest.raises(AssertionError):
        clustered_difference([], [])


def test_old_paired_difference_is_unchanged():
    d = PairedDifference(0.5, 0.1, 4)
    assert d.n_clusters is None and d == PairedDifference(0.5, 0.1, 4)
    assert str(d) == "+0.5 ± 0.1 (s.e., n=4)"


# --- power -------------------------------------------------------------------------------------------


def test_minimum_detectable_effect_against_normal_quantiles():
    assert minimum_detectable_effect(0.1) == pytest.approx((2.0 + 0.8416212335729143) * 0.1)
    assert minimum_detectable_effect(0.1, k=1.0, power=0.5) == pytest.approx(0.1)  # z_0.5 = 0
    assert minimum_detectable_effect(2.0, power=0.975) == pytest.approx((2.0 + 1.959963984540054) * 2.0)
    assert math.isnan(minimum_detectable_effect(float("nan")))
    # What the definition says: an effect of exactly the mde is beyond 2 s.e. in 80 % of normal draws.
    sem, mde = 0.1, minimum_detectable_effect(0.1)
    assert 1 - NormalDist(mde, sem).cdf(NOISE_K * sem) == pytest.approx(0.8)
    with pytest.raises(AssertionError):
        minimum_detectable_effect(0.1, power=1.0)
    with pytest.raises(AssertionError):
        minimum_detectable_effect(-0.1)


@pytest.mark.parametrize(
    ("sd", "effect", "power"), [(1.0, 0.5, 0.8), (0.3, -0.01, 0.9), (2.0, 10.0, 0.8), (1.0, 1.0, 0.5)]
)
def test_required_samples_inverts_the_minimum_detectable_effect(sd, effect, power):
    n = required_samples(sd, effect, power=power)
    assert n >= 2
    assert minimum_detectable_effect(sd / math.sqrt(n), power=power) <= abs(effect)
    if n > 2:
        assert minimum_detectable_effect(sd / math.sqrt(n - 1), power=power) > abs(effect)


def test_required_samples_known_value():
    # (2 + 0.8416)² / 0.5² · 1² = 32.29 → 33 samples to see half a standard deviation.
    assert required_samples(1.0, 0.5) == 33
    assert required_samples(1.0, 1.0, k=1.0, power=0.5) == 2  # one sample would do, but has no s.e.
    with pytest.raises(AssertionError):
        required_samples(1.0, 0.0)


# --- the claim test and its outcomes -----------------------------------------------------------------


def _test(effect: PairedDifference, control: PairedDifference | None, paper_effect: float | None, sign: int = +1):
    return ClaimTest(
        name="LSO raises style similarity",
        paper='"LSO improves the style" (Fig. 5)',
        prediction="style similarity after LSO minus before > 2 clustered s.e.",
        sign=sign,
        effect=effect,
        control_name="no-op LSO (0 steps)" if control is not None else "none: the quantity has no do-nothing version",
        control=control,
        paper_effect=paper_effect,
        units="cos",
    )


NULL = PairedDifference(0.001, 0.01, 40, n_clusters=10)


def test_held_needs_the_effect_beyond_noise_and_a_quiet_control():
    result = evaluate_claim(_test(PairedDifference(0.05, 0.01, 40), NULL, paper_effect=0.04))
    assert result.outcome == "held" and result.detectable is True and not result.control_passes
    assert result.mde == pytest.approx(minimum_detectable_effect(0.01))


def test_control_passing_wins_over_held():
    busy_control = PairedDifference(0.04, 0.01, 40)  # the do-nothing method "improves" the style too
    result = evaluate_claim(_test(PairedDifference(0.05, 0.01, 40), busy_control, paper_effect=0.04))
    assert result.outcome == "control passes" and result.control_passes
    claim = claim_from_test(_test(PairedDifference(0.05, 0.01, 40), busy_control, paper_effect=0.04))
    assert claim.held is None and claim.verdict == "control passes"


def test_a_control_beyond_noise_the_other_way_does_not_pass():
    control = PairedDifference(-0.04, 0.01, 40)
    assert evaluate_claim(_test(PairedDifference(0.05, 0.01, 40), control, 0.04)).outcome == "held"


def test_opposite_effect_is_not_held_even_without_power_or_paper_effect():
    assert evaluate_claim(_test(PairedDifference(-0.05, 0.01, 40), NULL, None)).outcome == "not held"
    assert evaluate_claim(_test(PairedDifference(0.05, 0.01, 40), NULL, None, sign=-1)).outcome == "not held"


def test_within_noise_is_not_held_only_when_the_paper_effect_was_detectable():
    within = PairedDifference(0.01, 0.01, 40)  # mde = 0.0284
    powered = evaluate_claim(_test(within, NULL, paper_effect=0.05))
    assert powered.outcome == "not held" and powered.detectable is True
    small = evaluate_claim(_test(within, NULL, paper_effect=-0.02))  # |paper| < mde: could not have seen it
    assert small.outcome == "inconclusive" and small.detectable is False
    unknown = evaluate_claim(_test(within, NULL, paper_effect=None))
    assert unknown.outcome == "inconclusive" and unknown.detectable is None


def test_a_claim_without_control_must_say_why():
    result = evaluate_claim(_test(PairedDifference(0.05, 0.01, 40), None, 0.04))
    assert result.outcome == "held" and not result.control_passes
    claim = claim_from_test(_test(PairedDifference(0.05, 0.01, 40), None, 0.04))
    assert claim.control == "no control: none: the quantity has no do-nothing version" and claim.control_effect is None
    with pytest.raises(AssertionError):
        ClaimTest("n", "p", "pred", +1, PairedDifference(0.05, 0.01, 40), control_name=" ", control=None)
    with pytest.raises(AssertionError):
        ClaimTest("n", "p", " ", +1, PairedDifference(0.05, 0.01, 40), control_name="no-op", control=NULL)
    with pytest.raises(AssertionError):
        ClaimTest("n", "p", "pred", 0, PairedDifference(0.05, 0.01, 40), control_name="no-op", control=NULL)


# --- the report Claim --------------------------------------------------------------------------------


def test_old_style_claims_are_unchanged():
    old = report.Claim(name="n", paper="p", ours="o", held=False)
    assert old.verdict == "NOT held" and old.outcome is None and old.prediction is None
    assert report.Claim("c", "p", "o", None).verdict == "not testable"
    assert report.Claim("c", "p", "o", True).verdict == "held"
    assert report._plain(old) == {
        "name": "n",
        "paper": "p",
        "ours": "o",
        "held": False,
        "prediction": None,
        "control": None,
        "effect": None,
        "control_effect": None,
        "mde": None,
        "paper_effect": None,
        "detectable": None,
        "outcome": None,
        "verdict": "NOT held",
    }
    assert "| n | p | o | NOT held |" in report.claims_markdown([old])


def test_outcome_and_held_must_agree():
    with pytest.raises(AssertionError):
        report.Claim("n", "p", "o", True, outcome="inconclusive")
    with pytest.raises(AssertionError):
        report.Claim("n", "p", "o", None, outcome="maybe")


@pytest.mark.parametrize(
    ("effect", "paper_effect", "held", "verdict"),
    [(0.05, 0.04, True, "held"), (-0.05, 0.04, False, "NOT held"), (0.0, None, None, "inconclusive")],
)
def test_claim_from_test_records_everything_and_survives_json(effect, paper_effect, held, verdict):
    d = np.random.default_rng(3).normal(effect, 0.02, 40)
    measured = clustered_difference(d, np.repeat(np.arange(20), 2))
    control = clustered_difference(np.random.default_rng(4).normal(0.0, 0.02, 40), np.repeat(np.arange(20), 2))
    test = ClaimTest(
        name="LSO raises style similarity",
        paper='"LSO improves the style" (Fig. 5)',
        prediction="after − before > 2 clustered s.e.",
        sign=+1,
        effect=measured,
        control_name="no-op LSO (0 steps)",
        control=control,
        paper_effect=paper_effect,
        units="cos",
    )
    claim = test.to_claim()
    assert claim.held is held and claim.verdict == verdict
    assert claim.effect == {"mean": measured.mean, "sem": measured.sem, "n": 40, "n_clusters": 20, "units": "cos"}
    assert claim.control == "no-op LSO (0 steps)" and claim.control_effect["mean"] == control.mean
    assert claim.mde == pytest.approx(minimum_detectable_effect(measured.sem))
    assert "no-op LSO" in claim.ours and "smallest detectable" in claim.ours
    record = json.loads(json.dumps(report._plain([claim])))[0]
    assert record["outcome"] == evaluate_claim(test).outcome and record["verdict"] == verdict
    assert record["prediction"] == test.prediction and record["paper_effect"] == paper_effect
    assert record["effect"]["sem"] == pytest.approx(measured.sem) and record["effect"]["n_clusters"] == 20
    assert f"| {verdict} |" in report.claims_markdown([claim])


def test_nan_standard_errors_are_written_as_strings():
    claim = claim_from_test(_test(PairedDifference(0.5, float("nan"), 1), None, 0.1))
    text = json.dumps(report._plain(claim), allow_nan=False)  # raises on a bare NaN
    record = json.loads(text)
    assert record["mde"] == "nan" and record["effect"]["sem"] == "nan" and record["outcome"] == "inconclusive"
