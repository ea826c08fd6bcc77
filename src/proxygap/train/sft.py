"""Supervised fine-tuning (imitation) on demonstrations, readable top to bottom (CleanRL style).

The regime the RLHF debate calls "just imitating people": the base model is fine-tuned by
next-token loss on (prompt, answer) demonstrations, by default the assistant transcripts of
its own corpus (``assistant_transcripts``). Each example is tokenized exactly as the sampler
sees it: ``<bos> prompt answer <eos>``, the prompt ending in ``assistant :``. The loss is
taken on the answer's tokens and the closing EOS only (``answer_only=True``, the usual SFT
choice): the model is taught to answer, not to ask; with ``answer_only=False`` every token
after the bos counts, as in pretraining.

Each step draws ``batch_size`` examples with replacement (seeded), right-pads them, and takes
one AdamW step on the mean loss over the counted tokens. Returns a trained copy; the input
model is not changed.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob
from proxygap.lm.sampling import pad_id
from proxygap.world import language as lang


@dataclass
class SFTConfig(Config):
    steps: int = knob(150, "optimizer steps", lo=0)
    batch_size: int = knob(32, "demonstrations per step (drawn with replacement)", lo=1)
    lr: float = knob(1e-4, "AdamW learning rate (constant); low because the base model already knows the text", lo=0)
    weight_decay: float = knob(0.0, "AdamW weight decay", lo=0)
    grad_clip: float = knob(1.0, "max gradient norm (0: off)", lo=0)
    answer_only: bool = knob(True, "loss on the answer tokens (and the closing EOS) only, not on the question")

    def check(self) -> None:
        if self.steps > 0 and self.lr == 0:
            raise ConfigError("lr is 0: the model would not change; set sft.steps=0 to skip fine-tuning instead")


def assistant_transcripts(documents: list[str]) -> list[tuple[str, str]]:
    """(prompt, answer) of every assistant transcript among ``documents``, in order."""
    pairs = [lang.split_transcript(d) for d in documents]
    return [p for p in pairs if p is not None and p[1]]


def encode_examples(tokenizer, examples: list[tuple[str, str]], answer_only: bool = True,
                    max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids, attention_mask, loss_mask)``, each (B, L): ``<bos> prompt answer <eos>``.

    ``loss_mask[b, t] = 1`` where token t is a target of the loss (predicted from t - 1): the
    answer and EOS, or with ``answer_only=False`` every token after the bos.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows, masks = [], []
    for prompt, answer in examples:
        p = tokenizer.encode(prompt, add_special_tokens=False)
        # The answer as it follows its prompt: a byte-level BPE spells a word after a space
        # ('Ġword') unlike the same word at the start of a text, and sampling writes the former.
        a = tokenizer.encode(f"{prompt} {answer}", add_special_tokens=False)[len(p):] + [eos]
        ids = ([bos] if bos is not None else []) + p + a
        counted = [0] * (len(ids) - len(a)) + [1] * len(a) if answer_only else [0] + [1] * (len(ids) - 1)
        if max_len is not None:
            ids, counted = ids[:max_len], counted[:max_len]
        rows.append(ids)
        masks.append(counted)
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id(tokenizer), dtype=torch.long)
    attention = torch.zeros((len(rows), L), dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        attention[i, :len(r)] = 1
        mask[i, :len(m)] = torch.tensor(m, dtype=torch.long)
    return ids, attention, mask


def sft_loss(model, ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the counted tokens. ids, attention_mask, loss_mask: (B, L)."""
    # Right padding: positions 0..L-1 need no shift, and padding comes after every counted token.
    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, :-1]  # (B, L-1, V): t predicts t+1
    targets, counted = ids[:, 1:], loss_mask[:, 1:].float()  # (B, L-1)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(counted)
    return (nll * counted).sum() / counted.sum().clamp(min=1.0)


def train_sft(base_model, tokenizer, examples: list[tuple[str, str]], cfg: SFTConfig, *, seed: int,
              progress: bool = True) -> tuple[object, list[float]]:
    """Fine-tune a copy of ``base_model`` on ``examples`` (batch order from ``seed``); returns (model, per-step losses)."""
    if not examples:
        raise ConfigError("no demonstrations to fine-tune on (the corpus has no assistant transcripts)")
    rng = random.Random(seed)
    max_len = getattr(base_model.config, "max_position_embeddings", None)
    model = copy.deepcopy(base_model)
    model.eval()  # no dropout: the regime is imitation, not regularization; matches how RL trains
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    bar = tqdm(range(1, cfg.steps + 1), desc="sft", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for _ in bar:
        batch = rng.choices(examples, k=cfg.batch_size)
        ids, attention, mask = encode_examples(tokenizer, batch, cfg.answer_only, max_len)  # (B, L) each
        loss = sft_loss(model, ids, attention, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    model.requires_grad_(False)
    model.proxygap_train_time_s = time.time() - t0
    return model, losses


@torch.no_grad()
def mean_loss(model, tokenizer, examples: list[tuple[str, str]], answer_only: bool = True,
              batch_size: int = 256) -> float:
    """The SFT loss of ``model`` on ``examples`` (all of them, token-weighted), for held-out checks."""
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(examples), batch_size):
        ids, attention, mask = encode_examples(tokenizer, examples[i:i + batch_size], answer_only)
        n = float(mask[:, 1:].sum())
        total += sft_loss(model, ids, attention, mask).item() * n
        count += n
    return total / max(count, 1.0)
