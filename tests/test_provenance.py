"""results.json carries schema_version and provenance; `proxygap compare` prints how two runs differ."""

import json

import pytest

from proxygap.cli import main
from proxygap.experiments.provenance import SCHEMA_VERSION, compare, headline, model_refs


def test_every_run_carries_schema_version_and_provenance_and_compare_names_the_differences(tiny_base_dir, tmp_path,
                                                                                           capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["run", "probe", "--preset", "smoke", "--set", f"model={tiny_base_dir}"]
    assert main([*base, "--out", str(a)]) == 0
    assert main([*base, "--set", "probe.samples_per_prompt=2", "--out", str(b)]) == 0
    ra = json.loads((a / "results.json").read_text())
    assert ra["schema_version"] == SCHEMA_VERSION
    prov = ra["provenance"]
    assert len(prov["source_hash"]) == 16 and "commit" in prov  # the source hash always (two dirty trees differ)
    assert prov["models"][str(tiny_base_dir)]["hash"] and len(prov["models"][str(tiny_base_dir)]["hash"]) == 16
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "config: 1 difference" in out and "probe.samples_per_prompt" in out and "headline figures:" in out
    ha = prov["models"][str(tiny_base_dir)]["hash"]
    assert json.loads((b / "results.json").read_text())["provenance"]["models"][str(tiny_base_dir)]["hash"] == ha
    assert main(["compare", str(a), str(a)]) == 0
    same = capsys.readouterr().out
    assert "config: 0 differences" in same and "headline figures: 0 of" in same
    assert main(["compare", str(a), str(tmp_path / "nothing")]) == 2


def test_headline_and_model_refs_by_hand():
    results = {"experiment": "x", "envs": [{"name": "sensor", "rate": {"mean": 0.5, "lo": 0.4, "hi": 0.6, "n": 3}}],
               "learning_curve": [{"rate": {"mean": 9, "lo": 9, "hi": 9}}]}
    assert dict(headline(results)) == {"envs[sensor].rate": 0.5}
    other = {**results, "envs": [{"name": "sensor", "rate": {"mean": 0.7, "lo": 0.6, "hi": 0.8, "n": 3}}]}
    lines = compare(results, other)
    assert "headline figures: 1 of 1 differ" in lines and any("envs[sensor].rate: 0.5 -> 0.7" in x for x in lines)
    assert model_refs({"model": "default", "pairs": ["xs:s", "s:m"], "sizes": ["s"]}) == ["default", "s", "xs", "m"]


def test_save_models_keeps_the_first_seeds_policies_as_hugging_face_directories(tiny_base_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "t"
    assert main(["run", "tampering", "--preset", "smoke", "--set", f"model={tiny_base_dir}", "--set", "envs=[sensor]",
                 "--set", "regimes=[imitation,outcome]", "--seeds", "2", "--set", "save_models=true",
                 "--out", str(out)]) == 0
    saved = out / "models" / "env=sensor,seed=0" / "outcome"
    assert (saved / "config.json").is_file() and not (out / "models" / "env=sensor,seed=1").exists()
    AutoModelForCausalLM.from_pretrained(saved)  # loads as any Hugging Face model
    prov = json.loads((out / "results.json").read_text())["provenance"]
    assert len(prov["saved_models"]["env=sensor,seed=0/outcome"]) == 16


@pytest.mark.parametrize("experiment, expected", [
    ("loopholes", {"sft", "reward_model_0", "rl_beta_0"}),
    ("cot", {"outcome_rl", "process_rl", "rlhf", "reward_model_chains_0"}),
    ("weak-to-strong", {"ceiling", "student_rater", "student_noise"}),
    ("scaling", {"reward_model_0", "rl_policy_"}),  # a trailing _: a prefix (the policy size follows)
    ("kl-prior", {"reward_model_rate=", "rate="}),
])
def test_save_models_in_every_experiment(tiny_base_dir, tmp_path, experiment, expected):
    from proxygap.pipeline.base_model import load_base_model

    out = tmp_path / experiment
    models = {"cot": [f"sizes=[{tiny_base_dir}]"],
              "weak-to-strong": [f"pairs=[{tiny_base_dir}:{tiny_base_dir}]", f"sampler={tiny_base_dir}"],
              "scaling": [], "kl-prior": []}.get(experiment, [f"model={tiny_base_dir}"])
    sets = [x for m in models for x in ("--set", m)]
    assert main(["run", experiment, "--preset", "smoke", "--quiet", *sets, "--set", "save_models=true",
                 "--out", str(out)]) == 0
    dirs = [d for d in (out / "models").glob("*/*") if (d / "config.json").is_file()]
    saved = {d.name for d in dirs}
    assert all(any(name == e or (e.endswith(("_", "=")) and name.startswith(e)) for name in saved)
               for e in expected), saved
    # Each carries its world: a saved policy loads as a base model judged against the world it was trained in.
    assert all((d / "proxygap_world.json").is_file() for d in dirs)
    rms = [d for d in dirs if d.name.startswith("reward_model")]
    for d in rms:
        assert isinstance(json.loads((d / "proxygap_reward_model.json").read_text())["offset"], float)
    if experiment != "weak-to-strong":  # its models are classifiers (ceilings, students), not policies
        policy = next(d for d in dirs if not d.name.startswith("reward_model"))
        assert load_base_model(policy).world.config.n_entities > 0
