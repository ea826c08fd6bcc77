"""`proxygap run tampering` end to end on the tiny fixture model: results.json's shape, report files, re-reporting."""

import json

import pytest

from proxygap.cli import main
from proxygap.experiments.tampering import REGIMES, pareto_front, planning_finding

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
        # The stored finding is the planner's rows' (seed by seed errors, the regime's tamper direction).
        assert plan == planning_finding(by["planning"], r["findings"][env["name"]]["regimes"]["planning"])
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
    assert set(REGIMES) >= {"imitation", "outcome", "process", "mona", "decoupled", "planning"}


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


@pytest.mark.parametrize("errors, tamper_direction, case", [
    ([(0.50, 0.0), (0.60, 0.1), (0.55, 0.0)], "up", "both"),
    ([(0.50, 0.0), (0.60, 0.1), (0.55, 0.0)], "unclear", "exploits_model_errors"),
    ([(0.50, 0.45), (0.60, 0.62), (0.55, 0.58)], "up", "finds_tampering"),  # as wrong as on the base's episodes
    ([(0.50, 0.45), (0.60, 0.62), (0.55, 0.58)], "down", "neither"),
    ([(0.50, 0.0)], "up", "finds_tampering"),  # one seed: no interval, so no claim about the model's errors
])
def test_planning_finding_decides_each_case_from_intervals(errors, tamper_direction, case):
    row = {"per_seed_info": [{"model_error": e, "base_model_error": b, "predicted_return": 0.9, "heldout_corr": 0.5}
                             for e, b in errors]}
    found = planning_finding(row, {"tamper_direction": tamper_direction})
    assert found["case"] == case
    assert found["excess_model_error"]["n"] == len(errors)
