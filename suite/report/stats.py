"""The statistics behind the report: t-intervals over seeds and the tests behind each verdict.

A comparison is *decisive* only when both sides have at least ``MIN_SEEDS`` values, their 95%
t-intervals do not overlap and the test's p-value is below ``ALPHA``. Anything less leaves a
claim inconclusive.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
MIN_SEEDS = 3


@dataclass(frozen=True)
class Summary:
    """Mean and 95% t-interval of one metric over the seeds of one configuration."""

    n: int
    mean: float
    low: float    # NaN when n < 2, because one value has no interval
    high: float

    @property
    def has_interval(self) -> bool:
        return self.n >= 2


def summarize(values: Sequence[float]) -> Summary:
    """Return the mean and the two-sided 95% Student-t interval of ``values``; NaNs are dropped."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(array)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan)
    sem = float(array.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sem
    return Summary(n, mean, mean - half, mean + half)


@dataclass(frozen=True)
class Outcome:
    """The result of one test: which way it points, if decisively, and how it was reached.

    ``direction`` is +1 when the evidence decisively supports the condition, -1 when it decisively
    contradicts it and 0 when it is undecided. ``note`` gives the reason for an undecided test.
    """

    direction: int
    test: str
    statistic: float
    p: float
    note: str = ""


def _disjoint(a: Summary, b: Summary) -> bool:
    return a.high < b.low or b.high < a.low


def welch(treatment: Sequence[float], control: Sequence[float], better: str) -> tuple[Summary, Summary, Outcome]:
    """Compare two samples with Welch's t-test (scipy.stats.ttest_ind, equal_var=False).

    Args:
        treatment, control: one value per seed.
        better: ``"higher"`` or ``"lower"``: the direction of the treatment that the claim expects.

    Returns:
        The two summaries and an outcome that is decisive only with enough seeds, disjoint
        intervals and p < 0.05.
    """
    a, b = summarize(treatment), summarize(control)
    test = "Welch's t-test"
    if min(a.n, b.n) < MIN_SEEDS:
        return a, b, Outcome(0, test, math.nan, math.nan, f"fewer than {MIN_SEEDS} seeds per side")
    x = [v for v in treatment if math.isfinite(v)]
    y = [v for v in control if math.isfinite(v)]
    if np.var(x) == 0 and np.var(y) == 0:
        # scipy warns and returns an infinite statistic here; decide it directly.
        statistic = math.copysign(math.inf, a.mean - b.mean) if a.mean != b.mean else 0.0
        p = 0.0 if a.mean != b.mean else 1.0
    else:
        with warnings.catch_warnings():
            # Nearly equal values (one side at zero spread) make scipy warn about precision; the
            # interval check above has already decided whether the test matters.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(x, y, equal_var=False)
        statistic, p = float(result.statistic), float(result.pvalue)
    sign = 1 if (a.mean > b.mean) == (better == "higher") else -1
    if a.mean == b.mean or not _disjoint(a, b):
        return a, b, Outcome(0, test, statistic, p, "the 95% intervals overlap")
    if not p < ALPHA:
        return a, b, Outcome(0, test, statistic, p, f"p >= {ALPHA:.2f}")
    return a, b, Outcome(sign, test, statistic, p)


def threshold(values: Sequence[float], bound: float, side: str) -> tuple[Summary, Outcome]:
    """Test whether the mean of ``values`` lies above or below ``bound`` (one-sample t-test).

    Args:
        values: one value per seed.
        bound: the threshold.
        side: ``"above"`` or ``"below"``: where the claim expects the mean.

    Returns:
        The summary and an outcome that is decisive when there are enough seeds, the whole 95%
        interval lies on one side of ``bound`` and the one-sample t-test gives p < 0.05.
    """
    summary = summarize(values)
    test = "one-sample t-test"
    if summary.n < MIN_SEEDS:
        return summary, Outcome(0, test, math.nan, math.nan, f"fewer than {MIN_SEEDS} seeds")
    x = [v for v in values if math.isfinite(v)]
    if np.var(x) == 0:
        statistic = math.copysign(math.inf, summary.mean - bound) if summary.mean != bound else 0.0
        p = 0.0 if summary.mean != bound else 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # as in welch
            result = stats.ttest_1samp(x, bound)
        statistic, p = float(result.statistic), float(result.pvalue)
    if summary.low > bound:
        where = "above"
    elif summary.high < bound:
        where = "below"
    else:
        return summary, Outcome(0, test, statistic, p, f"the 95% interval contains {bound:g}")
    if not p < ALPHA:
        return summary, Outcome(0, test, statistic, p, f"p >= {ALPHA:.2f}")
    return summary, Outcome(1 if where == side else -1, test, statistic, p)


def proportion(successes: int, trials: int, bound: float) -> tuple[float, float, Outcome]:
    """Test whether a success share lies above ``bound`` (exact binomial test, Clopper-Pearson).

    Returns:
        The 95% interval of the share and an outcome: +1 when the interval lies above ``bound``,
        -1 when it lies below, 0 otherwise (and always 0 without trials).
    """
    test = "exact binomial test"
    if trials == 0:
        return math.nan, math.nan, Outcome(0, test, math.nan, math.nan, "no episodes to test")
    result = stats.binomtest(successes, trials, bound)
    interval = result.proportion_ci(confidence_level=CONFIDENCE, method="exact")
    low, high = float(interval.low), float(interval.high)
    direction = 0
    if low > bound:
        direction = 1
    elif high < bound:
        direction = -1
    note = "" if direction else f"the 95% interval contains {bound:g}"
    return low, high, Outcome(direction, test, successes / trials, float(result.pvalue), note)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Return Spearman's rank correlation of ``x`` and ``y``; NaN with fewer than 3 pairs or no spread."""
    pairs = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3 or len({b for _, b in pairs}) < 2:
        return math.nan
    return float(stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
