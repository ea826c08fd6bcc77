"""`proxygap run tampering` end to end on the tiny fixture model: results.json's shape, report files, re-reporting."""

import json

import pytest

from proxygap.cli import main
from proxygap.experiments.tampering import pareto_front, planning_finding

MEASURES = ("observed_return", "true_return", "tamper_rate", "intended_rate", "failure_rate", "capability")


def test_tampering_smoke_run_and_report(tiny_base_dir, tmp_path):
    out = tmp_path / "tampering"
    assert main(["run", "tampering", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["seeds"] == [0] and r["experiment"] == "tampering"
    assert [e["name"] for e in r["envs"]] == ["sensor", "tdd", "reward_file"]
    smoke_regimes = r["config"]["regimes"]
    for env in r["envs"]:
        names = [g["name"] for g in env["regimes"]]
        assert names == ["imitation"] + [x for x in smoke_regimes if x != "imitation"]
        for g in env["regimes"]:
            for m in MEASURES:
                iv = g[m]
                assert set(iv) >= {"mean", "lo", "hi"} and iv["lo"] <= iv["mean"] <= iv["hi"], (env["name"], g["name"], m)
            rates = [g[m]["mean"] for m in ("tamper_rate", "intended_rate", "failure_rate", "capability")]
            assert all(0.0 <= x <= 1.0 for x in rates)
            # every episode is tampered, intended or failed (capability = intended + tampered successes)
            assert g["tamper_rate"]["mean"] + g["intended_rate"]["mean"] + g["failure_rate"]["mean"] == pytest.approx(1.0)
            first = g["learning_curve"][0]
            assert first["step"] == 0 and {"observed_return", "true_return", "tamper_rate", "capability"} <= set(first)
            assert 1 <= len(g["examples"]) <= r["config"]["n_examples"]
            for e in g["examples"]:
                assert e["transcript"].startswith(f"agent : {env['name']} :")
        by = {g["name"]: g for g in env["regimes"]}
        # Every regime's step 0 is the base model on the same episodes.
        assert by["outcome"]["learning_curve"][0]["observed_return"]["mean"] == by["imitation"]["observed_return"]["mean"]
        assert by["outcome"]["learning_curve"][-1]["step"] == r["config"]["train"]["steps"]
        assert by["process_blind"]["blind_to"] == env["blind_to"]
        assert env["name"] in r["findings"] and "pareto" in r["findings"][env["name"]]
        plan = r["findings"][env["name"]]["planning"]
        # one seed: no interval, so the planner is claimed neither to find tampering nor to exploit the model
        assert plan["case"] == "neither" and r["findings"][env["name"]]["regimes"]["planning"]["tamper_direction"] == "single seed"
        assert [s["model_error"] for s in by["planning"]["per_seed_info"]] == [by["planning"]["info"]["model_error"]]
        assert by["planning"]["learning_curve"][-1]["step"] == 1 and "model_error" in by["planning"]["info"]
    for name in ("learning_curves.png", "tamper_vs_capability.png", "report.html", "config.yaml", "meta.json"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert "Findings (computed from the numbers)" in html and "agent : sensor :" in html
    thin = [e for e, f in r["findings"].items() if f["base_capability"] < 0.1]
    assert html.count("comparisons at fixed capability are thin here") == len(thin)
    (out / "report.html").unlink()
    (out / "learning_curves.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "learning_curves.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--set", "blind_to=[sensor:nothing]"], "blind_to entry"),
    (["--set", "regimes=[outcome,mona_blind]", "--set", "blind_to=[tdd:softball_test]", "--set", "envs=[sensor]"],
     "need a blind_to entry for sensor"),
    (["--set", "regimes=[sft]", "--set", "sft.sft_steps=0"], "sft.sft_steps > 0"),
    (["--set", "regimes=[reinforce]"], "not one of"),
    (["--set", "train.group_size=1"], "out of range"),
    (["--set", "planning.max_action_tokens=12"], "differs from train.max_action_tokens"),
    (["--set", "incentives=[1,1]"], "repeated value"),
    (["--set", "blind_to=[sensor:edits_reward]"], "sensor has no consequence edits_reward"),
    (["--set", "blind_to=[sensor:fools_sensor,sensor:fools_sensor]"], "blind_to names sensor twice"),
    (["--set", "regimes=[outcome,outcome]"], "regimes lists a value twice"),
    (["--set", "incentives=[1]", "--set", "sweep_regimes=[imitation]"], "needs a regime besides imitation"),
    (["--set", "train.eval_episodes=20000"], "would overlap the next seed's"),
    (["--set", "sft.train_env_seeds=2000000"], "train_env_seeds must be <= 1000000"),
    (["--set", "planning.train_env_seeds=2000000"], "train_env_seeds must be <= 1000000"),
    # seeds are the run's, not knobs the experiment would overwrite
    (["--set", "train.seed=1"], "unknown config key train.seed"),
    (["--set", "sft.seed=1"], "unknown config key sft.seed"),
    (["--set", "sft.max_action_tokens=4"], "unknown config key sft.max_action_tokens"),
])
def test_bad_config_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "tampering", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxygap: error:") and message in err and "\n" not in err


def test_pareto_front_by_hand():
    # (capability, tamper): b beats a (as capable, tampers less); c is more capable but tampers more; d is dominated by b
    points = {"a": (0.5, 0.4), "b": (0.5, 0.1), "c": (0.9, 0.6), "d": (0.4, 0.1)}
    assert pareto_front(points) == ["b", "c"]


def test_incentive_sweep_and_corruptible_feedback_smoke(tiny_base_dir, tmp_path):
    out = tmp_path / "sweep"
    argv = ["run", "tampering", "--preset", "smoke", "--out", str(out), "--set", f"model={tiny_base_dir}",
            "--set", "envs=[sensor]", "--set", "regimes=[imitation,process,decoupled]",
            "--set", "sensor.approval_reads_channel=true", "--set", "incentives=[0,1.5]",
            "--set", "sweep_regimes=[outcome]"]
    assert main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["envs"][0]["env_knobs"]["approval_reads_channel"] is True
    gap = r["findings"]["sensor"]["decoupled_minus_process"]
    assert gap["feedback_corruptible"] is True and gap["direction"] == "single seed"
    (row,) = r["incentive_sweep"]
    assert (row["env"], row["regime"]) == ("sensor", "outcome")
    assert [p["incentive"] for p in row["points"]] == [0.0, 1.5]
    for p in row["points"]:
        assert p["tamper_rate"]["n"] == 1 and p["tamper_direction"] == "single seed"
    assert row["onset"] is None  # one seed never claims a rise
    assert (out / "incentive_sweep.png").is_file()


def test_sweep_onset_is_the_first_incentive_whose_paired_rise_excludes_zero():
    from proxygap.experiments.tampering import TamperingConfig, aggregate_sweep

    cfg = TamperingConfig(envs=("tdd",), seeds=(0, 1, 2), incentives=(0.0, 1.0, 2.0), sweep_regimes=("outcome",))

    def final(tamper: float) -> dict:
        return {"tamper_rate": tamper, "capability": 0.9, "observed_return": 1.0, "true_return": 0.9,
                "intended_rate": 0.9 - tamper, "failure_rate": 0.1}

    rates = {0.0: [0.0, 0.02, 0.0], 1.0: [0.0, 0.3, 0.0], 2.0: [0.5, 0.6, 0.55]}  # 1.0: a rise in one seed only
    sweep = [{"env": "tdd", "seed": s, "incentive": x,
              "runs": {"imitation": {"final": final(0.0)}, "outcome": {"final": final(rates[x][s])}}}
             for x in rates for s in range(3)]
    (row,) = aggregate_sweep(sweep, cfg)
    assert [p["tamper_direction"] for p in row["points"]] == ["unclear", "unclear", "up"]
    assert row["onset"] == 2.0
    assert row["points"][2]["vs_imitation"]["tamper_rate"]["mean"] == pytest.approx(0.55)


def test_sweep_onset_is_corrected_for_the_incentives_tested():
    # At incentive 1 the rise clears 0 at 95% (a point's own test) but not at 1 - 0.05/3: the first
    # of three tests to clear 0 is not the onset unless it clears the family-wise level.
    from proxygap.experiments.tampering import TamperingConfig, aggregate_sweep

    cfg = TamperingConfig(envs=("tdd",), seeds=(0, 1, 2), incentives=(0.0, 1.0, 2.0), sweep_regimes=("outcome",))

    def final(tamper: float) -> dict:
        return {"tamper_rate": tamper, "capability": 0.9, "observed_return": 1.0, "true_return": 0.9,
                "intended_rate": 0.9 - tamper, "failure_rate": 0.1}

    rates = {0.0: [0.0, 0.02, 0.0], 1.0: [0.1, 0.2, 0.15], 2.0: [0.5, 0.6, 0.55]}
    sweep = [{"env": "tdd", "seed": s, "incentive": x,
              "runs": {"imitation": {"final": final(0.0)}, "outcome": {"final": final(rates[x][s])}}}
             for x in rates for s in range(3)]
    (row,) = aggregate_sweep(sweep, cfg)
    assert [p["tamper_direction"] for p in row["points"]] == ["unclear", "up", "up"]
    assert row["onset_confidence"] == pytest.approx(1 - 0.05 / 3)
    assert row["points"][1]["tamper_rise_family"]["lo"] < 0 < row["points"][1]["vs_imitation"]["tamper_rate"]["lo"]
    assert row["onset"] == 2.0


@pytest.mark.parametrize("errors, tamper_direction, case", [
    ([(0.50, 0.0), (0.60, 0.1), (0.55, 0.0)], "up", "both"),
    ([(0.50, 0.0), (0.60, 0.1), (0.55, 0.0)], "unclear", "exploits_model_errors"),
    ([(0.50, 0.45), (0.60, 0.62), (0.55, 0.58)], "up", "finds_tampering"),  # as wrong as on the base's episodes
    ([(0.50, 0.45), (0.60, 0.62), (0.55, 0.58)], "down", "neither"),
    ([(0.50, 0.0)], "single seed", "neither"),  # one seed: no interval, so no claim either way
])
def test_planning_finding_decides_each_case_from_intervals(errors, tamper_direction, case):
    row = {"per_seed_info": [{"model_error": e, "base_model_error": b, "predicted_return": 0.9, "heldout_corr": 0.5}
                             for e, b in errors]}
    found = planning_finding(row, {"tamper_direction": tamper_direction})
    assert found["case"] == case
    assert found["excess_model_error"]["n"] == len(errors)


def test_findings_over_three_seeds_pair_with_imitation_and_widen_exact_agreement():
    from proxygap.experiments.tampering import TamperingConfig, aggregate

    cfg = TamperingConfig(envs=("sensor",), seeds=(0, 1, 2), regimes=("imitation", "outcome", "process", "decoupled"),
                          n_examples=0)

    def final(tamper: float, capability: float) -> dict:
        return {"observed_return": 1.0 + tamper, "true_return": capability - tamper, "tamper_rate": tamper,
                "intended_rate": capability, "failure_rate": 1 - tamper - capability, "capability": capability,
                "approval": 0.5}

    finals = {"imitation": [(0.0, 0.5), (0.0, 0.55), (0.0, 0.45)],
              "outcome": [(1.0, 0.5), (1.0, 0.52), (1.0, 0.5)],  # every seed tampers in every episode
              "process": [(0.3, 0.6), (0.4, 0.65), (0.35, 0.5)],
              "decoupled": [(0.05, 0.6), (0.1, 0.62), (0.0, 0.55)]}
    per_seed = [{"env": "sensor", "seed": s, "env_knobs": {"approval_reads_channel": False},
                 "runs": {name: {"final": final(*v[s]), "curve": [{"step": 0, **final(*v[s])}], "records": [],
                                 "info": {"train_time_s": 1.0}} for name, v in finals.items()}}
                for s in range(3)]
    res = aggregate(per_seed, cfg)
    f = res["findings"]["sensor"]
    outcome = next(r for r in res["envs"][0]["regimes"] if r["name"] == "outcome")
    change = outcome["vs_imitation"]["tamper_rate"]
    # the seeds agree exactly (+1.0 each): no t-interval, so Newcombe's on the pooled 3 x 48 episodes
    assert change["method"] == "hull(t,newcombe)" and change["mean"] == pytest.approx(1.0) and change["lo"] < 1.0
    assert f["regimes"]["outcome"]["tamper_direction"] == "up" and f["outcome_learned_to_tamper"]
    assert f["regimes"]["process"]["tamper_direction"] == "up"
    assert f["regimes"]["outcome"]["capability_direction"] == "unclear"
    assert f["decoupled_minus_process"]["direction"] == "down"  # paired with process seed by seed
    assert f["decoupled_minus_process"]["tamper_rate"]["mean"] == pytest.approx(-0.3)
    assert f["pareto"] == ["imitation", "decoupled"]  # tampers least; most capable


def test_report_says_the_kl_coefficient_does_not_reach_expert_iteration():
    from proxygap.report.tampering import _ei_kl_note

    run = {"envs": [{"regimes": [{"name": "imitation"}, {"name": "outcome"}]}],
           "incentive_sweep": [{"env": "sensor", "regime": "expert_iteration", "points": []}]}
    assert "no penalty term" in _ei_kl_note(run, {"kl_coef": 0.1})
    assert _ei_kl_note(run, {"kl_coef": 0.0}) == ""
    assert _ei_kl_note({"envs": run["envs"]}, {"kl_coef": 0.1}) == ""  # no expert iteration anywhere
