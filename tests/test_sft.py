"""Supervised fine-tuning: what the loss counts, and that training lowers it."""

import pytest
import torch

from proxygap.config import ConfigError, apply_overrides
from proxygap.pipeline.base_model import load_base_model
from proxygap.train.sft import (
    SFTConfig,
    assistant_transcripts,
    encode_examples,
    mean_loss,
    train_sft,
)
from proxygap.corpus import generate_corpus


@pytest.fixture(scope="module")
def tiny(tiny_base_dir):
    return load_base_model(tiny_base_dir)


@pytest.fixture(scope="module")
def examples(tiny):
    return assistant_transcripts(generate_corpus(tiny.world))


def test_transcripts_are_prompt_answer_pairs(examples):
    assert examples
    for prompt, answer in examples[:50]:
        assert prompt.startswith("user : ") and prompt.endswith("assistant :") and answer and "user :" not in answer


def test_loss_counts_the_answer_and_eos_only(tiny, examples):
    tok = tiny.tokenizer
    ex = [examples[0], examples[1], ("user : what ? assistant :", "red .")]  # rows of different lengths
    ids, attention, mask = encode_examples(tok, ex)
    for row, att, m, (prompt, answer) in zip(ids, attention, mask, ex):
        n = int(att.sum())
        counted = row[m.bool()].tolist()
        assert counted == tok.encode(answer, add_special_tokens=False) + [tok.eos_token_id]
        assert row[0] == tok.bos_token_id and m[:n].tolist()[-1] == 1 and m[n:].sum() == 0
        assert tok.decode(row[1:n - len(counted)]) == prompt
    _, _, all_mask = encode_examples(tok, ex, answer_only=False)
    assert (all_mask.sum(1) == attention.sum(1) - 1).all()  # every token after the bos


def test_sft_lowers_the_loss_and_leaves_the_base_alone(tiny, examples):
    train = examples[:16]
    before = mean_loss(tiny.model, tiny.tokenizer, train)
    weights = [p.detach().clone() for p in tiny.model.parameters()]
    cfg = SFTConfig(steps=15, batch_size=8, lr=3e-3)
    model, losses = train_sft(tiny.model, tiny.tokenizer, train, cfg, seed=0, progress=False)
    after = mean_loss(model, tiny.tokenizer, train)
    assert len(losses) == 15 and after < before - 0.1, (before, after)
    assert all(torch.equal(a, b) for a, b in zip(weights, tiny.model.parameters()))
    _, losses2 = train_sft(tiny.model, tiny.tokenizer, train, cfg, seed=0, progress=False)
    assert losses2 == losses  # seeded


def test_sft_config_is_checked():
    with pytest.raises(ConfigError, match="lr is 0"):
        apply_overrides(SFTConfig(), ["lr=0"])
