"""Bad input found by probing the command line: each is one line naming the problem, exit 2, and
nothing written (no run directory, no interrupted run left behind)."""

import json
import shutil

import pytest
import yaml

from proxygap.cli import main
from proxygap.experiments.provenance import model_refs
from proxygap.pipeline.base_model import models_dir


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    return err


@pytest.mark.parametrize("argv, words", [
    (["--seeds", "99999999999999999999"], "--seeds must be a count from 1 to 10000"),
    (["--set", "seeds=99999999999999999999"], "give a count from 1 to 10000"),
    (["--seeds", "9223372036854775808,1"], "seeds=9223372036854775808 is out of range [0, 2147483647]"),
    (["--seeds", "2", "--seed-offset", "99999999999999999999"], "--seed-offset must be from 0 to 2147483646"),
    (["--device", ""], "device='' is not a device"),
    (["--set", "device="], "device='' is not a device"),
    (["--executor", "ray", "--ray-cpus", "0"], "--ray-cpus must be at least 1"),
])
def test_run_arguments_out_of_range_are_one_line(argv, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "overoptimization", "--preset", "smoke", "--out", str(out), *argv]) == 2
    assert words in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bogus"])
    assert exit_.value.code == 2
    assert "invalid choice: 'bogus'" in _error(capsys)


def test_an_unreachable_ray_cluster_is_one_line_not_minutes_of_retries(tmp_path, capsys):
    pytest.importorskip("ray")
    assert main(["run", "overoptimization", "--preset", "smoke", "--out", str(tmp_path / "run"),
                 "--executor", "ray", "--ray-address", "127.0.0.1:1"]) == 2
    assert "cannot reach Ray at 127.0.0.1:1" in _error(capsys)


def test_an_out_directory_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert main(["run", "overoptimization", "--preset", "smoke", "--out", str(tmp_path / "a_file" / "run")]) == 2
    assert "cannot write the run directory" in _error(capsys)


def test_an_empty_phrase_list_with_a_manipulation_rate_is_refused(tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "base"), "--set", "world.corpus.manipulation_phrases=[]"]) == 2
    assert "manipulation_phrases is empty but manipulation_rate > 0" in _error(capsys)
    assert not (tmp_path / "base").exists()


@pytest.mark.parametrize("damage, words", [
    (lambda d: (d / "model.safetensors").write_bytes(b"\0" * 100), "model.safetensors is corrupt"),
    (lambda d: (d / "tokenizer.json").write_text("{"), "tokenizer.json is corrupt (not JSON"),
    (lambda d: (d / "model.safetensors").unlink(), "has no weights"),
])
def test_a_corrupt_model_is_named_before_the_run_writes_anything(damage, words, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(models_dir() / "xs", model)
    damage(model)
    out = tmp_path / "runs" / "run"
    assert main(["run", "overoptimization", "--preset", "smoke", "--set", f"model={model}", "--out", str(out)]) == 2
    assert words in _error(capsys)
    assert not out.parent.exists() or [p.name for p in out.parent.iterdir()] == [".run.lock"]  # no run, no .partial
    assert main(["probe", "--model", str(model)]) == 2  # the same line from every loader
    assert words in _error(capsys)


def test_resuming_a_complete_run_with_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"experiment": "overoptimization"}))
    (out / "config.yaml").write_text(yaml.safe_dump({"rl": {"steps": 1}}))
    assert main(["run", "overoptimization", "--preset", "smoke", "--resume", "--out", str(out)]) == 2
    assert "is a complete run of a different config (" in _error(capsys)
    assert json.loads((out / "results.json").read_text()) == {"experiment": "overoptimization"}  # untouched


def test_a_results_file_from_a_newer_schema_is_refused(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps({"experiment": "overoptimization", "schema_version": 99}))
    assert main(["report", str(tmp_path)]) == 2
    assert "schema_version 99, newer than this proxygap's" in _error(capsys)


def test_an_empty_model_knob_is_recorded_as_the_default_model():
    assert model_refs({"model": ""}) == ["default"]
    assert model_refs({"model": "", "sizes": ["xs", ""]}) == ["default", "xs"]


def test_a_probe_json_path_that_cannot_be_written_is_refused_before_the_probe(tmp_path, capsys):
    assert main(["probe", "--size", "xs", "--json", str(tmp_path)]) == 2
    assert "it is a directory" in _error(capsys)
    (tmp_path / "a_file").write_text("x")
    assert main(["probe", "--size", "xs", "--json", str(tmp_path / "a_file" / "probe.json")]) == 2
    assert "cannot write --json" in _error(capsys)


def test_a_read_only_probe_json_place_is_refused_before_the_probe(tmp_path, monkeypatch, capsys):
    import os

    import proxygap.cli as cli

    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(read_only) else real_access(p, mode))
    monkeypatch.setattr(cli, "_probe", lambda args: pytest.fail("the probe ran before the check"))
    assert main(["probe", "--size", "xs", "--json", str(read_only / "probe.json")]) == 2
    assert "permission denied" in _error(capsys)


def test_small_wording_fixes(capsys):
    assert main(["run", "overoptimization", "--preset", "smoke", "--set", "=3"]) == 2
    assert "names no field" in _error(capsys)
    assert main(["probe", "--size", "xs", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in _error(capsys)


def test_an_unknown_knobs_target_lists_every_target(capsys):
    assert main(["knobs", "nosuch"]) == 2
    err = _error(capsys)
    assert "unknown knobs target 'nosuch'" in err
    assert all(name in err for name in ("world", "pretrain", "probe", "overoptimization", "weak-to-strong"))


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    import proxygap.cli as cli

    def closed(*_):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(cli, "describe", closed)
    assert main(["knobs", "world"]) == 141
    assert capsys.readouterr().err == ""


def test_config_file_and_knob_mistakes_say_where(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  steps: 3\n   kl: [\n")
    assert main(["run", "overoptimization", "--preset", "smoke", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "is not valid YAML/JSON (line 3, column" in _error(capsys)
    assert main(["run", "overoptimization", "--preset", "smoke", "--config", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "is a directory; give a YAML or JSON file" in _error(capsys)
    assert main(["run", "overoptimization", "--preset", "smoke", "--set", "prompt_kinds=[]", "--out", str(tmp_path / "r")]) == 2
    assert "prompt_kinds is empty" in _error(capsys)
    assert main(["pretrain", "--out", str(tmp_path / "base"), "--set", "train.seed=-1"]) == 2
    assert "train.seed" in _error(capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "base").exists()
