"""Reward models: a scalar head on a transformer backbone, trained with the Bradley-Terry loss
on rater-labelled pairs of base-model samples (standard RLHF: the backbone starts as the base LM).

The backbone is loaded with ``AutoModelForSequenceClassification`` (``num_labels=1``), so any
Hugging Face causal LM directory can serve, and the result is the kind of reward model TRL
uses. Inputs are left-padded, so the score is read at the last position of every row.
Ensembles (Coste et al. 2023) combine members as mean, worst case (min) or uncertainty-weighted
(mean - lambda * variance).
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from proxygap.errors import CheckpointError
from proxygap.lm.device import current_device
from proxygap.lm.model import quiet_hf_progress
from proxygap.lm.sampling import encode_prompts


@contextlib.contextmanager
def _quiet_load_report():
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigma(r_chosen - r_rejected), averaged: the Bradley-Terry negative log-likelihood."""
    return -F.logsigmoid(chosen - rejected).mean()


class RewardModel:
    """One scalar-head transformer and its tokenizer; ``offset`` recentres scores."""

    def __init__(self, model, tokenizer, offset: float = 0.0):
        self.model = model
        self.tokenizer = tokenizer
        self.offset = offset

    @classmethod
    def from_backbone(cls, path: str | Path, seed: int = 0) -> RewardModel:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"no reward-model backbone at {path} (need a Hugging Face model directory)")
        try:
            # The fresh scalar head's initialization is a function of ``seed`` alone (drawn on the
            # CPU, on every machine; moved to the device below); fork_rng leaves the caller's (the
            # runner's) global RNG as it was.
            with quiet_hf_progress(), _quiet_load_report(), torch.random.fork_rng(), torch.device("cpu"):
                torch.manual_seed(seed)
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot load reward-model backbone from {path}: {str(e).splitlines()[0]}") from e
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
            model = model.float()  # a backbone stored in half precision (size m) trains in float32
        return cls(model.to(current_device()), tokenizer)

    def forward(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """(B,) scores of prompt + completion, with grad (no offset): what training differentiates."""
        texts = [f"{p} {c}".strip() for p, c in zip(prompts, completions)]
        ids, mask = encode_prompts(self.tokenizer, texts)  # left-padded: every row ends at position -1
        # On the model's device, wherever the caller put it (a TRL run on a GPU, outside compute_on).
        ids, mask = ids.to(self.model.device), mask.to(self.model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # (B, 1)
        return logits[:, 0]

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str], batch_size: int = 256) -> np.ndarray:
        self.model.eval()
        out = [self.forward(prompts[i:i + batch_size], completions[i:i + batch_size])
               for i in range(0, len(prompts), batch_size)]
        return (torch.cat(out).float().cpu().numpy() if out else np.zeros(0)) - self.offset

    def fit(self, pairs: list[tuple[str, str, str]], *, epochs: int, lr: float, batch_size: int,
            seed: int = 0) -> list[float]:
        """Train on (prompt, chosen, rejected) with the Bradley-Terry loss; returns per-step losses."""
        rng = random.Random(seed)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0)
        self.model.train()
        losses = []
        for _ in range(epochs):
            order = list(range(len(pairs)))
            rng.shuffle(order)
            for i in range(0, len(order), batch_size):
                batch = [pairs[j] for j in order[i:i + batch_size]]
                prompts = [p for p, _, _ in batch]
                rewards = self.forward(prompts + prompts, [c for _, c, _ in batch] + [r for _, _, r in batch])
                loss = bradley_terry_loss(rewards[: len(batch)], rewards[len(batch):])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.item())
        self.model.eval()
        return losses


class RewardEnsemble:
    """Members scored together and combined (one member: that member)."""

    def __init__(self, members: list[RewardModel], combine: str = "mean", uwo_lambda: float = 1.0):
        self.members = members
        self.combine = combine
        self.uwo_lambda = uwo_lambda

    def member_scores(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        return np.stack([m.score(prompts, completions) for m in self.members])  # (M, B)

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        scores = self.member_scores(prompts, completions)
        if self.combine == "worst":
            return scores.min(0)
        if self.combine == "uwo":
            return scores.mean(0) - self.uwo_lambda * scores.var(0)
        return scores.mean(0)

    def recentre(self, prompts: list[str], completions: list[str]) -> float:
        """Shift every member so the base policy's samples score 0 on average (as Gao et al. do)."""
        for m in self.members:
            m.offset = 0.0
            m.offset = float(m.score(prompts, completions).mean())
        return float(self.score(prompts, completions).mean())


def label_pairs(prompts: list[str], a: list[str], b: list[str], rater_a: np.ndarray, rater_b: np.ndarray,
                label_noise: float, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) by the rater's scores; ties dropped, labels flipped with P=label_noise.

    Pair i's flip is drawn whether or not the rater ties it, so two raters labelling the same pairs
    with the same seed flip the same pairs (common random numbers): an ablated rater that ties
    other pairs differs from the full one only where its scores do, not in its noise.
    """
    rng = random.Random(seed)
    pairs = []
    for p, x, y, sx, sy in zip(prompts, a, b, rater_a, rater_b):
        flip = rng.random() < label_noise
        if sx == sy:
            continue
        chosen, rejected = (x, y) if sx > sy else (y, x)
        if flip:
            chosen, rejected = rejected, chosen
        pairs.append((p, chosen, rejected))
    return pairs


def pair_agreement(rm_a: np.ndarray, rm_b: np.ndarray, ref_a: np.ndarray, ref_b: np.ndarray) -> float | None:
    """Fraction of pairs (ties in the reference dropped) that the RM orders as the reference does."""
    keep = ref_a != ref_b
    if not keep.any():
        return None
    return float(np.mean(np.sign(rm_a - rm_b)[keep] == np.sign(ref_a - ref_b)[keep]))
