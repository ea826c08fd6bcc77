"""Best-of-n: analytic KL and the unbiased estimator (Nakano et al. 2021, App. I)."""

import itertools
import math

import numpy as np
import pytest

from proxygap.measure.best_of_n import bon_curve, bon_expected, bon_kl, bon_weights


def test_bon_kl():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5)
    ks = [bon_kl(n) for n in range(1, 200)]
    assert all(b > a for a, b in zip(ks, ks[1:]))
    assert bon_kl(60_000) == pytest.approx(math.log(60_000) - 1, abs=1e-4)
    with pytest.raises(ValueError):
        bon_kl(0)
    with pytest.raises(ValueError):
        bon_kl(2.5)


def _exact_by_enumeration(proxy, scores, n, ties):
    """Average over every n-subset of the pool of the chosen sample's score."""
    vals = []
    for sub in itertools.combinations(range(len(proxy)), n):
        best = max(proxy[i] for i in sub)
        tied = [i for i in sub if proxy[i] == best]
        # 'average' = uniform random tie-break (its expectation); 'stable' = largest pool index.
        vals.append(np.mean([scores[i] for i in tied]) if ties == "average" else scores[max(tied)])
    return float(np.mean(vals))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9])
def test_estimator_equals_enumeration_over_all_subsets(n):
    rng = np.random.default_rng(n)
    proxy, gold = rng.normal(size=9), rng.normal(size=9)
    for ties in ("average", "stable"):
        assert bon_expected(proxy, gold, n, ties=ties) == pytest.approx(
            _exact_by_enumeration(proxy, gold, n, ties), abs=1e-12
        )


@pytest.mark.parametrize("n", [2, 5, 8])
def test_estimator_with_ties_equals_enumeration(n):
    rng = np.random.default_rng(10 + n)
    proxy = rng.integers(0, 3, size=9).astype(float)  # a coarse rater: many ties
    gold = rng.normal(size=9)
    for ties in ("average", "stable"):
        assert bon_expected(proxy, gold, n, ties=ties) == pytest.approx(
            _exact_by_enumeration(proxy, gold, n, ties), abs=1e-12
        )


def test_average_ties_do_not_depend_on_pool_order():
    rng = np.random.default_rng(2)
    proxy = rng.integers(0, 2, size=30).astype(float)
    gold = rng.normal(size=30)
    perm = rng.permutation(30)
    a = bon_expected(proxy, gold, 4)
    assert bon_expected(proxy[perm], gold[perm], 4) == pytest.approx(a, abs=1e-12)


def test_estimator_agrees_with_monte_carlo():
    rng = np.random.default_rng(3)
    N, draws = 60, 20_000
    proxy = rng.normal(size=N)
    gold = 0.5 * proxy + rng.normal(size=N)
    for n in (1, 4, 16, N):
        idx = np.argsort(rng.random((draws, N)), axis=1)[:, :n]  # n without replacement
        picked = idx[np.arange(draws), np.argmax(proxy[idx], axis=1)]
        mc = gold[picked]
        se = mc.std(ddof=1) / math.sqrt(draws)
        assert abs(bon_expected(proxy, gold, n) - mc.mean()) < 4 * se + 1e-12


def test_n_equal_1_is_pool_mean_and_n_equal_N_is_top_sample():
    rng = np.random.default_rng(4)
    proxy, gold = rng.normal(size=50), rng.normal(size=50)
    assert bon_expected(proxy, gold, 1) == pytest.approx(gold.mean(), abs=1e-12)
    assert bon_expected(proxy, gold, 50) == pytest.approx(gold[np.argmax(proxy)], abs=1e-12)
    # The proxy's own curve rises with n.
    own = [bon_expected(proxy, proxy, n) for n in range(1, 51)]
    assert all(b >= a - 1e-12 for a, b in zip(own, own[1:]))


def test_weights_are_stable_for_large_pools():
    for N, n in [(100_000, 1), (100_000, 1000), (100_000, 99_999), (100_000, 100_000)]:
        w = bon_weights(N, n)
        assert np.all(np.isfinite(w)) and np.all(w >= 0)
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(w[: n - 1] == 0)
    assert bon_weights(100_000, 100_000)[-1] == pytest.approx(1.0)
    # Large pool end to end: n = 1 is the mean, and it runs quickly.
    rng = np.random.default_rng(5)
    proxy, gold = rng.normal(size=100_000), rng.normal(size=100_000)
    assert bon_expected(proxy, gold, 1) == pytest.approx(gold.mean(), abs=1e-12)


def test_batched_prompts_average_per_prompt_estimates():
    rng = np.random.default_rng(6)
    P, N = 7, 20
    proxy = rng.normal(size=(P, N))
    proxy[:, :5] = np.round(proxy[:, :5])  # some ties inside rows
    gold = rng.normal(size=(P, N))
    for n in (1, 3, N):
        want = np.mean([bon_expected(proxy[p], gold[p], n) for p in range(P)])
        assert bon_expected(proxy, gold, n) == pytest.approx(want, abs=1e-12)


def test_bon_curve():
    rng = np.random.default_rng(7)
    proxy = rng.normal(size=(4, 16))
    gold = proxy - 0.3 * proxy**2
    rows = bon_curve(proxy, {"reward/rm": proxy, "reward/gold": gold}, [1, 2, 4, 16])
    assert [r["n"] for r in rows] == [1, 2, 4, 16]
    for r in rows:
        assert r["kl"] == pytest.approx(bon_kl(r["n"]))
        assert r["d"] == pytest.approx(math.sqrt(r["kl"]))
        assert r["reward/gold"] == pytest.approx(bon_expected(proxy, gold, r["n"]))
        assert r["reward/rm"] == pytest.approx(bon_expected(proxy, proxy, r["n"]))
    with pytest.raises(ValueError, match="reserved"):
        bon_curve(proxy, {"kl": proxy}, [1])
    with pytest.raises(ValueError, match="shape"):
        bon_curve(proxy, {"g": gold[:, :3]}, [1])


def test_n_out_of_range_and_bad_input():
    proxy = np.arange(5.0)
    with pytest.raises(ValueError, match=r"n=6 is larger than the pool size N=5"):
        bon_expected(proxy, proxy, 6)
    with pytest.raises(ValueError, match=r"n=6 is larger than the pool size N=5"):
        bon_curve(proxy, {"g": proxy}, [1, 6])
    with pytest.raises(ValueError, match="at least 1"):
        bon_expected(proxy, proxy, 0)
    with pytest.raises(ValueError, match="same shape"):
        bon_expected(proxy, proxy[:4], 1)
    with pytest.raises(ValueError, match="finite"):
        bon_expected(np.array([1.0, np.nan]), np.zeros(2), 1)
    with pytest.raises(ValueError, match="ties"):
        bon_expected(proxy, proxy, 1, ties="random")


def test_pool_kl_matches_the_formula_on_distinct_samples_and_caps_on_repeats():
    from proxygap.measure.best_of_n import bon_kl_pool

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(4, 20000))
    for n in (2, 8, 64):
        assert abs(bon_kl_pool(distinct, n) - bon_kl(n)) < 1e-3 * bon_kl(n)
    two_outputs = np.array([0.0, 0.0, 1.0, 1.0])  # two equally likely completions
    assert bon_kl_pool(two_outputs, 64) <= np.log(2) + 1e-12 < bon_kl(64)
    assert bon_kl_pool(np.zeros(10), 16) == 0.0  # every sample ties: best-of-n is the base policy
    rows = bon_curve(two_outputs, {"proxy": two_outputs}, [1, 4])
    assert rows[1]["kl_pool"] == pytest.approx(bon_kl_pool(two_outputs, 4)) and rows[1]["d_pool"] <= rows[1]["d"]


def test_bon_kl_pool_on_unequal_ties_by_hand():
    from proxygap.measure.best_of_n import bon_kl_pool

    # levels with shares 3/4 and 1/4; best-of-2 wins the top with 1 - (3/4)^2 = 7/16
    expected = 9 / 16 * np.log((9 / 16) / (3 / 4)) + 7 / 16 * np.log((7 / 16) / (1 / 4))
    assert bon_kl_pool([0, 0, 0, 1], 2) == pytest.approx(expected) == pytest.approx(0.0830107, abs=1e-6)


def test_value_at_kl_reads_the_curve_between_points_and_never_beyond():
    from proxygap.measure.best_of_n import value_at_kl

    points = [{"kl_pool": 0.0, "kl": 0.0, "g": 0.0}, {"kl_pool": 0.2, "kl": 0.31, "g": 1.0},
              {"kl_pool": 0.5, "kl": 0.89, "g": 4.0}]
    assert value_at_kl(points, "g", 0.35) == pytest.approx(2.5)
    assert value_at_kl(points, "g", 0.2) == pytest.approx(1.0)
    assert value_at_kl(points, "g", 0.6) is None and value_at_kl(points, "g", -0.1) is None
    assert value_at_kl(points, "g", 0.6, kl_key="kl") == pytest.approx(1.0 + 3.0 * (0.29 / 0.58))
    assert value_at_kl(points, "g", float("nan")) is None


def test_a_k1_kl_just_below_zero_reads_at_the_base_not_beyond_the_curve():
    from proxygap.measure.best_of_n import gain_beyond_best_of_n
    curve = [{"gold": 0.0, "kl_pool": 0.0}, {"gold": 0.1, "kl_pool": 0.5}, {"gold": 0.2, "kl_pool": 1.0}]
    assert gain_beyond_best_of_n(0.05, -0.01, curve) == gain_beyond_best_of_n(0.05, 0.0, curve) == pytest.approx(0.05)
    assert gain_beyond_best_of_n(0.05, 1.5, curve) is None  # past the pool's largest KL: not measured
    assert gain_beyond_best_of_n(0.05, float("nan"), curve) is None
