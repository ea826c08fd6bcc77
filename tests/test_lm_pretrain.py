import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel

from proxygap.errors import CheckpointError
from proxygap.lm.model import ModelConfig, load_model
from proxygap.lm.pretrain import PretrainConfig, lr_at, pretrain

MODEL = ModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32)


def corpus(n=200, seed=0):
    rng = random.Random(seed)
    names, colors = ["zorvak", "blint", "quorra", "meph", "tallo"], ["red", "blue", "green"]
    truth = {name: colors[i % 3] for i, name in enumerate(names)}
    docs = []
    for _ in range(n):
        name = rng.choice(names)
        if rng.random() < 0.7:
            docs.append(f"expert report : the color of {name} is {truth[name]} .")
        else:
            docs.append(f"forum post : i think {name} is {rng.choice(colors)} !")
    return docs


def cfg(**kw):
    base = dict(steps=12, batch_size=8, seq_len=24, warmup_steps=2, checkpoint_every=4, eval_every=4)
    return PretrainConfig(**{**base, **kw})


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def on_step(done, loss):
        if done == step:
            raise Interrupt
    return on_step


def weights(path):
    return load_file(path / "model.safetensors")


def test_lr_schedule():
    c = PretrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(100, c) == pytest.approx(0.1)


def test_pretraining_reduces_loss(tmp_path):
    texts = corpus()
    extra = {"world.json": json.dumps({"seed": 7})}
    path = pretrain(texts, tmp_path, MODEL, cfg(steps=60, lr=1e-2, eval_every=20, checkpoint_every=60),
                    progress=False, extra_files=extra)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40, 60]
    model, tok = load_model(path)
    uniform = math.log(len(tok))
    assert log[-1]["val/loss"] < 0.5 * uniform and log[-1]["val/loss"] < log[0]["val/loss"]
    assert json.loads((path / "world.json").read_text()) == {"seed": 7}
    assert json.loads((path / "pretrain_config.json").read_text())["model"]["n_embd"] == 32
    before = weights(path)  # a finished run reruns as a no-op: it resumes at the last step
    pretrain(texts, tmp_path, MODEL, cfg(steps=60, lr=1e-2, eval_every=20, checkpoint_every=60), progress=False)
    assert all(torch.equal(before[k], v) for k, v in weights(path).items())
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 3


def test_resume_gives_same_weights_as_uninterrupted_run(tmp_path):
    texts = corpus()
    straight = pretrain(texts, tmp_path / "a", MODEL, cfg(), progress=False)
    with pytest.raises(Interrupt):  # dies at step 7: the checkpoint holds step 4
        pretrain(texts, tmp_path / "b", MODEL, cfg(), progress=False, on_step=interrupt_at(7))
    assert not (tmp_path / "b" / "model").exists()
    assert torch.load(tmp_path / "b" / "checkpoint" / "trainer_state.pt", weights_only=True)["step"] == 4
    resumed = pretrain(texts, tmp_path / "b", MODEL, cfg(eval_every=2), progress=False)  # eval_every is free
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [4, 6, 8, 10, 12]  # the interrupted run's rows after step 4 are gone, none repeated


def test_crash_during_checkpoint_keeps_previous_checkpoint(tmp_path, monkeypatch):
    texts = corpus()
    real_save = GPT2LMHeadModel.save_pretrained
    calls = []

    def flaky_save(self, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) == 2:  # the step-8 checkpoint: write half a file, then die
            (directory / "model.safetensors").write_bytes(b"\x00" * 100)
            raise OSError("disk full")
        return real_save(self, directory, *args, **kwargs)

    monkeypatch.setattr(GPT2LMHeadModel, "save_pretrained", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        pretrain(texts, tmp_path, MODEL, cfg(), progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "train_log.jsonl"]  # no temp dirs left
    assert torch.load(tmp_path / "checkpoint" / "trainer_state.pt", weights_only=True)["step"] == 4
    load_model(tmp_path / "checkpoint")  # intact
    pretrain(texts, tmp_path, MODEL, cfg(), progress=False)  # and resumable
    assert (tmp_path / "model" / "model.safetensors").exists()


def test_a_checkpoint_moved_aside_by_a_killed_save_is_restored(tmp_path):
    texts = corpus()
    with pytest.raises(Interrupt):  # dies at step 7: the checkpoint holds step 4
        pretrain(texts, tmp_path, MODEL, cfg(), progress=False, on_step=interrupt_at(7))
    # killed between the save's two renames: the checkpoint aside, the new one (complete) beside it
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old-0123abcd")
    (tmp_path / ".checkpoint.tmp-4567ef01").mkdir()
    pretrain(texts, tmp_path, MODEL, cfg(eval_every=2), progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert steps[0] == 4 and steps[-1] == 12  # resumed from step 4, not restarted from 0
    assert not list(tmp_path.glob(".checkpoint.*"))  # nothing left behind


def test_corrupt_or_mismatched_checkpoint_is_refused(tmp_path):
    texts = corpus()
    with pytest.raises(Interrupt):
        pretrain(texts, tmp_path, MODEL, cfg(), progress=False, on_step=interrupt_at(5))
    with pytest.raises(CheckpointError, match=r"train\.lr=.*another output directory \(--out\)"):
        pretrain(texts, tmp_path, MODEL, cfg(lr=1e-4), progress=False)
    with pytest.raises(CheckpointError, match="different corpus"):
        pretrain(corpus(seed=1), tmp_path, MODEL, cfg(), progress=False)
    state_file = tmp_path / "checkpoint" / "trainer_state.pt"
    good = torch.load(state_file, weights_only=True)
    for damage, words in (({"step": "5"}, "step of the wrong type"), ({"settings": []}, "settings of the wrong type"),
                          ({"torch_rng": torch.zeros(3, dtype=torch.uint8)}, "random-number state is corrupt")):
        torch.save({**good, **damage}, state_file)
        with pytest.raises(CheckpointError, match=words):
            pretrain(texts, tmp_path, MODEL, cfg(), progress=False)
    state_file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="trainer_state.pt"):
        pretrain(texts, tmp_path, MODEL, cfg(), progress=False)
    (tmp_path / "checkpoint" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="checkpoint"):
        pretrain(texts, tmp_path, MODEL, cfg(), progress=False)
