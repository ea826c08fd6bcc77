"""Interval helpers: containment, bounds, edge cases."""

import math

import numpy as np
import pytest

from scipy import stats as st

from proxygap.measure.stats import bootstrap_ci, fieller_interval, mean_se, t_interval, wilson_interval


def test_mean_se():
    m, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_se([3.0]) == (3.0, 0.0)
    assert all(math.isnan(v) for v in mean_se([]))


def test_t_interval():
    x = np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    m, lo, hi = t_interval(x)
    assert lo < m < hi and m == pytest.approx(0.3)
    # t_{0.975, 4} = 2.776; wider than the normal 1.96 for few seeds.
    assert hi - m == pytest.approx(2.776445 * x.std(ddof=1) / math.sqrt(5), rel=1e-5)
    m90, lo90, hi90 = t_interval(x, confidence=0.9)
    assert lo < lo90 < m90 < hi90 < hi
    assert t_interval([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in t_interval([]))
    with pytest.raises(ValueError):
        t_interval(x, confidence=1.0)


def test_t_interval_covers_the_mean_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        _, lo, hi = t_interval(rng.normal(1.0, 2.0, 5))
        hits += lo <= 1.0 <= hi
    assert 0.93 < hits / 2000 < 0.97


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (0, 1), (1, 1)])
def test_wilson_bounds(k, n):
    p, lo, hi = wilson_interval(k, n)
    assert p == k / n
    assert 0.0 <= lo <= p <= hi <= 1.0
    assert hi - lo > 0  # unlike Wald, never zero width at k = 0 or k = n


def test_wilson_known_value_and_edges():
    # Wilson interval for 5/10 at 95%: (0.2366, 0.7634).
    _, lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-4) and hi == pytest.approx(0.76341, abs=1e-4)
    assert wilson_interval(0, 10)[1] == 0.0
    assert wilson_interval(10, 10)[2] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(-1, 10)


def test_bootstrap_ci():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 200)
    est, lo, hi = bootstrap_ci(x)
    assert est == pytest.approx(x.mean())
    assert lo < est < hi
    # Close to the normal-theory interval for the mean at n = 200.
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)  # reproducible
    med, lo_m, hi_m = bootstrap_ci(x, stat=np.median, n_boot=300)
    assert lo_m <= med <= hi_m
    assert bootstrap_ci([4.0]) == (4.0, 4.0, 4.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_the_design_effect_counts_a_prompt_that_always_answers_alike_once():
    from proxygap.measure.stats import cluster_design_effect

    prompts = [i for i in range(40) for _ in range(8)]
    alike = [i % 2 == 0 for i in prompts]  # each prompt all right or all wrong: 40 trials, not 320
    assert cluster_design_effect(alike, prompts) == pytest.approx(8.0)  # at most the size of a cluster
    rng = np.random.default_rng(0)
    independent = list(rng.random(len(prompts)) < 0.3)  # no prompt effect: about 1
    assert 1.0 <= cluster_design_effect(independent, prompts) < 1.4
    singletons = list(rng.random(100) < 0.3)
    assert cluster_design_effect(singletons, list(range(100))) == 1.0  # clusters of one are independent trials
    # Where the data cannot tell (no hits, all hits, one cluster): every prompt one trial, conservatively.
    assert cluster_design_effect([False] * len(prompts), prompts) == pytest.approx(8.0)
    assert cluster_design_effect([True] * 8, [0] * 8) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="one cluster per hit"):
        cluster_design_effect([True], [0, 1])


def test_the_weighted_design_effect_by_hand_and_one_trial_per_best_of_n_pick():
    from proxygap.measure.stats import cluster_design_effect, weighted_design_effect

    # clusters a: 1 1 0, b: 0 0, c: 1 -> n 6, p 1/2; sum (k_c - p n_c)^2 = 0.25 + 1 + 0.25;
    # (3/2 * 1.5 / 36) / (0.25 / 5) = 1.25, below the all-alike 14/6
    hits, clusters = [1, 1, 0, 0, 0, 1], list("aaabbc")
    assert weighted_design_effect([float(h) for h in hits], [1.0] * 6, clusters) == pytest.approx(1.25)
    assert cluster_design_effect([bool(h) for h in hits], clusters) == pytest.approx(1.25)
    # best-of-n: weights summing to 1 per prompt, so each prompt is one trial whatever its pool size:
    # 10 prompts of 2 samples at weight 1/2, alternately both hit and both missed, are 10 trials
    pairs = [i for i in range(10) for _ in range(2)]
    both = [float(i % 2 == 0) for i in pairs]
    assert weighted_design_effect(both, [0.5] * 20, pairs) == pytest.approx(1.0)
    assert cluster_design_effect([h == 1.0 for h in both], pairs) == pytest.approx(2.0)  # unweighted: 20 samples
    with pytest.raises(ValueError, match="one weight and cluster per hit"):
        weighted_design_effect([1.0], [1.0], [0, 1])


def test_fieller_interval_is_where_the_t_test_of_x_minus_r_y_stops_rejecting():
    x = np.array([0.93, 1.21, 1.30, 1.05])
    y = np.array([1.44, 1.32, 1.45, 1.38])
    ratio, lo, hi = fieller_interval(x, y)
    assert ratio == pytest.approx(x.mean() / y.mean())  # a ratio of means, not a mean of ratios
    assert ratio != pytest.approx(np.mean(x / y))
    t = st.t.ppf(0.975, df=3)
    for end, sign in ((lo, 1.0), (hi, -1.0)):  # at each end, |t| of mean(x - R y) is exactly the quantile
        z = x - end * y
        assert z.mean() / (z.std(ddof=1) / 2) == pytest.approx(sign * t, rel=1e-9)
    inside = x - ratio * y
    assert abs(inside.mean() / (inside.std(ddof=1) / 2)) < t
    _, lo90, hi90 = fieller_interval(x, y, confidence=0.9)
    assert lo < lo90 < ratio < hi90 < hi


def test_fieller_interval_edges():
    # a denominator whose mean is not clearly away from 0: the set of ratios is unbounded
    ratio, lo, hi = fieller_interval([1.0, 1.2, 0.9], [0.5, -0.4, 0.1])
    assert ratio == pytest.approx(3.1 / 0.2) and lo is None and hi is None
    assert fieller_interval([2.0], [4.0]) == (0.5, 0.5, 0.5)  # one seed: no spread
    assert fieller_interval([1.0, 1.1, 1.2], [2.0, 2.2, 2.4]) == pytest.approx((0.5, 0.5, 0.5))  # proportional seeds
    # two seeds whose denominators are proportional but spread: t on 1 degree of freedom cannot bound it
    assert fieller_interval([1.0, 3.0], [2.0, 6.0])[1:] == (None, None)
    r, lo, hi = fieller_interval([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(r) and lo is None and hi is None
    with pytest.raises(ValueError):
        fieller_interval([1.0, 2.0], [1.0])
