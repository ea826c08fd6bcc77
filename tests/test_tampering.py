"""`proxygap run tampering` end to end on the tiny fixture model: results.json's shape, report files, re-reporting."""

import json

import pytest

from proxygap.cli import main
from proxygap.experiments.tampering import REGIMES, pareto_front

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
            assert len(g["examples"]) <= r["config"]["n_examples"]
            for e in g["examples"]:
                assert e["transcript"].startswith(f"agent : {env['name']} :")
        by = {g["name"]: g for g in env["regimes"]}
        # Every regime's step 0 is the base model on the same episodes.
        assert by["outcome"]["learning_curve"][0]["observed_return"]["mean"] == by["imitation"]["observed_return"]["mean"]
        assert by["outcome"]["learning_curve"][-1]["step"] == r["config"]["train"]["steps"]
        assert by["process_blind"]["blind_to"] == env["blind_to"]
        assert env["name"] in r["findings"] and "pareto" in r["findings"][env["name"]]
    for name in ("learning_curves.png", "tamper_vs_capability.png", "report.html", "config.yaml", "meta.json"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert "Findings (computed from the numbers)" in html and "agent : sensor :" in html
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
    assert set(REGIMES) >= {"imitation", "outcome", "process", "mona", "decoupled"}
