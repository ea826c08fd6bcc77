"""Training a strong student on a weak supervisor's labels (Burns et al. 2023), top to bottom.

The student is a base model with a scalar head (``oversight.reward_model.RewardModel``). Two
label tasks share one loop; each example gives one binary logit ``z``:

- ``correct``: "is this answer good?" — z = head(prompt + answer), label 1 for yes;
- ``preference``: "is answer a better than answer b?" — z = head(prompt + a) - head(prompt + b)
  (the Bradley-Terry logit of a reward model), label 1 for a.

Losses, on the two-class logits [0, z] (so softmax gives [1 - sigmoid(z), sigmoid(z)]):

- ``xent``: cross-entropy with the (possibly soft) weak labels;
- ``logconf``: the auxiliary confidence loss of the openai/weak-to-strong code
  (``weak_to_strong/loss.py``, ``logconf_loss_fn``; here ``log_confidence_loss``): the target mixes
  the weak label with the student's own hardened prediction with weight ``aux_coef`` (0.5) after a
  warm-up over the first ``warmup_frac`` (10%) of the steps — during which, as in that code, the
  weight is ``step_frac * aux_coef`` (so it rises to 0.05, then jumps to 0.5); a prediction is
  hardened by thresholding the student's probability of class 0 at the quantile equal to the weak
  labels' mean in the batch, so the hardened labels keep the weak labels' class balance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from proxygap.config import Config, knob
from proxygap.oversight.reward_model import RewardModel


@dataclass
class StudentConfig(Config):
    epochs: int = knob(2, "passes over the student's training labels", lo=1, hi=100)
    lr: float = knob(3e-4, "AdamW learning rate", lo=0)
    batch_size: int = knob(32, "examples per step", lo=2)
    aux_coef: float = knob(0.5, "the confidence loss's final weight on the student's own hardened predictions",
                           lo=0, hi=1)
    warmup_frac: float = knob(0.1, "share of the steps before the confidence weight is aux_coef (during it: "
                                   "step_frac * aux_coef, as in openai/weak-to-strong)", lo=0, hi=1)


def two_class(z: torch.Tensor) -> torch.Tensor:
    """(B,) binary logits -> (B, 2) class logits [0, z]."""
    return torch.stack([torch.zeros_like(z), z], dim=-1)


def xent_loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the binary logits ``z`` with soft labels in [0, 1] (P(class 1))."""
    target = torch.stack([1.0 - labels, labels], dim=-1)
    return F.cross_entropy(two_class(z.float()), target)


def log_confidence_loss(z: torch.Tensor, labels: torch.Tensor, step_frac: float, warmup_frac: float = 0.1,
                        aux_coef: float = 0.5) -> torch.Tensor:
    """openai/weak-to-strong's ``logconf`` loss on binary logits ``z`` with weak ``labels``."""
    logits = two_class(z.float())
    labels = labels.float()
    # openai/weak-to-strong's schedule, as written there: the weight follows step_frac (not step_frac /
    # warmup_frac) during the warm-up, so it reaches only aux_coef * warmup_frac, then jumps to aux_coef.
    coef = (1.0 if step_frac > warmup_frac else step_frac) * aux_coef
    preds = torch.softmax(logits, dim=-1)
    threshold = torch.quantile(preds[:, 0], labels.mean())
    strong_preds = torch.stack([(preds[:, 0] >= threshold), (preds[:, 0] < threshold)], dim=1).float()
    target = torch.stack([1.0 - labels, labels], dim=1) * (1 - coef) + strong_preds.detach() * coef
    return F.cross_entropy(logits, target)


def example_logits(model: RewardModel, task: str, batch: list[tuple]) -> torch.Tensor:
    """The binary logit of each example: (prompt, answer) for ``correct``, (prompt, a, b) for ``preference``."""
    if task == "correct":
        return model.forward([p for p, _ in batch], [c for _, c in batch])
    prompts = [p for p, _, _ in batch]
    r = model.forward(prompts + prompts, [a for _, a, _ in batch] + [b for _, _, b in batch])
    return r[: len(batch)] - r[len(batch):]


def train_student(backbone: str | Path, task: str, examples: list[tuple], labels: list[float], cfg: StudentConfig,
                  *, confidence_loss: bool, seed: int) -> RewardModel:
    """A scalar-head model from ``backbone`` trained on (example, label) with xent or logconf."""
    if task not in ("correct", "preference"):
        raise ValueError(f"task must be 'correct' or 'preference', got {task!r}")
    if len(examples) != len(labels) or not examples:
        raise ValueError(f"need as many labels as examples, and some ({len(examples)} examples, {len(labels)} labels)")
    model = RewardModel.from_backbone(backbone, seed=seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=cfg.lr, weight_decay=0.0)
    n_batches = -(-len(examples) // cfg.batch_size)
    total, step = cfg.epochs * n_batches, 0
    model.model.train()
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            z = example_logits(model, task, [examples[j] for j in idx])
            y = torch.tensor([labels[j] for j in idx], dtype=torch.float32)
            if confidence_loss and len(idx) > 1:
                loss = log_confidence_loss(z, y, step / total, cfg.warmup_frac, cfg.aux_coef)
            else:
                loss = xent_loss(z, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.model.parameters(), 1.0)
            optimizer.step()
            step += 1
    model.model.eval()
    return model


@torch.no_grad()
def predict(model: RewardModel, task: str, examples: list[tuple], batch_size: int = 256) -> list[float]:
    """P(label 1) of each example under the student."""
    model.model.eval()
    out = []
    for i in range(0, len(examples), batch_size):
        out += torch.sigmoid(example_logits(model, task, examples[i:i + batch_size]).float()).tolist()
    return out
