"""measure.intervals: the one interval type, the one 'did it move' test, peaks; and the loopholes headline heatmap."""

import json
import math

import numpy as np
import pytest

from proxygap.measure.intervals import (
    Interval, count_interval, excludes, moved, peak_along, seed_interval, separated,
)
from proxygap.measure.stats import t_interval, wilson_interval


# ---------------------------------------------------------------- the type
def test_from_values_is_the_t_interval():
    x = [0.1, 0.3, 0.2, 0.5, 0.4]
    iv = Interval.from_values(x)
    assert (iv.mean, iv.lo, iv.hi) == t_interval(np.asarray(x))
    assert iv.n == 5 and iv.method == "t" and iv.has_spread
    d = iv.to_dict()
    assert d == {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": 5, "method": "t"}
    assert json.loads(json.dumps(d)) == d  # JSON-ready


def test_from_values_leaves_out_undefined_and_clips_to_bounds():
    assert Interval.from_values([None, 0.2, math.nan, 0.4]) == Interval.from_values([0.2, 0.4])
    empty = Interval.from_values([None, math.nan]).to_dict()
    assert empty == {"mean": None, "lo": None, "hi": None, "n": 0, "method": "t"}
    clipped = Interval.from_values([0.0, 0.0, 0.25], bounds=(0.0, 1.0))
    assert clipped.lo == 0.0 and clipped.mean == pytest.approx(1 / 12)
    assert clipped.hi == t_interval([0.0, 0.0, 0.25])[2]
    one = Interval.from_values([0.3])
    assert (one.mean, one.lo, one.hi, one.n) == (0.3, 0.3, 0.3, 1) and not one.has_spread


def test_from_counts_is_wilson_and_keeps_k():
    iv = Interval.from_counts(3, 10)
    assert (iv.mean, iv.lo, iv.hi) == wilson_interval(3, 10) and iv.method == "wilson" and iv.n == 10
    assert Interval.from_counts(0, 0).to_dict()["mean"] is None
    d = count_interval(2.5, 4.0)  # best-of-n: fractional expected counts
    assert d["k"] == 2.5 and d["n"] == 4 and d["mean"] == 0.625 and d["lo"] < 0.625 < d["hi"]


def test_hull_and_from_dict():
    t = Interval.from_values([0.0, 0.0])  # every seed saw 0: no spread
    w = Interval.from_counts(0, 50)
    h = Interval.hull(t, w.to_dict())
    assert (h.mean, h.lo, h.hi) == (0.0, 0.0, w.hi) and h.has_spread
    assert Interval.from_dict(h.to_dict()) == h
    assert Interval.from_dict({"mean": 1.0, "ci": [0.5, 1.5]}).hi == 1.5  # the older shape still reads


# ---------------------------------------------------------------- did it move?
def test_a_tiny_gain_with_a_wide_interval_is_not_a_rise():
    gains = [0.5, -0.5, 1e-16 * 3]  # mean 1e-16
    iv = Interval.from_values(gains)
    assert iv.mean > 0 and iv.lo < 0 < iv.hi
    assert moved(iv) is None and not excludes(iv)


def test_a_clear_gain_is_a_rise_and_a_clear_loss_a_fall():
    assert moved(Interval.from_values([0.30, 0.32, 0.31])) == "up"
    assert moved(seed_interval([-0.30, -0.32, -0.31])) == "down"  # dicts work too
    assert excludes(Interval.from_values([0.30, 0.32, 0.31]), 0.0)
    assert moved(Interval.from_values([0.30, 0.32, 0.31]), value=0.5) == "down"


def test_one_seed_or_no_spread_never_claims():
    assert moved(Interval.from_values([0.8])) is None  # one seed: lo = hi = mean, no interval
    assert moved(Interval.from_values([0.25, 0.25, 0.25])) is None  # seeds agree exactly: no interval either
    assert moved(None) is None and moved(Interval.from_values([])) is None
    # Counts from a single seed are still an interval (n = trials): two Wilson intervals can separate.
    assert separated(Interval.from_counts(90, 100), Interval.from_counts(10, 100)) == "up"
    assert separated(Interval.from_counts(11, 100), Interval.from_counts(10, 100)) is None


# ---------------------------------------------------------------- peaks along a curve
def _curves(per_seed_gold: list[list[float]]) -> tuple[list[dict], list[list[dict]]]:
    curves = [[{"kl": float(j), "gold": g} for j, g in enumerate(seed)] for seed in per_seed_gold]
    points = [{"kl": float(j), "gold": seed_interval([c[j]["gold"] for c in curves])} for j in range(len(curves[0]))]
    return points, curves


def test_peak_claims_only_what_the_seeds_support():
    # Mean gain at the peak is 1e-16 with a wide spread: the old rule ("peak index > 0") called it a rise.
    points, curves = _curves([[0.0, 0.5], [0.0, -0.5], [0.0, 3e-16]])
    p = peak_along(points, "gold", curves)
    assert p["peak_index"] == 1 and p["gain_at_peak"]["mean"] == pytest.approx(1e-16)
    assert not p["rises_above_base"] and not p["interior_peak"]

    points, curves = _curves([[0.0, 0.30, 0.10], [0.0, 0.32, 0.12], [0.0, 0.31, 0.09]])
    p = peak_along(points, "gold", curves)
    assert p["rises_above_base"] and p["interior_peak"] and not p["ends_below_base"]
    assert p["peak_x"] == 1.0 and p["drop_after_peak"]["lo"] > 0

    points, curves = _curves([[0.0, 0.30, 0.10]])  # one seed: the same shape, nothing claimed
    p = peak_along(points, "gold", curves)
    assert p["peak_index"] == 1 and not p["rises_above_base"] and not p["interior_peak"]

    points, curves = _curves([[0.0, -0.2], [0.0, -0.21], [0.0, -0.19]])
    assert peak_along(points, "gold", curves)["ends_below_base"]

    # a point without data is never the peak (argmax would pick the first nan, and then claim nothing)
    points, curves = _curves([[0.0, 1.0, None, 0.5], [0.0, 1.1, None, 0.5], [0.0, 1.2, None, 0.5]])
    p = peak_along(points, "gold", curves)
    assert p["peak_index"] == 1 and p["rises_above_base"] and p["gain_at_peak"]["mean"] == pytest.approx(1.1)


def test_a_chosen_peak_claims_a_rise_no_more_often_than_nominal_with_no_effect():
    """The peak is picked by the seeds it is tested on; at 95% a rise would be claimed in about
    4.5% of null curves (3 seeds, 6 points after the base), not 2.5%. Bonferroni's correction holds it."""
    rng = np.random.default_rng(0)
    trials, rises, naive = 2000, 0, 0
    for _ in range(trials):
        walks = np.concatenate([np.zeros((3, 1)), np.cumsum(rng.normal(size=(3, 6)), axis=1)], axis=1)
        points, curves = _curves(walks.tolist())
        p = peak_along(points, "gold", curves)
        rises += p["rises_above_base"]
        i = p["peak_index"]
        naive += moved(Interval.from_values(walks[:, i] - walks[:, 0])) == "up"
    assert p["peak_confidence"] == pytest.approx(1 - 0.05 / 6)
    assert naive / trials > 0.035  # the uncorrected test at the chosen point: the inflation is real
    assert rises / trials <= 0.025


def test_overoptimization_peak_uses_the_interval():
    from proxygap.experiments.overoptimization import _peak
    from proxygap.measure.intervals import curve_intervals

    curves = [[{"n": n, "kl": kl, "d": math.sqrt(kl), "rm": 0.0, "rater": 0.0, "gold": g}
               for n, kl, g in zip((1, 2, 4), (0.0, 0.19, 0.64), gold)]
              for gold in ([0.0, 0.5, 0.0], [0.0, -0.5, 0.0], [0.0, 3e-16, 0.0])]
    points = curve_intervals(curves, ("n", "kl", "d"), ("rm", "rater", "gold"), ("rm", "rater", "gold"))
    assert points[1]["gold"]["mean"] == pytest.approx(1e-16) and set(points[1]["gold_gain"]) >= {"mean", "lo", "hi"}
    peak = _peak(points, curves)
    assert peak["peak_kl"] == 0.19 and not peak["rises_above_base"] and not peak["interior_peak"]


# ---------------------------------------------------------------- the loopholes report's headline
@pytest.fixture(scope="module")
def loopholes_run(tiny_base_dir, tmp_path_factory):
    from proxygap.cli import main

    out = tmp_path_factory.mktemp("intervals") / "lh"
    assert main(["run", "loopholes", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--out", str(out)]) == 0
    return out


def test_report_draws_the_change_heatmap_first(loopholes_run):
    from proxygap.cli import main

    out = loopholes_run
    (out / "change_vs_base.png").unlink()
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    png = out / "change_vs_base.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    # The picture opens the page, the findings follow, the per-item prose is folded.
    assert html.index('src="change_vs_base.png"') < html.index("Findings") < html.index("<details>")
    r = json.loads((out / "results.json").read_text())
    for g in r["regimes"]:
        for change in g["change_vs_base"].values():
            assert {"mean", "lo", "hi", "n", "method", "direction"} <= set(change)
            # One seed: no interval across seeds, so no change is claimed.
            assert change["direction"] == "unclear"


def test_curve_intervals_pair_gains_by_seed():
    from proxygap.measure.intervals import curve_intervals

    curves = [[{"n": 1, "gold": 1.0}, {"n": 2, "gold": 1.5}], [{"n": 1, "gold": 3.0}, {"n": 2, "gold": 3.5}]]
    points = curve_intervals(curves, ("n",), ("gold",), ("gold",))
    assert [p["n"] for p in points] == [1, 2]
    assert points[1]["gold"]["mean"] == 2.5 and points[1]["gold"]["lo"] < 2.5  # the seeds differ a lot
    gain = points[1]["gold_gain"]
    assert gain["mean"] == 0.5 and gain["lo"] == gain["hi"] == 0.5  # but gain the same: no spread, no claim


def test_newcombe_difference_of_two_rates_against_the_published_example():
    from proxygap.measure.intervals import Interval, paired_rate_change

    # Newcombe (1998), Statistics in Medicine 17:873, the 56/70 - 48/80 example, method 10: 0.0524 to 0.3339.
    iv = Interval.from_count_difference(56, 70, 48, 80)
    assert iv.mean == pytest.approx(0.2) and iv.lo == pytest.approx(0.0524, abs=5e-4)
    assert iv.hi == pytest.approx(0.3339, abs=5e-4)
    # Seeds agreeing exactly get the pooled episodes' interval; one seed stays a point; spread stays t.
    agree = paired_rate_change([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], trials=48)
    # a seed whose rate is undefined (nan) is left out like None, not turned into a [-1, 1] interval
    assert paired_rate_change([1.0, 1.0, 1.0, float("nan")], [0.0, 0.0, 0.0, 0.0], trials=48) == agree
    assert Interval.from_count_difference(float("nan"), 10, 3, 10).mean is None
    assert agree["method"] == "hull(t,newcombe)" and 0.9 < agree["lo"] < 1.0 and agree["hi"] == 1.0
    assert paired_rate_change([1.0], [0.0], trials=48) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 1, "method": "t"}
    assert paired_rate_change([0.5, 0.6, 0.4], [0.0, 0.0, 0.1], trials=48)["method"] == "t"


def test_seed_differences_pair_seed_by_seed_and_leave_out_a_missing_seed():
    from proxygap.measure.intervals import seed_differences

    diffs = seed_differences([0.5, None, 0.9, 0.7], [0.25, 0.4, None, 0.5])
    assert diffs == [0.25, None, None, pytest.approx(0.2)]
    iv = Interval.from_values(diffs)
    assert iv.n == 2 and iv.mean == pytest.approx(0.225)
    with pytest.raises(ValueError, match="different lengths"):
        seed_differences([0.1, 0.2], [0.1])


def test_a_design_effect_widens_the_wilson_interval_to_the_effective_trials():
    plain, clustered = count_interval(12, 200), count_interval(12, 200, design_effect=4.0)
    assert clustered["mean"] == pytest.approx(plain["mean"]) and clustered["n"] == 200 and clustered["k"] == 12
    assert clustered["n_effective"] == pytest.approx(50.0)
    same = Interval.from_counts(3, 50)  # 12 of 200 at a design effect of 4 is 3 of 50 trials
    assert (clustered["lo"], clustered["hi"]) == pytest.approx((same.lo, same.hi))
    assert clustered["lo"] < plain["lo"] and clustered["hi"] > plain["hi"]
    with pytest.raises(ValueError, match="design_effect"):
        count_interval(1, 10, design_effect=0.5)


def test_pooling_seeds_keeps_their_clustering_and_independent_seeds_pool_as_one_count():
    from proxygap.measure.intervals import pooled_count_interval

    independent = pooled_count_interval([{"k": 10, "n": 100}, {"k": 10, "n": 100}])
    plain = count_interval(20, 200)  # same rate, independent trials: the plain pooled count
    assert (independent["lo"], independent["hi"], independent["k"], independent["n"]) == pytest.approx(
        (plain["lo"], plain["hi"], 20, 200))
    clustered = pooled_count_interval([{"k": 10, "n": 100, "n_effective": 25.0}, {"k": 10, "n": 100, "n_effective": 25.0}])
    assert clustered["n_effective"] == pytest.approx(50.0) and clustered["k"] == 20
    # unequal rates: each seed's variance weighted by its share, (1/4)(.1 .9/25 + .3 .7/25) = .003, over .2 .8/200
    mixed = pooled_count_interval([{"k": 10, "n": 100, "n_effective": 25.0}, {"k": 30, "n": 100, "n_effective": 25.0}])
    assert mixed["design_effect"] == pytest.approx(0.003 / (0.2 * 0.8 / 200))
    # no hits: no variance to estimate, so the seeds' own effective trials (a prompt's 4 samples one trial)
    none = pooled_count_interval([{"k": 0, "n": 100, "n_effective": 25.0}, {"k": 0, "n": 100, "n_effective": 25.0}])
    assert none["mean"] == 0.0 and none["n"] == 200 and none["n_effective"] == pytest.approx(50.0)
    assert none["hi"] == pytest.approx(Interval.from_counts(0, 50).hi) and none["hi"] > count_interval(0, 200)["hi"]
    assert pooled_count_interval([])["mean"] is None


def test_ratio_interval_pairs_seeds_and_leaves_out_undefined_ones():
    iv = Interval.from_ratio([0.3, None, 0.35, 0.4, float("nan")], [2.0, 1.0, 1.9, 2.05, 2.0])
    assert iv.n == 3 and iv.method == "fieller"
    assert iv.mean == pytest.approx(1.05 / 5.95) and iv.lo < iv.mean < iv.hi and iv.has_spread
    assert not Interval.from_ratio([0.3], [2.0]).has_spread  # one seed: no interval to claim from
    unbounded = Interval.from_ratio([0.3, 0.35, 0.4], [0.2, -0.3, 0.1])
    assert unbounded.mean is not None and unbounded.lo is None and not unbounded.defined
    assert Interval.from_ratio([None], [1.0]).mean is None
