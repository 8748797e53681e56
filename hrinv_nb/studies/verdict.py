"""The rule that turns a measured difference into a verdict: "held" when the difference has the
expected sign and lies beyond ``k`` standard errors of zero (``k = 2`` by default, roughly a 95 %
two-sided interval under a normal approximation).

:func:`paired_difference` summarises per-sample differences ``b − a`` measured on the same samples
(the same targets, the same (content, reference) pairs): their mean, the *sample* standard error
``std(ddof=1) / sqrt(n)`` and the share of samples where ``b > a``. With one sample the standard
error is undefined (NaN), and no difference is then ever beyond noise.

:func:`clustered_difference` is the same summary for samples that share a content image (several
references styled onto one content are not independent draws): its standard error is cluster-robust.
:func:`minimum_detectable_effect` and :func:`required_samples` say what a sample size can detect.

A paper claim is checked as a :class:`ClaimTest`: the prediction written before the run, the sign of
the predicted effect, the method's measured effect and a *control* -- a do-nothing method measured by
the same test, which must not pass it. :func:`evaluate_claim` gives one of four outcomes (see
:data:`Outcome`) with the smallest detectable effect, and :func:`claim_from_test` the report's
:class:`~hrinv_nb.notebook.report.Claim` carrying all of it into the notebook's JSON record.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # the report imports torch; the verdict rule itself needs numpy only
    from ..notebook.report import Claim

NOISE_K = 2.0
"""Standard errors a difference must exceed to count as more than noise."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-sample differences, its standard error, the number of samples, the share > 0,
    and the number of contents the samples share when the standard error is cluster-robust."""

    mean: float
    sem: float
    n: int
    positive_share: float = float("nan")
    n_clusters: int | None = None  # None: every sample independent (the ordinary standard error)

    def __str__(self) -> str:
        if self.n_clusters is None:
            return f"{self.mean:+.3g} ± {self.sem:.2g} (s.e., n={self.n})"
        return f"{self.mean:+.3g} ± {self.sem:.2g} (clustered s.e., n={self.n} in {self.n_clusters} contents)"

    def as_record(self, units: str = "") -> dict[str, Any]:
        """The numbers for a JSON record: mean, sem, n, n_clusters, units."""
        return {"mean": self.mean, "sem": self.sem, "n": self.n, "n_clusters": self.n_clusters, "units": units}


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Sample standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN for fewer than two values."""
    x = np.asarray(values, dtype=float).ravel()
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def difference_summary(differences: Sequence[float] | np.ndarray) -> PairedDifference:
    """:class:`PairedDifference` of already computed per-sample differences (a 1-D sequence)."""
    d = np.asarray(differences, dtype=float)
    assert d.ndim == 1 and d.size >= 1, f"expected a non-empty 1-D sequence, got shape {d.shape}"
    assert np.isfinite(d).all(), f"non-finite differences: {d}"
    return PairedDifference(
        mean=float(d.mean()), sem=standard_error(d), n=int(d.size), positive_share=float((d > 0).mean())
    )


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedDifference:
    """``b − a`` per sample (``a`` and ``b`` measured on the same samples, in the same order), summarised."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert x.shape == y.shape and x.ndim == 1, f"paired samples must be 1-D of equal length: {x.shape} vs {y.shape}"
    return difference_summary(y - x)


def beyond_noise(diff: PairedDifference, sign: int = +1, k: float = NOISE_K) -> bool:
    """Held: ``diff`` has the sign ``sign`` (+1 or −1) and its magnitude exceeds ``k`` standard errors."""
    assert sign in (-1, 1), f"sign must be +1 or -1, got {sign}"
    return bool(sign * diff.mean > k * diff.sem)  # False when sem is NaN


def verdict(diff: PairedDifference, sign: int = +1, k: float = NOISE_K) -> bool | None:
    """True if beyond noise with sign ``sign``, False if beyond noise with the opposite sign, None within noise."""
    if beyond_noise(diff, sign, k):
        return True
    if beyond_noise(diff, -sign, k):
        return False
    return None


def noise_threshold(diff: PairedDifference, k: float = NOISE_K) -> float:
    """``k`` standard errors of ``diff``: differences of this size or below count as noise."""
    return k * diff.sem


def clustered_difference(
    differences: Sequence[float] | np.ndarray, clusters: Sequence[Hashable] | np.ndarray
) -> PairedDifference:
    """Mean of per-sample differences with a cluster-robust standard error; ``clusters[i]`` names the
    content sample ``i`` was made from (samples sharing a content are correlated, not independent).

    The variance of the mean is the usual CR1 one: with ``G`` clusters, ``n`` samples, residuals
    ``e_i = d_i − mean`` and ``S_g`` the sum of the residuals in cluster ``g``,
    ``var = G/(G−1) · Σ_g S_g² / n²``. With every sample its own cluster (``G = n``, ``S_g = e_i``)
    this is ``n/(n−1) · Σ e_i² / n² = Σ e_i² / (n(n−1)) = std(ddof=1)² / n``: *exactly* the ordinary
    standard error, so the G/(G−1) factor plays the role of ddof=1. With equal cluster sizes it is also
    unbiased for the variance of the mean (``E Σ_g S_g² = m²(G−1)·var(cluster mean)`` for ``m`` samples
    per cluster); with few clusters its square root still runs a little low, as any estimated s.e. does.
    NaN when there are fewer than two clusters: one content says nothing about content-to-content spread.
    """
    d = np.asarray(differences, dtype=float)
    assert d.ndim == 1 and d.size >= 1, f"expected a non-empty 1-D sequence, got shape {d.shape}"
    assert np.isfinite(d).all(), f"non-finite differences: {d}"
    labels = list(clusters) if not isinstance(clusters, np.ndarray) else clusters.tolist()
    assert len(labels) == d.size, f"{len(labels)} cluster labels for {d.size} differences"
    index: dict[Hashable, int] = {}
    codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)
    g = len(index)
    mean = float(d.mean())
    if g < 2:
        sem = float("nan")
    else:
        sums = np.bincount(codes, weights=d - mean, minlength=g)
        sem = math.sqrt(g / (g - 1) * float((sums**2).sum()) / d.size**2)
    return PairedDifference(mean=mean, sem=sem, n=int(d.size), positive_share=float((d > 0).mean()), n_clusters=g)


def _z(power: float) -> float:
    assert 0.0 < power < 1.0, f"power must lie in (0, 1), got {power}"
    return NormalDist().inv_cdf(power)


def minimum_detectable_effect(sem: float, k: float = NOISE_K, power: float = 0.8) -> float:
    """Smallest true effect that the "beyond ``k`` standard errors" rule detects with probability ``power``.

    The estimate is taken as normal around the true effect ``δ`` with s.d. ``sem``; it lands beyond
    ``k·sem`` with probability ``Φ(δ/sem − k)``, which equals ``power`` at ``δ = (k + z_power)·sem``
    (the far tail on the wrong side is negligible). NaN for a NaN ``sem`` (one sample or one content).
    """
    assert k >= 0, f"k must be non-negative, got {k}"
    z = _z(power)
    if math.isnan(sem):
        return float("nan")
    assert sem >= 0, f"a standard error cannot be negative: {sem}"
    return (k + z) * sem


def required_samples(sd: float, effect: float, k: float = NOISE_K, power: float = 0.8) -> int:
    """Smallest ``n ≥ 2`` with ``(k + z_power)·sd/sqrt(n) ≤ |effect|``: how many samples let the rule see ``effect``.

    ``sd`` is a pilot's per-sample standard deviation. For samples sharing contents, pass the s.d. of
    the per-content mean differences and read ``n`` as the number of contents (or pass
    ``clustered sem · sqrt(n_pilot)``, the s.d. the pilot's clustered s.e. implies). At least two,
    since one sample has no standard error.
    """
    assert math.isfinite(sd) and sd > 0, f"sd must be positive and finite, got {sd}"
    assert math.isfinite(effect) and effect != 0, f"effect must be non-zero and finite, got {effect}"
    target = abs(effect)
    n = max(2, math.ceil(((k + _z(power)) * sd / target) ** 2))
    # The ceiling of a float square may be one off; settle it on the inequality itself.
    while minimum_detectable_effect(sd / math.sqrt(n), k, power) > target:
        n += 1
    while n > 2 and minimum_detectable_effect(sd / math.sqrt(n - 1), k, power) <= target:
        n -= 1
    return n


Outcome = Literal["held", "not held", "inconclusive", "control passes"]
"""The four verdicts of a :class:`ClaimTest`:

- ``"held"``: the effect lies beyond ``k`` s.e. in the predicted direction and the control does not;
- ``"not held"``: the effect lies beyond noise the other way, or within noise although the test could
  detect the paper's effect (``mde ≤ |paper_effect|``);
- ``"inconclusive"``: within noise, and the test was too small to see the paper's effect (or no paper
  effect was given to judge that);
- ``"control passes"``: the do-nothing control passes the same test, so the test cannot tell the
  method from doing nothing; it wins over every other outcome.
"""


@dataclass(frozen=True)
class ClaimTest:
    """A paper claim as a pre-registered test: the prediction and the control are fixed before the run.

    ``effect`` is the method's measured difference, ``control`` the same measurement for a method that
    should *not* produce the effect (a no-op LSO, a random direction, chance, a method known to change
    the style). When no control is possible, ``control`` is None and ``control_name`` says why.
    ``paper_effect`` is the paper's effect in the same units, used to judge whether the sample size
    could have detected it.
    """

    name: str
    paper: str
    prediction: str
    sign: int
    effect: PairedDifference
    control_name: str
    control: PairedDifference | None = None
    paper_effect: float | None = None
    units: str = ""
    k: float = NOISE_K
    power: float = 0.8

    def __post_init__(self) -> None:
        assert self.sign in (-1, 1), f"sign must be +1 or -1, got {self.sign}"
        assert self.name.strip() and self.paper.strip(), "a claim needs a name and the paper's words"
        assert self.prediction.strip(), f"{self.name}: the prediction (what counts as held) must be written down"
        assert self.control_name.strip(), (
            f"{self.name}: name the control, or say why there can be none (control_name, with control=None)"
        )
        assert self.k >= 0 and 0.0 < self.power < 1.0, f"k={self.k}, power={self.power}"
        assert self.paper_effect is None or math.isfinite(self.paper_effect), f"paper_effect={self.paper_effect}"

    def to_claim(self, ours: str | None = None) -> Claim:
        """The report's :class:`~hrinv_nb.notebook.report.Claim` of this test (see :func:`claim_from_test`)."""
        return claim_from_test(self, ours)


@dataclass(frozen=True)
class ClaimResult:
    """What :func:`evaluate_claim` found: the outcome, the smallest detectable effect, whether it is at
    most the paper's effect (None without a paper effect), and whether the control passed."""

    outcome: Outcome
    mde: float
    detectable: bool | None
    control_passes: bool


def evaluate_claim(test: ClaimTest) -> ClaimResult:
    """The :data:`Outcome` of ``test``, with its smallest detectable effect (from the effect's s.e.)."""
    mde = minimum_detectable_effect(test.effect.sem, test.k, test.power)
    detectable = None if test.paper_effect is None or math.isnan(mde) else bool(mde <= abs(test.paper_effect))
    control_passes = test.control is not None and beyond_noise(test.control, test.sign, test.k)
    outcome: Outcome
    if control_passes:  # doing nothing passes too: the test cannot discriminate, whatever the method did
        outcome = "control passes"
    elif beyond_noise(test.effect, test.sign, test.k):
        outcome = "held"
    elif beyond_noise(test.effect, -test.sign, test.k) or detectable:
        outcome = "not held"  # the opposite effect, or no effect where the paper's would have shown
    else:
        outcome = "inconclusive"
    return ClaimResult(outcome=outcome, mde=mde, detectable=detectable, control_passes=control_passes)


def claim_from_test(test: ClaimTest, ours: str | None = None) -> Claim:
    """The report's ``Claim`` of ``test``: ``held`` True / False / None (inconclusive or control passes),
    with the prediction, control, measured effects, smallest detectable effect and outcome recorded.

    ``ours`` is the table's text; by default the effect, the control and the smallest detectable effect.
    """
    from ..notebook.report import Claim

    result = evaluate_claim(test)
    units = f" {test.units}" if test.units else ""
    control_text = test.control_name if test.control is None else f"{test.control_name}: {test.control}"
    if ours is None:
        paper = "" if test.paper_effect is None else f" (paper {test.paper_effect:+.3g}{units})"
        ours = f"{test.effect}{units}; control {control_text}; smallest detectable {result.mde:.2g}{units}{paper}"
    return Claim(
        name=test.name,
        paper=test.paper,
        ours=ours,
        held={"held": True, "not held": False}.get(result.outcome),
        prediction=test.prediction,
        control=test.control_name if test.control is not None else f"no control: {test.control_name}",
        effect=test.effect.as_record(test.units),
        control_effect=None if test.control is None else test.control.as_record(test.units),
        mde=result.mde,
        paper_effect=test.paper_effect,
        detectable=result.detectable,
        outcome=result.outcome,
    )
