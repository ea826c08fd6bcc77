"""The loopholes experiment: the one-flaw ablation, the prompt split, config checks, a smoke run."""

import dataclasses
import json

import numpy as np
import pytest

from proxygap.cli import main
from proxygap.config import ConfigError
from proxygap.experiments.loopholes import ablate
from proxygap.tasks.splits import STRATA, stratified_split as split_prompts, stratum
from proxygap.oversight.detectors import LOOPHOLES
from proxygap.oversight.judges import RaterFlaws
from proxygap.world.config import WorldConfig
from proxygap.world.world import build_world


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RaterFlaws)])
def test_ablation_switches_off_exactly_one_flaw(name):
    full = RaterFlaws(**{f.name: 0.3 for f in dataclasses.fields(RaterFlaws)})
    ablated = ablate(full, name)
    before, after = dataclasses.asdict(full), dataclasses.asdict(ablated)
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [name] and after[name] == 0.0
    assert dataclasses.asdict(full) == before  # the input is not modified


def test_ablation_of_an_unknown_flaw_is_a_config_error():
    with pytest.raises(ConfigError, match="no rater flaw 'gullible'"):
        ablate(RaterFlaws(), "gullible")


def test_split_is_stratified_disjoint_and_seeded():
    world = build_world(WorldConfig(seed=2, n_entities=20, n_attributes=2, n_decisions=6))
    held, train, counts = split_prompts(world, 0, per_stratum=5)
    assert not set(held) & set(train)
    assert sum(counts.values()) == len(held) and set(counts) == set(STRATA)
    by_stratum = {s: [p for p in held + train if stratum(p, world) == s] for s in STRATA}
    for s, k in counts.items():
        assert k == min(5, len(by_stratum[s]) // 2)
        assert sum(stratum(p, world) == s for p in held) == k
    assert split_prompts(world, 0, 5) == (held, train, counts)
    assert split_prompts(world, 1, 5)[0] != held


@pytest.mark.parametrize("argv, message", [
    (["--set", "rm.ensemble_size=1"], "needs rm.ensemble_size >= 2"),
    (["--set", "ablation_kl_coef=0.7"], "must be one of kl_coefs"),
    (["--set", "bon_ns=[4,128]"], "needs bon.pool_size >= 128"),
    (["--set", "ablation_flaws=[gullible]"], "is not one of"),
    (["--set", "kl_coefs=[0,0.2,0.2]"], "kl_coefs lists a value twice"),
    (["--set", "bon_ns=[]"], "bon_ns must hold at least one n"),
    (["--set", "bon.max_n=8"], "bon.max_n=8 is not used here"),
    (["--set", "bon.max_new_tokens=16"], "must equal rl.max_new_tokens"),
    (["--set", "rl.steps=0"], "rl.steps=0: the regime would be the base model"),
    (["--set", "sft.steps=0"], "sft.steps=0"),
    (["--set", "direct.steps=0"], "direct.steps=0"),
])
def test_bad_config_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main(["run", "loopholes", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxygap: error:") and message in err and "\n" not in err


def test_loopholes_smoke(tiny_base_dir, tmp_path):
    out = tmp_path / "lh"
    assert main(["run", "loopholes", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["seeds"] == [0] and r["config"]["seeds"] == [0]
    names = [g["name"] for g in r["regimes"]]
    assert names == ["base", "bon_2", "bon_4", "sft", "rl_beta_0", "rl_beta_0.1", "rl_ensemble_beta_0.1",
                     "expert_iteration", "dpo_beta_0.2", "ipo_beta_0.2"]
    for g in r["regimes"]:
        for key in ("capability", "rm", "rater", "gold", "kl"):
            assert {"mean", "lo", "hi", "n"} <= set(g[key]), (g["name"], key)
        assert set(g["exploit_rates"]) == set(LOOPHOLES) == set(g["blind_spot"])
        for rate in g["exploit_rates"].values():
            assert {"mean", "lo", "hi", "pooled"} <= set(rate) and {"k", "n", "mean", "lo", "hi"} <= set(rate["pooled"])
            pooled = rate["pooled"]  # on the effective trials: never more than the samples, the same rate
            assert pooled.get("n_effective", pooled["n"]) <= pooled["n"] + 1e-9
            assert pooled["mean"] is None or pooled["mean"] == pytest.approx(pooled["k"] / pooled["n"])
        for spot in g["blind_spot"].values():
            assert {"gap_when_fires", "own_term_gap", "contribution", "share_of_gap"} <= set(spot)
    base = r["regimes"][0]
    assert base["kl"]["mean"] == 0.0 and base["rm"]["mean"] == pytest.approx(0.0, abs=1e-5)  # recentred on the pool
    assert [g["kl"]["mean"] for g in r["regimes"][1:3]] == pytest.approx([0.193147, 0.636294], abs=1e-5)  # log n - (n-1)/n
    flaws = {f["flaw"]: f for f in r["ablation"]["flaws"]}
    assert set(flaws) == {"trusts_citations", "length_bias"}
    assert "skipped" in flaws["length_bias"]  # already 0 in the default rater
    done = flaws["trusts_citations"]
    assert done["expected_loopholes"] == ["invented_citation", "irrelevant_citation"]
    assert set(done["change_vs_full_rater"]) == set(LOOPHOLES)
    assert r["ablation"]["full_rater_regime"] == "rl_beta_0.1"
    assert set(r["findings"]["loopholes"]) == set(LOOPHOLES)
    for name in ("change_vs_base.png", "exploit_rates.png", "blind_spot.png", "ablation.png", "report.html",
                 "config.yaml", "meta.json"):
        assert (out / name).is_file(), name
    for name in ("report.html", "exploit_rates.png"):
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "exploit_rates.png").is_file()


def test_the_sft_example_is_the_sft_policys_answer(tiny_base_dir, tmp_path):
    """The examples' "sft" answer comes from SFT whether or not expert iteration runs after it;
    the length loophole is described by the quantile the run used."""
    answers, described = {}, {}
    for ei, quantile in (("true", 0.95), ("false", 0.9)):
        out = tmp_path / f"ei_{ei}"
        assert main(["run", "loopholes", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--out", str(out),
                     "--set", f"expert_iteration={ei}", "--set", "direct_losses=[]", "--set", "ablation_flaws=[]",
                     "--set", f"length_quantile={quantile}", "--quiet"]) == 0
        r = json.loads((out / "results.json").read_text())
        answers[ei] = [[a["text"] for a in e["answers"] if a["regime"] == "sft"] for e in r["examples"]]
        described[quantile] = r["loopholes"]["length_inflation"]["description"]
    assert answers["true"] and answers["true"] == answers["false"]
    assert described == {0.95: "longer than 95% of the corpus's answers of its kind",
                         0.9: "longer than 90% of the corpus's answers of its kind"}


def test_an_undefined_exploit_rate_is_drawn_as_n_a_not_as_zero():
    import matplotlib.pyplot as plt

    from proxygap.report.loopholes import _grouped_bars, _rate_bar

    undefined, measured = {"mean": None, "lo": None, "hi": None}, {"mean": 0.0, "lo": 0.0, "hi": 0.1}
    fig, ax = plt.subplots()
    _grouped_bars(ax, ["a", "b"], [("regime", [_rate_bar(undefined, True), _rate_bar(measured, True)])])
    assert [(round(t.get_position()[0], 3), t.get_text()) for t in ax.texts] == [(-0.0, "n/a")]  # only the first bar
    plt.close(fig)


def _seed(seed: int, exploit: dict[str, float], gold: dict[str, float], kl: dict[str, float]) -> dict:
    """One seed's unit result with regimes base, bon_4, rl_beta_0, rl_beta_0.2: every loophole at
    rate 0.1 but the ones in ``exploit`` (regime -> invented_citation's rate)."""
    from proxygap.oversight.detectors import LOOPHOLES

    def regime(name, kind, **extra):
        rates = {h: {"k": 1.0, "n": 10.0, "rate": 0.1} for h in LOOPHOLES}
        rates["invented_citation"] = {"k": 10 * exploit[name], "n": 10.0, "rate": exploit[name]}
        blind = {h: {"gap_when_fires": 0.5, "own_term_gap": 0.0, "contribution": 0.05, "share_of_gap": 0.1}
                 for h in LOOPHOLES}
        blind["invented_citation"] = {"gap_when_fires": 1.0, "own_term_gap": 0.8 + 0.1 * seed, "contribution": 0.3 + 0.05 * seed,
                                      "share_of_gap": 0.5}
        return {"name": name, "kind": kind, **extra, "kl": kl[name], "capability": 0.8, "rm": 0.0, "rater": 1.0,
                "gold": gold[name], "rater_gold_gap": 1.0 - gold[name], "exploit_rates": rates, "blind_spot": blind}

    return {"regimes": [regime("base", "base"), {**regime("bon_4", "best_of_n", n=4), "kl_pool": kl["bon_4"]},
                        regime("rl_beta_0", "rl", kl_coef=0.0), regime("rl_beta_0.2", "rl", kl_coef=0.2)],
            "ablation": [], "rm": {"agreement_rater": 0.7, "agreement_gold": 0.6, "rater_gold_agreement": 0.8}}


def test_findings_over_seeds_pair_by_seed_and_claim_only_what_clears_zero():
    from proxygap.config import apply_overrides
    from proxygap.experiments.loopholes import LoopholesConfig, aggregate

    cfg = apply_overrides(LoopholesConfig(), ["bon_ns=[4]", "kl_coefs=[0,0.2]", "ablation_flaws=[]"])
    per_seed = [_seed(i, exploit={"base": 0.1 + d, "bon_4": 0.3 + 2 * d, "rl_beta_0": 0.6 + 3 * d, "rl_beta_0.2": 0.12 + 5 * d},
                      gold={"base": 0.5, "bon_4": 0.6 + d, "rl_beta_0": -1.0 + 5 * d, "rl_beta_0.2": 0.7 + d},
                      kl={"base": 0.0, "bon_4": 0.6, "rl_beta_0": 9.0, "rl_beta_0.2": 0.3})
                for i, d in enumerate((0.0, 0.02, -0.01))]
    f = aggregate(per_seed, cfg)["findings"]
    invented = f["loopholes"]["invented_citation"]
    assert invented["rises_under"] == ["bon_4", "rl_beta_0"] and invented["unclear_under"] == ["rl_beta_0.2"]
    assert f["loopholes"]["myth_answer"]["unclear_under"] == ["bon_4", "rl_beta_0", "rl_beta_0.2"]  # exactly 0 change
    assert f["kl_penalty"]["changes"]["invented_citation"]["direction"] == "down"  # beta 0.2 minus beta 0
    assert f["kl_penalty"]["gold_change"]["mean"] == pytest.approx(1.7 - 4 * 0.01 / 3)
    assert f["kl_penalty"]["gold_change"]["direction"] == "up"
    # RL at beta 0.2 (KL 0.3) against best-of-n halfway to best-of-4 (KL 0.6): gold 0.7 + d vs 0.55 + d / 2
    vs = f["vs_best_of_n"]["rl_beta_0.2"]
    assert vs["gold_difference"]["mean"] == pytest.approx(0.15 + 0.01 / 6) and vs["direction"] == "up"
    assert f["vs_best_of_n"]["rl_beta_0"]["gold_difference"]["mean"] is None  # past best-of-4's KL
    assert f["vs_best_of_n"]["rl_beta_0"]["seeds_beyond_best_of_n"] == 3
    assert f["blind_spot"]["largest_gap_regime"] == "rl_beta_0"
    assert f["blind_spot"]["unseen_by_rater"] == ["invented_citation"]  # own term 0 elsewhere: not every loophole
    assert f["blind_spot"]["top_loophole"] == "invented_citation"
    # its share of the gap: mean contribution over mean gap (Fieller), not the units' own shares averaged
    share = f["blind_spot"]["top_share_of_gap"]
    gaps = [1.0 - (-1.0 + 5 * d) for d in (0.0, 0.02, -0.01)]
    assert share["method"] == "fieller" and share["per_seed"] == [0.5, 0.5, 0.5]
    assert share["mean"] == pytest.approx(np.mean([0.3, 0.35, 0.4]) / np.mean(gaps))
    assert share["lo"] < share["mean"] < share["hi"]


def test_no_direction_against_best_of_n_while_a_seed_went_past_its_kl():
    # the seeds past best-of-n's largest KL optimized hardest: the others alone would claim "up"
    from proxygap.config import apply_overrides
    from proxygap.experiments.loopholes import LoopholesConfig, _vs_best_of_n

    cfg = apply_overrides(LoopholesConfig(), ["bon_ns=[4]"])
    runs = {"base": [{"gold": 0.0}] * 4, "bon_4": [{"gold": 0.1, "kl_pool": 0.6}] * 4}
    policies = [{"gold": g, "kl": kl} for g, kl in ((0.40, 0.3), (0.41, 0.3), (0.42, 0.3), (0.5, 9.0))]
    beyond = _vs_best_of_n(policies, runs, cfg)
    assert beyond["seeds_beyond_best_of_n"] == 1 and beyond["n"] == 3 and beyond["lo"] > 0
    assert beyond["direction"] == "unclear"
    within = _vs_best_of_n(policies[:3], {k: v[:3] for k, v in runs.items()}, cfg)
    assert within["direction"] == "up" and within["seeds_beyond_best_of_n"] == 0


def test_a_share_of_one_seed_is_no_interval():
    from proxygap.report.loopholes import _share_text

    assert "one seed: no interval" in _share_text({"mean": 0.6, "lo": 0.6, "hi": 0.6, "n": 1})
    assert "unbounded" in _share_text({"mean": 0.6, "lo": None, "hi": None, "n": 3})
    assert "95% 40% to 80%" in _share_text({"mean": 0.6, "lo": 0.4, "hi": 0.8, "n": 3})
