"""End-to-end smoke runs through the CLI: run directories, results.json's shape, re-reporting, errors."""

import json

import pytest

from proxygap.cli import main


def test_probe_run_and_report(tiny_base_dir, tmp_path):
    out = tmp_path / "probe"
    assert main(["run", "probe", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"fact_accuracy", "myth_rate", "behaviours", "config", "meta"} <= set(results)
    for b in results["behaviours"].values():
        assert {"corpus_rate", "sample_rate"} <= set(b)
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_overoptimization_smoke(tiny_base_dir, tmp_path):
    out = tmp_path / "oo"
    assert main(["run", "overoptimization", "--preset", "smoke", "--set", f"model={tiny_base_dir}",
                 "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["seeds"] == [0] and r["config"]["seeds"] == [0]
    for p in r["bon"]["points"]:
        assert {"n", "kl", "rm", "rater", "gold"} <= set(p)
    assert r["bon"]["points"][0]["n"] == 1 and r["bon"]["points"][0]["kl"] == 0.0
    assert {"alpha", "beta", "r2", "d_star"} <= set(r["bon"]["fit"])
    assert [run["kl_coef"] for run in r["rl"]] == [0.0, 0.1]
    for run in r["rl"]:
        assert "fit" in run
        for p in run["points"]:
            assert {"step", "kl", "rm", "rater", "gold"} <= set(p)
    for method in ("dpo", "ipo"):  # direct alignment on the RM's own pairs, per beta, on the same axes
        assert [run["beta"] for run in r[method]] == [0.2]
        for p in r[method][0]["points"]:
            assert {"step", "kl", "rm", "rater", "gold"} <= set(p)
        # the policy read as a reward model: keys present (the tiny model's answers all tie, so n is 0
        # here; test_implicit_agreement_is_paired_with_the_rm_by_seed checks the numbers)
        assert set(r[method][0]["implicit_agreement"]) == set(r[method][0]["implicit_minus_rm_agreement"]) == {"rater", "gold"}
        assert "vs_bon_at_equal_kl" in r[method][0]
    assert set(r["findings"]["vs_best_of_n"]) == {"rl beta=0", "rl beta=0.1", "dpo beta=0.2", "ipo beta=0.2"}
    # a schema-1 file, without the paired gains, still draws (each gain from the mean curve less its base)
    for point in [*r["bon"]["points"], *(p for run in r["rl"] + r["dpo"] + r["ipo"] for p in run["points"] + [run["final"]])]:
        for key in [k for k in point if k.endswith("_gain")]:
            del point[key]
    (out / "results.json").write_text(json.dumps(r))
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()
    for name in ("goodhart.png", "bon_ladder.png", "rl_ladder.png", "gold_vs_beta.png", "direct_ladder.png",
                 "report.html", "config.yaml", "meta.json"):
        assert (out / name).is_file(), name
    assert "proxygap" in r["meta"]["versions"]


@pytest.mark.parametrize("argv, message", [
    (["run", "overoptimization", "--preset", "nope"], "unknown preset"),
    (["run", "overoptimization", "--set", "kl_coefs=[0.1,-0.5]"], "out of range"),
    (["run", "overoptimization", "--set", "bon.max_n=999", "--set", "bon.pool_size=8"], "larger than the pool"),
    (["run", "overoptimization", "--set", "kl_coefs=[0.1,0.1]"], "kl_coefs lists a value twice"),
    (["run", "overoptimization", "--set", "direct_betas=[0.1,0.1]"], "direct_betas lists a value twice"),
    (["run", "overoptimization", "--set", "rl.steps=0"], "rl.steps=0: RL would be the base model"),
    (["run", "overoptimization", "--set", "direct.steps=0"], "direct.steps=0"),
    (["run", "overoptimization", "--set", "bon.max_new_tokens=16"], "must equal rl.max_new_tokens"),
    (["run", "overoptimization", "--set", "rm.n_pairs=9", "--set", "rm.heldout_fraction=0.05"], "holds out 0 pairs"),
    (["run", "nosuch"], "unknown experiment"),
    (["probe", "--model", "/nonexistent/model"], "no model directory"),
    (["world", "--out", "x", "--set", "corpus.manipulaton_rate=0.1"], "did you mean corpus.manipulation_rate"),
    (["report", "/nonexistent/run"], "not a run directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxygap: error:") and message in err and "\n" not in err


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert main(["run", "probe", "--out", str(out)]) == 2
    assert (out / "results.json").read_text() == "{}"


def test_corrupt_checkpoint_is_one_line_and_exit_2(tiny_base_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_base_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["probe", "--model", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"proxygap: error: {broken}/model.safetensors is corrupt") and "\n" not in err


def test_world_outputs_are_byte_identical(tmp_path):
    args = ["--seed", "7", "--set", "corpus.n_documents=500"]
    assert main(["world", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["world", *args, "--out", str(tmp_path / "b")]) == 0
    for name in ("world.json", "corpus.txt", "rates.json", "config.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_world_prints_agent_transcript_rates(tmp_path, capsys):
    assert main(["world", "--set", "corpus.n_documents=300", "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "agent transcripts" in out
    for env in ("sensor", "tdd", "reward_file"):
        assert env in out




def test_a_direct_policys_agreement_is_paired_by_seed_with_the_rms():
    from proxygap.experiments.overoptimization import implicit_agreement_intervals

    agreements = [{"rater": 0.83, "gold": 0.63}, {"rater": 0.85, "gold": None}, {"rater": 0.86, "gold": 0.63}]
    rms = [{"agreement_rater": 0.77, "agreement_gold": 0.56}, {"agreement_rater": 0.80, "agreement_gold": 0.59},
           {"agreement_rater": 0.79, "agreement_gold": None}]
    out = implicit_agreement_intervals(agreements, rms)
    assert out["implicit_agreement"]["rater"]["mean"] == pytest.approx(0.84667, abs=1e-4)
    diff = out["implicit_minus_rm_agreement"]
    assert diff["rater"]["mean"] == pytest.approx((0.06 + 0.05 + 0.07) / 3) and diff["rater"]["n"] == 3
    assert diff["rater"]["lo"] > 0  # every seed's policy above its own RM
    assert diff["gold"]["n"] == 1 and diff["gold"]["mean"] == pytest.approx(0.07)  # only seed 0 has both


def test_implicit_agreement_is_paired_with_the_rm_by_seed():
    from proxygap.experiments.overoptimization import implicit_agreement_intervals

    agreements = [{"rater": 0.99, "gold": 0.6}, {"rater": 0.97, "gold": None}, {"rater": 0.90, "gold": 0.7}]
    rms = [{"agreement_rater": 0.8, "agreement_gold": 0.5}, {"agreement_rater": 0.7, "agreement_gold": 0.5},
           {"agreement_rater": 0.85, "agreement_gold": 0.55}]
    out = implicit_agreement_intervals(agreements, rms)
    assert out["implicit_agreement"]["rater"]["hi"] <= 1.0  # an agreement's interval stays in [0, 1]
    assert out["implicit_minus_rm_agreement"]["rater"]["mean"] == pytest.approx((0.19 + 0.27 + 0.05) / 3)
    assert out["implicit_minus_rm_agreement"]["gold"]["n"] == 2  # the seed without a gold agreement is left out


def test_runs_are_compared_with_best_of_n_at_their_own_kl():
    from proxygap.experiments.overoptimization import _vs_best_of_n

    bon = [{"kl_pool": 0.0, "gold": 0.1}, {"kl_pool": 1.0, "gold": 0.0}, {"kl_pool": 2.0, "gold": -0.4}]
    runs = [[{"kl": 0.0, "gold": 0.1}, {"kl": kl, "gold": 0.1 + g}] for kl, g in ((1.5, 0.1), (0.5, 0.05), (4.0, 0.0))]
    out = _vs_best_of_n(runs, [bon] * 3)
    # best-of-n's gain at KL 1.5 is -0.3, at 0.5 -0.05; the third run is past the pool's KL
    assert out["gold_gain_difference"]["per_seed"] == [pytest.approx(0.4), pytest.approx(0.1), None]
    assert out["seeds_beyond_pool"] == 1 and out["end_kl_per_seed"] == [1.5, 0.5, 4.0]


# ---------------------------------------------------------------- no claim from the seeds that happen to have a value
def test_no_direction_from_the_seeds_that_have_a_value_alone():
    from proxygap.experiments import cot, kl_prior, monitoring, overoptimization, tampering

    # overoptimization: 2 of 5 seeds within best-of-n's KL would say "down"
    bon = [{"gold": 0.0, "kl_pool": 0.0, "kl": 0.0}, {"gold": 0.5, "kl_pool": 1.0, "kl": 1.0},
           {"gold": 1.0, "kl_pool": 2.0, "kl": 2.0}]
    curves = [[{"gold": 0.0, "kl": 0.0}, {"gold": g, "kl": kl}] for g, kl in
              ((0.0, 0.5), (0.02, 0.6), (0.1, 3.0), (0.2, 4.0), (0.1, 3.5))]
    vs = overoptimization._vs_best_of_n(curves, [bon] * 5)
    assert vs["seeds_beyond_pool"] == 3 and vs["gold_gain_difference"]["hi"] < 0 and vs["direction"] is None
    assert overoptimization._vs_best_of_n(curves[:2], [bon] * 2)["direction"] == "down"
    # monitoring: a recall is undefined for the seeds that stopped hacking
    a = [{"cot_recall": r} for r in (0.2, 0.25, None, None, None)]
    b = [{"cot_recall": r} for r in (0.9, 0.85, 0.95, 0.9, 0.88)]
    change = monitoring._paired(a, b, ["cot_recall"])["cot_recall"]
    assert change["seeds_undefined"] == 3 and change["hi"] < 0 and monitoring._direction(change) == "unclear"
    assert monitoring._direction(monitoring._paired(a[:2], b[:2], ["cot_recall"])["cot_recall"]) == "down"
    # cot: a chain measure undefined for the seeds that stopped writing a usable chain
    aoc = cot._interval([-0.30, -0.35, -0.32, None, None])
    assert aoc["per_seed"][3] is None and aoc["hi"] < 0 and cot._dir(aoc).startswith("no claim (2 seed")
    assert cot._dir(cot._interval([-0.30, -0.35, -0.32])) == "down"
    # kl-prior: one seed's estimate is no fixed value to be below or above
    observed = {"hull": {"mean": 0.02, "lo": 0.008, "hi": 0.045, "n": 3, "method": "hull"}}
    one = {"mean": 0.30, "lo": 0.30, "hi": 0.30, "n": 1, "method": "t", "per_seed": [0.30]}
    assert kl_prior._side(observed, one) == "not distinguishable" and kl_prior._every_seed_side(observed, one) is None
    agree = {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 3, "method": "t", "per_seed": [1.0, 1.0, 1.0]}
    assert kl_prior._side(observed, agree) == "below" and kl_prior._every_seed_side(observed, agree) == "below"
    # tampering: a planner seed without a model error
    info = [{"model_error": e, "base_model_error": 0.0, "predicted_return": 1.0, "actual_return": 0.5,
             "heldout_corr": 0.5} for e in (0.5, 0.6, float("nan"))]
    case = tampering.planning_finding({"per_seed_info": info}, {"tamper_direction": "unclear"})
    assert case["case"] == "neither"
    info[2]["model_error"] = 0.55
    assert tampering.planning_finding({"per_seed_info": info}, {"tamper_direction": "unclear"})["case"] == \
        "exploits_model_errors"
