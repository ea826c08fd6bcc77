"""The runner: config precedence, configs that never lie, units of work, resume after kill -9, the lock, Ray."""

import json
import shutil
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from proxygap.cli import main
from proxygap.config import ConfigError
from proxygap.errors import ProxygapError
from proxygap.experiments.catalogue import get_experiment
from proxygap.experiments.runner import resolve_config, strict_json

OO = get_experiment("overoptimization")


def _file(tmp_path, data: dict) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ---------------------------------------------------------------- precedence: defaults < preset < file < --seeds < --set
def test_each_layer_applies_in_order(tmp_path):
    defaults = OO.config_cls()
    assert resolve_config(OO, "quick", None, []).rl.steps == 40 != defaults.rl.steps  # preset over defaults
    smoke = resolve_config(OO, "smoke", None, [])
    assert smoke.rl.steps == 4 and smoke.seeds == (0,)
    f = _file(tmp_path, {"rl": {"steps": 7}, "seeds": [4, 5]})
    cfg = resolve_config(OO, "smoke", f, [])
    assert cfg.rl.steps == 7 and cfg.seeds == (4, 5)  # file over preset
    cfg = resolve_config(OO, "smoke", f, [], seeds=3)
    assert cfg.seeds == (0, 1, 2) and cfg.rl.steps == 7  # --seeds over file
    assert resolve_config(OO, "smoke", f, [], seeds=2, seed_offset=10).seeds == (10, 11)
    assert resolve_config(OO, "smoke", f, [], seeds="3,8").seeds == (3, 8)
    cfg = resolve_config(OO, "smoke", f, ["rl.steps=9", "seeds=[1]"], seeds=3)
    assert cfg.rl.steps == 9 and cfg.seeds == (1,)  # --set over everything


def test_file_values_equal_to_defaults_still_apply(tmp_path):
    """The defect: `--preset smoke --config f.yaml` with `seeds: 3` ran 1 seed, and a file's rl.steps: 120
    (the default) became the preset's value, with exit 0."""
    default_steps = OO.config_cls().rl.steps
    f = _file(tmp_path, {"seeds": 3, "rl": {"steps": default_steps}, "n_eval_prompts": OO.config_cls().n_eval_prompts})
    cfg = resolve_config(OO, "smoke", f, [])
    assert cfg.seeds == (0, 1, 2)
    assert cfg.rl.steps == default_steps
    assert cfg.n_eval_prompts == OO.config_cls().n_eval_prompts  # not the smoke preset's 8


def test_cross_knob_checks_see_the_final_config_not_a_layer(tmp_path):
    """A file's kl_coefs that only --set makes consistent with ensemble/ablation betas is valid."""
    f = _file(tmp_path, {"kl_coefs": [0.1, 0.5]})
    cfg = resolve_config(get_experiment("loopholes"), "quick", f, ["ensemble_kl_coef=0.1", "ablation_kl_coef=0.1"])
    assert cfg.kl_coefs == (0.1, 0.5) and cfg.ensemble_kl_coef == 0.1
    f = _file(tmp_path, {"n_eval_prompts": 4})
    assert resolve_config(OO, "quick", f, ["n_examples=2"]).n_examples == 2


def test_resume_needs_an_out_directory(capsys):
    assert main(["run", "overoptimization", "--preset", "smoke", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_a_seed_count_in_set_means_that_many_seeds():
    assert resolve_config(OO, "smoke", None, ["seeds=2"]).seeds == (0, 1)


@pytest.mark.parametrize("seeds, offset, message", [
    ("0", None, "a count from 1 to 10000"), ("x", None, "count K or a list"), (" ", None, "empty"), ("1,2", 3, "not to a list"), (None, 2, "needs --seeds"),
])
def test_bad_seed_arguments(seeds, offset, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(OO, "smoke", None, [], seeds=seeds, seed_offset=offset)


def test_repeated_seeds_are_refused():
    with pytest.raises(ConfigError, match="repeats"):
        resolve_config(OO, "smoke", None, ["seeds=[1,1]"])


# ---------------------------------------------------------------- configs never lie
@pytest.mark.parametrize("override", ["rater.label_noise=nan", "kl_coefs=[inf]", "rl.lr=-inf", "kl_coefs=[0.1,nan]",
                                      "rm.lr=NaN"])
def test_non_finite_values_are_refused(override):
    with pytest.raises(ConfigError, match="finite"):
        resolve_config(OO, "smoke", None, [override])


def test_non_finite_values_in_a_file_are_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("rater:\n  label_noise: .nan\n")
    with pytest.raises(ConfigError, match="finite"):
        resolve_config(OO, "smoke", str(path), [])


def test_configs_are_validated_when_constructed():
    from proxygap.train.rl import RLConfig

    with pytest.raises(ConfigError, match="out of range"):
        RLConfig(steps=-1)
    with pytest.raises(ConfigError, match="finite"):
        RLConfig(lr=math.nan)
    with pytest.raises(ConfigError, match="clip_eps"):
        RLConfig(ppo_epochs=2, clip_eps=0.0)


@pytest.mark.parametrize("experiment, key, hint", [
    ("overoptimization", "rl.kl_coef", "kl_coefs, kl_coef or rl_kl_coef"), ("overoptimization", "rl.seed", "--seeds"),
    ("overoptimization", "bon.seed", "--seeds"), ("kl-prior", "rl.kl_coef", "kl_coefs"), ("kl-prior", "rl.seed", "--seeds"),
    ("loopholes", "rl.kl_coef", "kl_coefs"), ("loopholes", "rl.eval_every", ""), ("loopholes", "sft.seed", "--seeds"),
    ("loopholes", "bon.seed", "--seeds"), ("tampering", "train.seed", "--seeds"), ("tampering", "sft.max_action_tokens", ""),
    ("tampering", "sft.seed", "--seeds"), ("probe", "probe.seed", "--seeds"),
    ("overoptimization", "direct.max_new_tokens", "set rl.max_new_tokens"),
    ("overoptimization", "direct.eval_samples_per_prompt", "set rl.eval_samples_per_prompt"),
    ("loopholes", "direct.eval_every", "once, at the end"), ("loopholes", "direct.max_new_tokens", "set rl.max_new_tokens"),
    ("loopholes", "direct.eval_samples_per_prompt", "eval_samples_per_prompt where the experiment has it"),
    ("loopholes", "ei.max_new_tokens", "set rl.max_new_tokens"), ("cot", "rm.max_new_tokens", "as long as its policy's"),
    ("scaling", "rm.n_pairs", "set n_labels"), ("scaling", "rm.backbone", "set rm_sizes"),
])
def test_knobs_an_experiment_would_overwrite_do_not_exist(experiment, key, hint):
    """Each is refused by name; where something else sets it, the error says what."""
    with pytest.raises(ConfigError, match=f"unknown config key {key}") as caught:
        resolve_config(get_experiment(experiment), "smoke", None, [f"{key}=1"])
    assert hint in str(caught.value)


def test_cross_knob_limits_are_checked_when_resolved(tiny_base_dir):
    with pytest.raises(ConfigError, match="leaves no training prompts"):
        resolve_config(OO, "smoke", None, [f"model={tiny_base_dir}", "n_eval_prompts=100000"])
    with pytest.raises(ConfigError, match="does not fit the model's context of 96"):
        resolve_config(OO, "smoke", None, [f"model={tiny_base_dir}", "rl.max_new_tokens=90", "bon.max_new_tokens=90"])
    with pytest.raises(ConfigError, match="larger than the pool"):
        resolve_config(OO, "smoke", None, ["bon.max_n=64", "bon.pool_size=8"])
    with pytest.raises(ConfigError, match="needs bon.pool_size"):
        resolve_config(get_experiment("loopholes"), "smoke", None, ["bon_ns=[2,64]"])
    with pytest.raises(ConfigError, match="n_examples"):
        resolve_config(OO, "smoke", None, ["n_examples=9"])


def test_results_are_strict_json():
    assert strict_json({"a": math.nan, "b": [math.inf, 1.0], "c": {"d": -math.inf}}) == {"a": None, "b": [None, 1.0],
                                                                                         "c": {"d": None}}


def test_executor_ray_without_ray_is_one_line(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", "overoptimization", "--preset", "smoke", "--executor", "ray", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[ray]'" in err and "\n" not in err


# ---------------------------------------------------------------- units, resume after kill -9, the lock, Ray
def _argv(model: Path, out: Path) -> list[str]:
    # Two seeds of the smoke preset on the tiny model: two units of work, seconds each.
    return ["run", "overoptimization", "--preset", "smoke", "--seeds", "2", "--quiet", "--set", f"model={model}",
            "--set", "threads=1", "--out", str(out)]


def _comparable(results: dict) -> dict:
    """results.json without what legitimately differs between runs: wall times, the command line."""
    return {k: v for k, v in results.items() if k not in ("meta", "timings")}


@pytest.fixture(scope="module")
def serial_run(tiny_base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "run"
    assert main(_argv(tiny_base_dir, out)) == 0
    return out, json.loads((out / "results.json").read_text())


def test_units_are_kept_in_the_run(serial_run):
    out, results = serial_run
    assert sorted(p.name for p in (out / "units").iterdir()) == ["seed=0.json", "seed=1.json"]
    assert results["meta"]["units"] == {"total": 2, "resumed": 0, "run": 2}
    assert results["meta"]["threads"] == 1 and results["seeds"] == [0, 1]
    assert not out.with_name(out.name + ".partial").exists()
    json.loads((out / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))


def test_kill_9_then_resume_gives_the_same_results_and_a_second_writer_is_refused(serial_run, tiny_base_dir,
                                                                                   tmp_path, capsys):
    out = tmp_path / "run"
    partial = out.with_name("run.partial")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "proxygap.cli", *_argv(tiny_base_dir, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (partial / "units" / "seed=0.json").is_file():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the first unit never finished"
            time.sleep(0.05)
        # While the first run holds the lock, a second run to the same --out is refused.
        assert main(_argv(tiny_base_dir, out)) == 2
        err = capsys.readouterr().err
        assert "being written by another proxygap run" in err and err.count("\n") == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and partial.is_dir()
    # Without --resume an interrupted run is reported, not silently replaced or reused.
    assert main(_argv(tiny_base_dir, out)) == 2
    assert "holds an interrupted run (1 of 2 units done)" in capsys.readouterr().err
    # A resume with a different config is refused.
    assert main([*_argv(tiny_base_dir, out), "--resume", "--set", "rl.steps=3"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["meta"]["units"] == {"total": 2, "resumed": 1, "run": 1}
    assert _comparable(resumed) == _comparable(serial_run[1])
    assert not partial.exists()
    assert [p.name for p in tmp_path.glob(".run.*")] == [".run.lock"]  # no temporary directory left behind


def test_a_torn_unit_file_is_run_again(serial_run, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    partial = out.with_name("run.partial")
    (partial / "units").mkdir(parents=True)
    for name in ("config.yaml", "run.json"):
        (partial / name).write_text((serial_run[0] / name).read_text())
    (partial / "units" / "seed=0.json").write_text((serial_run[0] / "units" / "seed=0.json").read_text())
    (partial / "units" / "seed=1.json").write_text('{"unit": {"key": "seed=1"}, "resu')  # killed mid-write
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 0
    assert "seed=1.json is unreadable or not this unit's result; running the unit again" in capsys.readouterr().err
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["meta"]["units"]["resumed"] == 1
    assert _comparable(resumed) == _comparable(serial_run[1])


def _partial_copy(serial_run, out: Path) -> Path:
    partial = out.with_name(out.name + ".partial")
    shutil.copytree(serial_run[0], partial)
    (partial / "results.json").unlink()
    return partial


def test_a_unit_file_damaged_from_outside_is_one_line(serial_run, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    partial = _partial_copy(serial_run, out)
    (partial / "units" / "seed=1.json").write_text(json.dumps({"unit": {"key": "seed=1"}, "result": {}}))
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not this experiment's (missing key" in err and "delete the damaged file" in err and "\n" not in err
    assert partial.is_dir() and not out.exists()


def test_a_run_json_with_no_threads_is_corrupt(serial_run, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    partial = _partial_copy(serial_run, out)
    recorded = json.loads((partial / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps({**recorded, "threads": 0}))
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    assert "run.json is missing or corrupt" in capsys.readouterr().err


def test_a_run_started_on_a_gpu_resumes_there_only(serial_run, tiny_base_dir, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    partial = _partial_copy(serial_run, out)
    recorded = json.loads((partial / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps({**recorded, "device": "cuda:0"}))
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was started on cuda:0 and resumes there only, but this machine has no CUDA GPU" in err, err
    assert "use device=cpu" not in err and "\n" not in err


def test_force_replaces_runs_only(serial_run, tiny_base_dir, tmp_path, capsys):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    assert main([*_argv(tiny_base_dir, precious), "--force"]) == 2
    assert "is not a proxygap run directory" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "x"
    partial = tmp_path / "other.partial"
    partial.mkdir()
    (partial / "data.csv").write_text("x")
    assert main([*_argv(tiny_base_dir, tmp_path / "other"), "--force"]) == 2
    assert (partial / "data.csv").is_file()
    (tmp_path / "notes.partial").mkdir()  # an empty interrupted run beside it: notes is still checked
    assert main([*_argv(tiny_base_dir, precious), "--force"]) == 2
    assert (precious / "thesis.tex").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()  # refused without --force ("already exists"), so --force must accept it
    assert main([*_argv(tiny_base_dir, empty)]) == 2
    assert main([*_argv(tiny_base_dir, empty), "--force"]) == 0 and (empty / "results.json").is_file()


@pytest.mark.parametrize("out", [".", "", "/", ".."])
def test_out_must_name_a_directory_of_its_own(out, tiny_base_dir, capsys):
    assert main([*_argv(tiny_base_dir, Path("x"))[:-1], out, "--force"]) == 2
    assert "is not a run directory of its own" in capsys.readouterr().err


def test_compare_of_a_malformed_results_file_is_one_line(serial_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    results = json.loads((serial_run[0] / "results.json").read_text())
    (bad / "results.json").write_text(json.dumps({**results, "provenance": "lost"}))
    assert main(["compare", str(serial_run[0]), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot compare" in err and "\n" not in err
    (bad / "results.json").write_text(json.dumps({**results, "schema_version": "2"}))
    assert main(["compare", str(serial_run[0]), str(bad)]) == 2
    assert "schema_version '2': not a proxygap results file" in capsys.readouterr().err
    (bad / "results.json").write_text(json.dumps({**results, "experiment": 3}))
    assert main(["compare", str(serial_run[0]), str(bad)]) == 2
    assert "no 'experiment' name" in capsys.readouterr().err


def test_serial_and_ray_executors_give_identical_results(serial_run, tiny_base_dir, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        assert main([*_argv(tiny_base_dir, out), "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["executor"].startswith("ray")
    assert results["meta"]["device"] == "cpu"  # auto on a cluster without GPUs
    assert _comparable(results) == _comparable(serial_run[1])


def test_a_resume_refuses_changed_code_or_a_changed_model(tiny_base_dir, tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_base_dir, model)
    out, partial = tmp_path / "run", tmp_path / "run.partial"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("proxygap.experiments.executors.execute_unit", interrupted)
    assert main(_argv(model, out)) != 0  # Ctrl-C at the first unit: OUT.partial stays
    monkeypatch.undo()
    capsys.readouterr()
    recorded = json.loads((partial / "run.json").read_text())
    assert recorded["origin"]["models"][str(model)] and recorded["origin"]["source_hash"]

    config = model / "config.json"  # the model changes in place (still loadable): a new content hash
    original = config.read_text()
    config.write_text(original.rstrip() + "\n\n")
    assert main([*_argv(model, out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"model '{model}' changed since the run started" in err and err.count("\n") == 1
    config.write_text(original)

    (partial / "run.json").write_text(json.dumps({**recorded, "origin": {**recorded["origin"],
                                                                         "source_hash": "0" * 16}}))
    assert main([*_argv(model, out), "--resume"]) == 2
    assert "proxygap's code changed since the run started" in capsys.readouterr().err

    (partial / "run.json").write_text(json.dumps(recorded))  # as it was: the resume goes through
    assert main([*_argv(model, out), "--resume"]) == 0
    assert not partial.exists() and (out / "results.json").is_file()


def test_each_units_wall_time_is_measured_where_it_ran(tiny_base_dir, tmp_path, monkeypatch):
    ticks = iter([100.0, 105.0, 200.0, 202.5])  # unit 0 takes 5 s, unit 1 2.5 s, whatever happens between
    monkeypatch.setattr("proxygap.experiments.executors.time", type("Clock", (), {"perf_counter": lambda: next(ticks)}))
    out = tmp_path / "run"
    assert main(_argv(tiny_base_dir, out)) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["unit_wall_s"] == {"seed=0": 5.0, "seed=1": 2.5}
    # the machine is on record: torch's CPU kernels (and so the last bits of a result) follow its instruction set
    import torch

    assert meta["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert meta["hardware"]["cpu"] and meta["hardware"]["logical_cpus"] >= 1
    for key in ("seed=0", "seed=1"):  # each unit's own machine, measured where it ran: here the same one
        assert json.loads((out / "units" / f"{key}.json").read_text())["hardware"] == meta["hardware"]
    assert "unit_hardware" not in meta


# ---------------------------------------------------------------- report --reaggregate: today's statistics over recorded units
def test_reaggregate_recomputes_results_from_the_recorded_units(serial_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(serial_run[0], run)
    assert main(["report", str(run), "--reaggregate"]) == 0
    assert "recomputed from" in capsys.readouterr().out
    again = json.loads((run / "results.json").read_text())
    assert _comparable(again) == _comparable(serial_run[1])  # same units, same code: the same numbers
    assert again["provenance"] == serial_run[1]["provenance"]  # it describes the units, which did not change
    assert again["meta"]["reaggregated"]["source_hash"] and again["meta"]["wall_time_s"] == \
        serial_run[1]["meta"]["wall_time_s"]
    # An edited unit result reaches the aggregate: seed 1's last best-of-n gold up by 1.0 moves the mean by 0.5.
    unit_file = run / "units" / "seed=1.json"
    unit = json.loads(unit_file.read_text())
    unit["result"]["bon_points"][-1]["gold"] += 1.0
    unit_file.write_text(json.dumps(unit))
    assert main(["report", str(run), "--reaggregate"]) == 0
    edited = json.loads((run / "results.json").read_text())
    before, after = serial_run[1]["bon"]["points"][-1]["gold"], edited["bon"]["points"][-1]["gold"]
    assert after["mean"] == pytest.approx(before["mean"] + 0.5)
    assert (run / "report.html").is_file()
    assert [p.name for p in tmp_path.glob(".run.*")] == [".run.lock"]  # no temporary directory left behind


def test_reaggregate_without_every_unit_is_one_line_and_keeps_the_run(serial_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(serial_run[0], run)
    (run / "units" / "seed=1.json").unlink()
    before = (run / "results.json").read_text()
    assert main(["report", str(run), "--reaggregate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks 1 of 2 unit results (first: seed=1)" in err and "\n" not in err
    assert (run / "results.json").read_text() == before
    # A unit that parses but is not this experiment's: one line, the run untouched.
    (run / "units" / "seed=1.json").write_text(json.dumps({"unit": {"key": "seed=1"}, "result": {}}))
    assert main(["report", str(run), "--reaggregate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not what this proxygap's overoptimization aggregates (missing key" in err and "\n" not in err
    assert (run / "results.json").read_text() == before
    (run / "config.yaml").write_text("rl: [")
    assert main(["report", str(run), "--reaggregate"]) == 2
    assert "config.yaml is missing or corrupt" in capsys.readouterr().err


# ---------------------------------------------------------------- damage found by review (2026-12-08)
def test_a_report_that_fails_on_resumed_units_is_one_line(serial_run, tiny_base_dir, tmp_path, monkeypatch, capsys):
    import dataclasses

    import proxygap.experiments.overoptimization as overoptimization

    def broken_report(run_dir):  # what a unit that aggregates but lacks a key the report reads gives
        raise KeyError("behaviours")

    monkeypatch.setattr(overoptimization, "EXPERIMENT", dataclasses.replace(overoptimization.EXPERIMENT,
                                                                            report=broken_report))
    out = tmp_path / "run"
    partial = _partial_copy(serial_run, out)
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be drawn from its results" in err and "'behaviours'" in err and "\n" not in err
    assert partial.is_dir() and not out.exists()
    run = tmp_path / "done"
    shutil.copytree(serial_run[0], run)
    before = (run / "results.json").read_text()
    assert main(["report", str(run), "--reaggregate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the report cannot be drawn from the results re-aggregated" in err and "\n" not in err
    assert (run / "results.json").read_text() == before  # the old run as it was


def test_resuming_a_complete_run_checks_its_files(serial_run, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(serial_run[0], out)
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 0  # intact: nothing to do
    assert "already complete" in capsys.readouterr().out
    (out / "config.yaml").write_text("rl: [")
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    assert "config.yaml is missing or corrupt" in capsys.readouterr().err
    (out / "config.yaml").write_text((serial_run[0] / "config.yaml").read_text())
    (out / "results.json").write_text((serial_run[0] / "results.json").read_text()[:100])
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "results.json" in err and "\n" not in err


def test_corrupt_numbers_and_keys_in_a_run_are_one_line(serial_run, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    partial = _partial_copy(serial_run, out)
    recorded = (partial / "run.json").read_text()
    (partial / "run.json").write_text(recorded.replace('"threads": 1', '"threads": Infinity'))
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    assert "run.json is missing or corrupt" in capsys.readouterr().err
    (partial / "run.json").write_text(recorded)
    config = (partial / "config.yaml").read_text()
    (partial / "config.yaml").write_text(config + "1: 2\n")  # a key no run writes
    assert main([*_argv(tiny_base_dir, out), "--resume"]) == 2
    assert "config.yaml is missing or corrupt" in capsys.readouterr().err
    run = tmp_path / "done"
    shutil.copytree(serial_run[0], run)
    (run / "config.yaml").write_text(config + "1: 2\n")
    assert main(["report", str(run), "--reaggregate"]) == 2
    assert "config.yaml is missing or corrupt" in capsys.readouterr().err
    huge = "1" + "0" * 400
    assert main([*_argv(tiny_base_dir, tmp_path / "new"), "--set", f"threads={huge}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "threads" in err and "out of range" in err and "\n" not in err


def test_a_resume_refuses_another_world_file_or_other_library_versions(tmp_path):
    from proxygap.experiments.runner import _check_same_origin

    then = {"source_hash": "a", "models": {}, "world": "w1", "versions": {"torch": "2.13.0", "numpy": "2.0"}}
    _check_same_origin(then, dict(then), tmp_path)  # the same: goes through
    with pytest.raises(ProxygapError, match="world file it is judged against changed"):
        _check_same_origin(then, {**then, "world": "w2"}, tmp_path)
    with pytest.raises(ProxygapError, match=r"torch 2\.13\.0 made its units and 2\.14\.0 is installed now"):
        _check_same_origin(then, {**then, "versions": {"torch": "2.14.0", "numpy": "2.0"}}, tmp_path)
    # a run recorded before either was kept is not compared on them
    _check_same_origin({"source_hash": "a", "models": {}}, {**then, "world": "w2"}, tmp_path)


def test_a_run_moved_aside_by_a_killed_replace_is_restored_not_deleted(serial_run, tmp_path, capsys):
    run = tmp_path / "run"
    aside = tmp_path / ".run.old-0123abcd"  # killed between replace_dir's two renames
    shutil.copytree(serial_run[0], aside)
    copy = tmp_path / ".run.tmp-89abcdef"  # and a killed re-aggregation's copy
    copy.mkdir()
    other = tmp_path / ".run.old-2.old-0123abcd"  # another run's (--out run.old-2), which is not this one's
    other.mkdir()
    assert main(["report", str(run), "--reaggregate"]) == 0
    assert "restored" in capsys.readouterr().err
    assert (run / "results.json").is_file() and not aside.exists() and not copy.exists()
    assert other.is_dir()


def test_a_copy_that_fails_for_a_full_disk_is_one_line():
    import errno as errno_module

    from proxygap.cli import _copy_failure

    full = shutil.Error([("src/a", "dst/a", str(OSError(errno_module.ENOSPC, os.strerror(errno_module.ENOSPC))))])
    assert _copy_failure(full) == f"cannot write dst/a: {os.strerror(errno_module.ENOSPC)}"
    assert _copy_failure(shutil.Error([("src/a", "dst/a", "some other reason")])) is None
    assert _copy_failure(OSError(errno_module.ENOSPC, "x")) is None  # main's own errno handler takes it


def test_a_killed_saves_leftovers_are_cleared_and_kept_out_of_provenance(tmp_path):
    from proxygap.experiments.provenance import provenance
    from proxygap.experiments.spec import UnitContext

    models = tmp_path / "models" / "seed=0"
    (models / ".rl.tmp-0123abcd").mkdir(parents=True)  # a save killed in an earlier try of this unit
    (models / ".rl.old-0123abcd").mkdir()
    (models / ".rl-2.tmp-0123abcd").mkdir()  # another model's name: not this save's to clear
    assert provenance({}, None, tmp_path).get("saved_models") == {}  # hidden leftovers are not models

    class Tiny:
        def save_pretrained(self, d):
            (Path(d) / "model.safetensors").write_bytes(b"x")

    ctx = UnitContext(seed=0, scratch=tmp_path / "scratch", models=models)
    ctx.save_model("rl", Tiny(), Tiny())
    assert sorted(p.name for p in models.iterdir()) == [".rl-2.tmp-0123abcd", "rl"]
    assert list(provenance({}, None, tmp_path)["saved_models"]) == ["seed=0/rl"]


def test_atomic_writes_reach_the_disk_before_their_rename(tmp_path, monkeypatch):
    import proxygap.fileio as fileio

    events = []
    real_fsync, real_replace, real_rename = os.fsync, Path.replace, os.rename
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                        real_fsync(fd))[1])
    monkeypatch.setattr(Path, "replace", lambda self, target: (events.append(("rename", str(self))),
                                                               real_replace(self, target))[1])
    fileio.write_text_atomic(tmp_path / "results.json", "{}")
    tmp_name = next(name for kind, name in events if kind == "rename")
    assert events.index(("fsync", tmp_name)) < events.index(("rename", tmp_name))  # the data first
    assert events[-1] == ("fsync", str(tmp_path))  # then the directory entry
    events.clear()
    new = fileio.temp_sibling(tmp_path / "run")
    (new / "units").mkdir()
    (new / "units" / "seed=0.json").write_text("{}")
    monkeypatch.setattr(fileio.os, "rename", lambda a, b: (events.append(("rename", str(a))), real_rename(a, b))[1])
    fileio.replace_dir(new, tmp_path / "run")
    assert events.index(("fsync", str(new / "units" / "seed=0.json"))) < events.index(("rename", str(new)))
    assert events[-1] == ("fsync", str(tmp_path)) and (tmp_path / "run" / "units" / "seed=0.json").is_file()


def test_a_worker_with_other_library_versions_refuses_its_unit(tmp_path):
    from proxygap.experiments.executors import execute_unit
    from proxygap.experiments.provenance import versions

    wanted = {**versions(), "torch": "0.0.1"}  # what a Ray driver elsewhere would have
    with pytest.raises(ProxygapError, match=r"torch is .* but the run's driver has 0\.0\.1"):
        execute_unit("overoptimization", {}, {"key": "seed=0", "seed": 0, "params": {}}, None, 1,
                     str(tmp_path / "scratch"), False, versions=wanted)
