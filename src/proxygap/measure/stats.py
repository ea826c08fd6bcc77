"""Small interval helpers for reporting: across-seed means, rates, bootstrap.

Single-seed curves mislead here (ANCHORS: which citation a policy collapses onto drifts
between seeds), so every reported number should come with one of these intervals.
Edge cases return nan rather than raising: an empty group is "no data", and a report
should show it as such rather than crash half-way through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _st


def _as_1d(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def mean_se(x: ArrayLike) -> tuple[float, float]:
    """(mean, standard error of the mean) with se = std(ddof=1) / sqrt(n).

    se is 0 for n = 1 (no spread can be estimated; callers that need honesty about
    that should look at n). Empty input gives (nan, nan).
    """
    a = _as_1d(x)
    if a.size == 0:
        return math.nan, math.nan
    if a.size < 2:
        return float(a[0]), 0.0
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(a.size))


def t_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval for the mean, for a handful of seeds.

    mean +/- t_{(1+c)/2, n-1} * se. With n = 1 there is no spread to estimate and
    lo = hi = mean; empty input gives (nan, nan, nan).
    """
    _check_confidence(confidence)
    a = _as_1d(values)
    m, se = mean_se(a)
    if a.size < 2:
        return m, m, m
    half = float(_st.t.ppf(0.5 + confidence / 2, df=a.size - 1)) * se
    return m, m - half, m + half



def fieller_interval(numerators: ArrayLike, denominators: ArrayLike,
                     confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """(ratio, lo, hi): Fieller's interval for mean(x) / mean(y) from paired per-seed values.

    The interval is every R for which the t-test of mean(x - R y) = 0 does not reject: the roots of
    (x̄ - R ȳ)² = t² (v_xx - 2 R v_xy + R² v_yy), with v the (co)variances of the means and t the
    Student quantile on n - 1 degrees of freedom (Fieller 1954). It is bounded only where ȳ itself
    is clearly away from 0; otherwise lo and hi are None (the ratio could be anything). The mean
    of per-seed ratios it replaces is unstable where a seed's denominator is near 0, and biased
    (Jensen) where it varies. With one seed lo = hi = ratio; ȳ = 0 gives (nan, None, None)."""
    _check_confidence(confidence)
    x, y = _as_1d(numerators), _as_1d(denominators)
    if x.shape != y.shape:
        raise ValueError(f"need one denominator per numerator, got {x.size} and {y.size}")
    if x.size == 0:
        return math.nan, None, None
    xm, ym = float(x.mean()), float(y.mean())
    if ym == 0.0:
        return math.nan, None, None
    ratio = xm / ym
    if x.size < 2:
        return ratio, ratio, ratio
    cov = np.cov(np.stack([x, y]), ddof=1) / x.size  # of the means
    t2 = float(_st.t.ppf(0.5 + confidence / 2, df=x.size - 1)) ** 2
    a = ym * ym - t2 * cov[1, 1]
    b = xm * ym - t2 * cov[0, 1]
    c = xm * xm - t2 * cov[0, 0]
    if a <= 0.0:  # ȳ not clearly away from 0: the set is unbounded
        return ratio, None, None
    # a > 0 and the quadratic is <= 0 at the ratio itself (there it is -t² var(x̄ - ratio ȳ)), so
    # the discriminant is >= 0: a negative one is round-off (exactly proportional seeds)
    root = math.sqrt(max(0.0, b * b - a * c))
    return ratio, min(ratio, (b - root) / a), max(ratio, (b + root) / a)


def cluster_design_effect(hits: Sequence[bool], clusters: Sequence) -> float:
    """Kish's design effect of a rate whose trials come in clusters (several samples of one prompt):
    ``weighted_design_effect`` at unit weights. A prompt the model always answers the same way counts
    as one trial, not as its number of samples; ``n / deff`` is the effective number of trials."""
    if len(hits) != len(clusters):
        raise ValueError(f"need one cluster per hit, got {len(hits)} hits and {len(clusters)} clusters")
    return weighted_design_effect([float(bool(h)) for h in hits], [1.0] * len(hits), clusters)


def weighted_design_effect(hits: Sequence[float], weights: Sequence[float], clusters: Sequence) -> float:
    """Kish's design effect for weighted trials: trial i counts ``weights[i]`` times and hits
    ``hits[i]`` in [0, 1] (a best-of-n pick: weights summing to 1 per prompt, an expected hit).

    From the clusters' weighted totals k_c, n_c (n = sum n_c, p = sum k_c / n): the ratio
    estimator's variance C/(C-1) * sum (k_c - p n_c)^2 / n^2 over the binomial p(1-p)/(n-1), both
    unbiased, so independent trials in clusters of one give exactly 1. Kept within [1, sum n_c^2 / n],
    the design effect of clusters whose trials all agree. Where the data cannot tell (p at 0 or 1,
    or a single cluster) it is that upper end: with no hits at all, nothing says the prompts'
    samples were independent, so each prompt counts as one trial (conservative)."""
    if not len(hits) == len(weights) == len(clusters):
        raise ValueError(f"need one weight and cluster per hit, got {len(hits)}, {len(weights)} and {len(clusters)}")
    totals: dict = {}
    for h, w, c in zip(hits, weights, clusters):
        k, m = totals.get(c, (0.0, 0.0))
        totals[c] = (k + w * h, m + w)
    totals = {c: km for c, km in totals.items() if km[1] > 0}
    n = sum(m for _, m in totals.values())
    if n <= 1:
        return 1.0
    worst = max(1.0, sum(m * m for _, m in totals.values()) / n)  # every cluster's trials alike
    p = sum(k for k, _ in totals.values()) / n
    if len(totals) < 2 or p <= 0.0 or p >= 1.0:
        return worst
    var_clustered = len(totals) / (len(totals) - 1) * sum((k - p * m) ** 2 for k, m in totals.values()) / n ** 2
    return min(worst, max(1.0, var_clustered / (p * (1 - p) / (n - 1))))


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(p, lo, hi) for a rate of k successes in n trials, Wilson score interval.

    Wilson 1927; preferred over the normal (Wald) interval because it stays inside
    [0, 1] and does not collapse to width 0 at k = 0 or k = n — the rare-event rates
    (tampering, invented citations) are exactly where Wald fails. n = 0 gives nan.
    """
    _check_confidence(confidence)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan, math.nan
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Mathematically lo = 0 at k = 0 and hi = 1 at k = n; set them exactly rather than
    # report 0.9999999999999999, and clip round-off elsewhere into [0, 1].
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return p, lo, hi


def bootstrap_ci(
    values: ArrayLike,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(stat(values), lo, hi): percentile bootstrap interval (Efron 1979).

    Resamples values with replacement n_boot times with a seeded generator, so the
    interval is reproducible. For statistics without a t-interval (medians, ratios).
    n = 1 gives lo = hi = the estimate; empty input gives (nan, nan, nan).
    """
    _check_confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    a = _as_1d(values)
    if a.size == 0:
        return math.nan, math.nan, math.nan
    est = float(stat(a))
    if a.size == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    # stat is any callable on a 1-D array, so apply it row by row (no axis= assumed).
    boots = np.array([float(stat(a[row])) for row in idx])
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [tail, 1 - tail])
    return est, float(lo), float(hi)
