"""The rule that turns a measured difference into a verdict: "held" when the difference has the
expected sign and lies beyond ``k`` standard errors of zero (``k = 2`` by default, roughly a 95 %
two-sided interval under a normal approximation).

:func:`paired_difference` summarises per-sample differences ``b − a`` measured on the same samples
(the same targets, the same (content, reference) pairs): their mean, the *sample* standard error
``std(ddof=1) / sqrt(n)`` and the share of samples where ``b > a``. With one sample the standard
error is undefined (NaN), and no difference is then ever beyond noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NOISE_K = 2.0
"""Standard errors a difference must exceed to count as more than noise."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-sample differences, its standard error, the number of samples, the share > 0."""

    mean: float
    sem: float
    n: int
    positive_share: float = float("nan")

    def __str__(self) -> str:
        return f"{self.mean:+.3g} ± {self.sem:.2g} (s.e., n={self.n})"


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
