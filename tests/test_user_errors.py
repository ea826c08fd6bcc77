"""Every error a user can cause is one line, ``proxygap: error: ...`` on stderr, and exit code 2."""

import errno
import json
import random
from pathlib import Path

import pytest
import torch

from proxygap.cli import main
from proxygap.errors import CheckpointError
from proxygap.lm.model import ModelConfig, build_model, load_model, save_model
from proxygap.lm.pretrain import PretrainConfig, pretrain
from proxygap.lm.tokenizer import train_tokenizer

TINY_WORLD = ["--set", "n_entities=8", "--set", "n_attributes=2", "--set", "n_decisions=4",
              "--set", "corpus.n_documents=200"]
TINY_PRETRAIN = ["--quiet", "--set", "world.n_entities=8", "--set", "world.n_attributes=2",
                 "--set", "world.n_decisions=4", "--set", "world.corpus.n_documents=200",
                 "--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
                 "--set", "model.n_positions=32", "--set", "train.seq_len=16", "--set", "train.batch_size=4",
                 "--set", "train.steps=2", "--set", "train.warmup_steps=1", "--set", "train.eval_every=2",
                 "--set", "train.checkpoint_every=2"]


def user_error(capsys, argv) -> str:
    """Run the CLI, assert exit 2 with exactly one ``proxygap: error:`` line, return that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("proxygap: error: "), err
    assert "Traceback" not in err
    return lines[0]


def disk_full_on(monkeypatch, predicate=lambda path: True):
    """Make Path.write_text fail with ENOSPC for paths matching ``predicate``."""
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if predicate(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)


# ---------------------------------------------------------------- 1. disk full
def test_world_disk_full_is_one_line_and_keeps_the_old_world(tmp_path, capsys, monkeypatch):
    out = tmp_path / "w"
    assert main(["world", "--seed", "1", "--out", str(out), *TINY_WORLD]) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    disk_full_on(monkeypatch, lambda p: p.name == "corpus.txt")  # after config.yaml and world.json
    line = user_error(capsys, ["world", "--seed", "2", "--out", str(out), *TINY_WORLD])
    assert "No space left on device" in line and str(out) in line
    # 7. OUT is replaced as a whole or not at all: still the seed-1 world, no temp dirs left behind.
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def test_world_replaces_out_as_a_whole(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "stale.txt").write_text("from an older world")
    assert main(["world", "--seed", "1", "--out", str(out), *TINY_WORLD]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "corpus.txt", "rates.json", "world.json"]
    assert main(["world", "--seed", "2", "--out", str(out), *TINY_WORLD]) == 0
    assert json.loads((out / "world.json").read_text())["config"]["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["w"]


def test_pretrain_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    disk_full_on(monkeypatch)
    line = user_error(capsys, ["pretrain", "--out", str(tmp_path / "m"), *TINY_PRETRAIN])
    assert "No space left on device" in line and str(tmp_path / "m") in line


def test_run_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    import proxygap.experiments.runner as runner

    target = str(tmp_path / "r" / "results.json")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", target)

    monkeypatch.setattr(runner, "run_experiment", full)
    line = user_error(capsys, ["run", "probe", "--out", str(tmp_path / "r")])
    assert line == f"proxygap: error: cannot write {target}: No space left on device"


def test_report_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    import proxygap.experiments.runner as runner

    def full(run_dir):
        (Path(run_dir) / "report.html").write_text("<html>")

    disk_full_on(monkeypatch)
    monkeypatch.setattr(runner, "report_run", full)
    line = user_error(capsys, ["report", str(tmp_path)])
    assert "No space left on device" in line and str(tmp_path) in line


# ---------------------------------------------------------------- 2. results.json of the wrong shape
@pytest.mark.parametrize("results", [[1, 2, 3], {"no": "experiment"}])
def test_report_refuses_a_results_file_that_is_not_one(tmp_path, capsys, results):
    (tmp_path / "results.json").write_text(json.dumps(results))
    line = user_error(capsys, ["report", str(tmp_path)])
    assert f"{tmp_path}/results.json" in line and "results file" in line


@pytest.mark.parametrize("experiment", ["overoptimization", "kl-prior", "loopholes", "tampering", "probe"])
def test_report_refuses_results_missing_what_the_report_reads(tmp_path, capsys, experiment):
    (tmp_path / "results.json").write_text(json.dumps({"experiment": experiment, "config": {}}))
    line = user_error(capsys, ["report", str(tmp_path)])
    assert f"{tmp_path}/results.json" in line and experiment in line


# ---------------------------------------------------------------- 3. non-finite weights
def test_model_with_nan_weights_is_refused(tmp_path, capsys):
    tok = train_tokenizer(["user : what is the color of zorvak ? assistant : red ."])
    model = build_model(ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=16), tok)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    save_model(model, tok, tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"transformer\.h\.0\.mlp\.c_fc\.weight"):
        load_model(tmp_path / "m")
    line = user_error(capsys, ["probe", "--model", str(tmp_path / "m")])
    assert str(tmp_path / "m") in line and "non-finite" in line


# ---------------------------------------------------------------- 4. vocabulary does not cover the world
def test_model_paired_with_a_world_it_does_not_know_is_refused(tmp_path, capsys):
    world_dir = tmp_path / "w"
    assert main(["world", "--seed", "12345", "--out", str(world_dir), "--set", "corpus.n_documents=20"]) == 0
    line = user_error(capsys, ["probe", "--world", str(world_dir)])
    assert "models/s" in line and str(world_dir) in line and "seed 12345" in line


# ---------------------------------------------------------------- 5. impossible model sizes
@pytest.mark.parametrize("override, words", [
    ("model.n_head=3", "n_head"),
    ("model.n_positions=16", "n_positions"),  # < train.seq_len (128)
    ("model.n_layer=0", "n_layer"),
    ("train.lr=nan", "lr"),
])
def test_impossible_model_size_is_a_config_error(tmp_path, capsys, monkeypatch, override, words):
    import proxygap.pipeline.base_model as base_model

    def no_world(*args, **kwargs):
        raise AssertionError("must fail at config resolution, before building the world")

    monkeypatch.setattr(base_model, "build_world", no_world)
    line = user_error(capsys, ["pretrain", "--out", str(tmp_path / "m"), "--set", override])
    assert words in line
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- 6. torn last line of train_log.jsonl
def corpus(n=120, seed=0):
    rng = random.Random(seed)
    names, colors = ["zorvak", "blint", "quorra", "meph"], ["red", "blue", "green"]
    return [f"expert report : the color of {rng.choice(names)} is {rng.choice(colors)} ." for _ in range(n)]


class Interrupt(Exception):
    pass


def test_resume_survives_a_torn_last_log_line(tmp_path):
    model_cfg = ModelConfig(n_layer=1, n_embd=16, n_head=2, n_positions=16)
    cfg = PretrainConfig(steps=6, batch_size=4, seq_len=12, warmup_steps=1, checkpoint_every=2, eval_every=2)

    def stop_at_3(done, loss):
        if done == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain(corpus(), tmp_path, model_cfg, cfg, progress=False, on_step=stop_at_3)
    log = tmp_path / "train_log.jsonl"
    with log.open("a") as f:
        f.write('{"step": 4, "train/lo')  # kill -9 in the middle of a write
    pretrain(corpus(), tmp_path, model_cfg, cfg, progress=False)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_permission_denied_is_one_line(tmp_path, capsys, monkeypatch):
    import proxygap.experiments.runner as runner

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "r"))

    monkeypatch.setattr(runner, "run_experiment", denied)
    line = user_error(capsys, ["run", "probe", "--out", str(tmp_path / "r")])
    assert line == f"proxygap: error: cannot access {tmp_path / 'r'}: Permission denied"
