"""The `scaling` experiment: the grid, its cells and fits, the findings' claims, and its checks."""

import json

import numpy as np
import pytest

from proxygap.cli import main
from proxygap.config import ConfigError, apply_overrides
from proxygap.experiments.scaling import ScalingConfig, _trend, units
from proxygap.oversight.judges import RaterFlaws
from proxygap.pipeline.base_model import BaseModelRecipe, build_base_model
from tests.conftest import TINY_RECIPE


@pytest.fixture(scope="module")
def tiny_pair(tiny_base_dir, tmp_path_factory):
    """Two sizes of one tiny world (same corpus, so the same tokenizer)."""
    wider = apply_overrides(BaseModelRecipe(), [*TINY_RECIPE, "model.n_embd=48"])
    return str(tiny_base_dir), str(build_base_model(wider, tmp_path_factory.mktemp("tiny_wide"), progress=False))


def test_rater_quality_scales_every_flaw():
    flaws = RaterFlaws()
    assert flaws.scaled(1.0) == flaws
    assert all(v == 0.0 for v in vars(flaws.scaled(0.0)).values())
    assert flaws.scaled(0.5).label_noise == pytest.approx(flaws.label_noise / 2)


def test_units_train_one_rm_per_size_labels_quality_and_seed():
    cfg = ScalingConfig(seeds=(0, 1), rm_sizes=("xs", "s"), n_labels=(100, 200), rater_qualities=(0.0, 1.0))
    us = units(cfg)
    assert len(us) == 2 * 2 * 2 * 2 and len({u.key for u in us}) == len(us)


def test_scaling_smoke(tiny_pair, tmp_path):
    a, b = tiny_pair
    out = tmp_path / "scaling"
    assert main(["run", "scaling", "--preset", "smoke", "--quiet", "--out", str(out),
                 "--set", f"rm_sizes={a},{b}", "--set", f"policy_sizes={a},{b}", "--set", f"pairs_model={a}",
                 "--set", "rm.max_new_tokens=12", "--set", "bon.max_new_tokens=12", "--set", "rl.max_new_tokens=12"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert len(r["cells"]) == 2 * 2 * 2 * 2
    for c in r["cells"]:
        assert {"rm_size", "policy_size", "n_labels", "rater_quality", "fit"} <= set(c)
        for key in ("alpha", "beta", "d_star", "r2"):
            assert {"mean", "lo", "hi", "n"} <= set(c["fit"][key])
        assert c["bon_points"][0]["n"] == 1 and "kl_pool" in c["bon_points"][-1]
        assert ("rl" in c) == (c["n_labels"] == 64)  # smoke: RL only at the largest label count
        assert c["rm_params"] and c["rm_params"] > 0
        assert not c["fit"]["errors"] and all(v is not None for v in c["fit"]["alpha"]["per_seed"])
        assert not c["fit_pool_kl"]["errors"]
        if "rl" in c:
            vs = c["rl"]["vs_bon_at_equal_kl"]
            assert vs["seeds_beyond_pool"] + sum(v is not None for v in vs["gold_gain_difference"]["per_seed"]) == 1
    params = {c["rm_size"]: c["rm_params"] for c in r["cells"]}
    assert params[b] > params[a]
    assert set(r["findings"]) >= {"rm_size", "n_labels", "policy_size", "rater_quality", "policy_size_pool_kl", "rl_vs_bon"}
    assert len(r["findings"]["rl_vs_bon"]) == sum("rl" in c for c in r["cells"])
    # every trend is gated on its fits' R² at the configured level
    for axis in ("rm_size", "n_labels", "policy_size", "rater_quality_trend"):
        for trend in r["findings"][axis].values():
            assert trend.get("min_r2_gate", r["config"]["min_fit_r2"]) == r["config"]["min_fit_r2"]
            assert trend.get("gated_by_fit", 0) <= trend["no_claim"]
    for name in ("alpha_beta.png", "policy_size.png", "rater_quality.png", "report.html"):
        assert (out / name).is_file()
    assert "With one seed there is no interval" in (out / "report.html").read_text()  # smoke: one seed, said in words
    # one held-out block for every label count of a seed; training sets grow with the labels
    infos = [json.loads(f.read_text())["result"] for f in sorted((out / "units").glob("*.json"))]
    assert len({i["rm"]["n_heldout_pairs"] for i in infos}) == 1
    train = {i["n_labels"]: i["rm"]["n_pairs_sampled"] - i["rm"]["n_heldout_pairs"] for i in infos}
    assert train == {32: 32 - round(0.2 * 32), 64: 64 - round(0.2 * 64)}
    # gold is fitted on its gain over the policy's base (n = 1), on the formula's d
    from proxygap.measure.fits import fit_dict

    for policy in infos[0]["policies"]:
        points = policy["bon_points"]
        refit = fit_dict("bon", np.array([p["d"] for p in points]), np.array([p["gold"] - points[0]["gold"] for p in points]))
        assert policy["bon_fits"]["gold"]["alpha"] == pytest.approx(refit["alpha"])
        assert policy["bon_fits"]["gold"]["alpha"] != pytest.approx(
            fit_dict("bon", np.array([p["d"] for p in points]), np.array([p["gold"] for p in points]))["alpha"])


def test_models_of_another_world_are_refused(tiny_base_dir, capsys):
    assert main(["run", "scaling", "--preset", "smoke", "--set", f"rm_sizes={tiny_base_dir},xs",
                 "--set", f"policy_sizes={tiny_base_dir}", "--set", f"pairs_model={tiny_base_dir}"]) == 2
    assert "another world or tokenizer" in capsys.readouterr().err
    assert main(["run", "scaling", "--preset", "smoke", "--set", "rm.n_pairs=99"]) == 2
    assert "unknown config key rm.n_pairs (each cell's labels: set n_labels)" in capsys.readouterr().err
    assert main(["run", "scaling", "--preset", "smoke", "--set", "rm.backbone=s"]) == 2
    assert "set rm_sizes" in capsys.readouterr().err


def _cell(rm, n, alphas, quality=0.0):
    return {"rm_size": rm, "policy_size": "s", "n_labels": n, "rater_quality": quality,
            "fit": {"alpha": {"per_seed": alphas}}}


def test_rater_quality_is_a_trend_axis_paired_by_seed():
    res = {"rm_sizes": ["s"], "n_labels": [100], "policy_sizes": ["s"], "rater_qualities": [0.0, 1.0],
           "cells": [_cell("s", 100, [1.0, 1.1, 0.9], 0.0), _cell("s", 100, [0.2, 0.4, 0.1], 1.0)]}
    t = _trend(res, "rater_quality", "alpha")
    assert (t["up"], t["down"], t["no_claim"]) == (0, 1, 0) and t["slices"][0]["from"] == 0.0


def test_trend_claims_only_where_the_paired_interval_excludes_zero():
    res = {"rm_sizes": ["xs", "m"], "n_labels": [100], "policy_sizes": ["s"], "rater_qualities": [0.0],
           "cells": [_cell("xs", 100, [1.0, 1.1, 0.9]), _cell("m", 100, [2.0, 2.2, 1.9])]}
    t = _trend(res, "rm_size", "alpha")
    assert (t["up"], t["down"], t["no_claim"]) == (1, 0, 0)
    res["cells"][1] = _cell("m", 100, [0.5, 1.6, 1.0])  # the seeds disagree: no claim
    t = _trend(res, "rm_size", "alpha")
    assert (t["up"], t["down"], t["no_claim"]) == (0, 0, 1)
    res["cells"][1] = _cell("m", 100, [2.0, None, None])  # one seed defined: no interval, no claim
    assert _trend(res, "rm_size", "alpha")["no_claim"] == 1
    res["cells"][1] = _cell("m", 100, [2.0, 2.2, None])  # a seed missing in one cell: no claim, not a re-pairing
    assert _trend(res, "rm_size", "alpha")["no_claim"] == 1


def test_trend_claims_nothing_on_a_poorly_fitting_curve():
    # The same clear change of alpha, once on good fits and once where a seed's fit of one cell has R² 0.1:
    # the fitted form does not describe that curve, so the slice makes no claim (and says why).
    res = {"rm_sizes": ["xs", "m"], "n_labels": [100], "policy_sizes": ["s"], "rater_qualities": [0.0],
           "cells": [_cell("xs", 100, [1.0, 1.1, 0.9]), _cell("m", 100, [2.0, 2.2, 1.9])]}
    for c in res["cells"]:
        c["fit"]["r2"] = {"per_seed": [0.9, 0.8, 0.95]}
    t = _trend(res, "rm_size", "alpha", min_r2=0.5)
    assert (t["up"], t["gated_by_fit"], t["min_r2"]) == (1, 0, 0.8)
    res["cells"][1]["fit"]["r2"] = {"per_seed": [0.9, 0.1, 0.95]}
    t = _trend(res, "rm_size", "alpha", min_r2=0.5)
    assert (t["up"], t["no_claim"], t["gated_by_fit"]) == (0, 1, 1) and t["slices"][0]["gated_by_fit"]
    assert _trend(res, "rm_size", "alpha", min_r2=0.0)["up"] == 1  # 0: no gate
    res["cells"][1] = _cell("m", 100, [0.5, 1.6, 1.0]) | {"fit": {"alpha": {"per_seed": [0.5, 1.6, 1.0]},
                                                                  "r2": {"per_seed": [0.1, 0.1, 0.1]}}}
    assert _trend(res, "rm_size", "alpha", min_r2=0.5)["gated_by_fit"] == 0  # the interval did not move anyway


def test_an_undefined_fit_r2_fails_the_gate_wherever_it_stands():
    # gold flat at every d > 0 gives R² nan (None once on disk): min() of [0.9, nan] would be 0.9
    from proxygap.measure.fits import fit_bon
    assert np.isnan(fit_bon([0, 1, 2, 3], [0, .5, .5, .5]).r2)
    for undefined in (float("nan"), None):
        for per_seed in ([0.9, undefined, 0.95], [undefined, 0.9, 0.95]):
            res = {"rm_sizes": ["xs", "m"], "n_labels": [100], "policy_sizes": ["s"], "rater_qualities": [0.0],
                   "cells": [_cell("xs", 100, [1.0, 1.1, 0.9]), _cell("m", 100, [2.0, 2.2, 1.9])]}
            res["cells"][0]["fit"]["r2"] = {"per_seed": [0.9, 0.8, 0.95]}
            res["cells"][1]["fit"]["r2"] = {"per_seed": per_seed}
            t = _trend(res, "rm_size", "alpha", min_r2=0.5)
            assert (t["up"], t["gated_by_fit"]) == (0, 1) and t["slices"][0]["r2_undefined"], per_seed
            assert t["slices"][0]["min_r2"] == 0.8  # the worst finite one, named beside the flag
            assert t["gated_by_undefined_r2"] == 1
            assert _trend(res, "rm_size", "alpha", min_r2=0.0)["up"] == 1  # 0: no gate at all


def test_d_star_counts_a_falling_curve_as_zero_and_withholds_censored_seeds():
    from proxygap.experiments.scaling import _fit_intervals
    from proxygap.measure.fits import fit_dict

    d = np.array([0.0, 0.5, 1.0, 1.5])
    peaks = fit_dict("bon", d, d * (1.0 - 0.5 * d))  # d* = 1.0, inside the range
    falls = fit_dict("bon", d, d * (-0.2 - 0.3 * d))  # only falls: its maximum is the base
    rises = fit_dict("bon", d, d * (0.5 + 0.1 * d))  # no maximum: censored
    both = _fit_intervals([peaks, falls, peaks])
    assert both["d_star"]["per_seed"] == pytest.approx([1.0, 0.0, 1.0]) and both["d_star"]["at_base"] == 1
    assert both["d_star"]["mean"] == pytest.approx(2 / 3)  # the falling seed is not dropped
    censored = _fit_intervals([peaks, rises, peaks])
    assert censored["d_star"]["mean"] is None and censored["d_star"]["no_maximum"] == 1
    assert censored["alpha"]["mean"] is not None  # alpha and beta keep every seed

def test_rl_subsets():
    from proxygap.experiments.scaling import wants_rl

    cfg = ScalingConfig(rm_sizes=("xs", "m"), n_labels=(100, 200), rater_qualities=(0.0, 1.0), rl_cells="reference")
    cells = [{"rm_size": r, "n_labels": n, "rater_quality": q} for r in cfg.rm_sizes for n in cfg.n_labels
             for q in cfg.rater_qualities]
    assert [c for c in cells if wants_rl(cfg, c)] == [{"rm_size": "m", "n_labels": 200, "rater_quality": 0.0}]
    largest = ScalingConfig(rm_sizes=("xs", "m"), n_labels=(100, 200), rl_cells="largest_labels")
    assert sum(wants_rl(largest, c) for c in cells) == 4
    every = ScalingConfig(rm_sizes=("xs", "m"), n_labels=(100, 200), rl_cells="all")
    assert all(wants_rl(every, c) for c in cells)
    assert not any(wants_rl(ScalingConfig(n_labels=(100, 200), rl_cells="none"), c) for c in cells)


def test_fits_need_three_points_beyond_the_base():
    with pytest.raises(ConfigError, match="bon.pool_size"):
        apply_overrides(ScalingConfig(), ["bon.pool_size=4"])
    with pytest.raises(ConfigError, match="rl.steps=2 with rl.eval_every=1 gives 2 evaluations"):
        apply_overrides(ScalingConfig(), ["rl.steps=2", "rl.eval_every=1"])
    apply_overrides(ScalingConfig(), ["rl.steps=2", "rl.eval_every=1", "rl_cells=none"])  # no RL fit: fine
    apply_overrides(ScalingConfig(), ["rl.steps=5", "rl.eval_every=2"])  # evaluations at 2, 4 and 5


def test_rl_is_compared_with_best_of_n_at_the_kl_rl_paid():
    from proxygap.experiments.scaling import _rl_vs_bon

    bon = [{"n": n, "kl_pool": k, "gold": g} for n, k, g in ((1, 0.0, 0.5), (2, 0.2, 0.6), (4, 0.6, 0.7))]
    seeds = [{"bon_points": bon, "rl_points": [{"kl": 0.0, "gold": 0.5}, {"kl": 0.4, "gold": 0.9 + e}]}
             for e in (0.0, 0.01, -0.01)]
    out = _rl_vs_bon(seeds)
    # best-of-n's gain at KL 0.4 is 0.15 (halfway between 0.1 and 0.2); RL's is 0.4
    assert out["gold_gain_difference"]["mean"] == pytest.approx(0.25) and out["direction"] == "up"
    seeds[0]["rl_points"][-1]["kl"] = 0.9  # past the pool's largest KL: not compared
    out = _rl_vs_bon(seeds)
    assert out["seeds_beyond_pool"] == 1 and out["gold_gain_difference"]["per_seed"][0] is None


def test_axes_must_be_listed_smallest_first(capsys):
    with pytest.raises(ConfigError, match="smallest first"):
        ScalingConfig(n_labels=(1200, 300))
    assert main(["run", "scaling", "--preset", "smoke", "--set", "rm_sizes=s,xs"]) == 2
    assert "smallest first" in capsys.readouterr().err
