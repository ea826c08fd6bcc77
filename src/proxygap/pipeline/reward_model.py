"""The reward-model pipeline step: sample pairs from a model, label them with a judge, hold some out,
fit (an ensemble of) Bradley-Terry reward models, recentre, and report agreement with rater and gold.

Every experiment that needs "a reward model trained on this judge's labels" calls
:func:`train_reward_model` with a :class:`RewardModelConfig`; raters compared on the same
answers (an ablation) share one :func:`sample_pairs` draw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from proxygap.config import Config, ConfigError, knob
from proxygap.oversight.judges import Judge
from proxygap.oversight.reward_model import RewardEnsemble, RewardModel, label_pairs, pair_agreement


@dataclass
class RewardModelFitConfig(Config):
    """How a reward model is fitted, for an experiment that sets its labels and backbone itself (scaling)."""

    epochs: int = knob(2, "passes over the training pairs", lo=1, hi=100)
    lr: float = knob(3e-4, "AdamW learning rate", lo=0)
    batch_size: int = knob(64, "pairs per optimizer step", lo=1)
    heldout_fraction: float = knob(0.2, "pairs held out to measure agreement with the rater and with gold", lo=0.05, hi=0.5)
    ensemble_size: int = knob(1, "independently initialized and shuffled reward models", lo=1, hi=16)
    ensemble_combine: str = knob("mean", "how members combine: mean, worst (min) or uwo (mean - lambda*var)",
                                 choices=("mean", "worst", "uwo"))
    uwo_lambda: float = knob(1.0, "uncertainty penalty of the uwo combination", lo=0)


@dataclass
class RewardModelTrainConfig(RewardModelFitConfig):
    """The reward model's knobs but its samples' length, for an experiment that sets it per reward model."""

    SET_ELSEWHERE: ClassVar[dict[str, str]] = {"max_new_tokens": "each reward model's samples are as long as its "
                                                                 "policy's: set the policy's max_new_tokens"}

    n_pairs: int = knob(3000, "rater-labelled pairs of base-model samples (the number of labels)", lo=8)
    backbone: str = knob("base", "'base': initialize from the base LM (standard RLHF); else a model directory (the RM-size knob)")

    def check(self) -> None:
        held = round(self.heldout_fraction * self.n_pairs)
        if held < 1 or held >= self.n_pairs:
            raise ConfigError(f"n_pairs={self.n_pairs} with heldout_fraction={self.heldout_fraction} holds out {held} "
                              "pairs; the agreement needs at least one held-out pair and training at least one more")


def pair_length_knob():
    """The length limit of the answers sampled for pairs (one definition for every class that has it)."""
    return knob(24, "length limit, in tokens, of the sampled answers that make the pairs", lo=1)


@dataclass
class RewardModelConfig(RewardModelTrainConfig):
    max_new_tokens: int = pair_length_knob()


@dataclass
class Pairs:
    """Two samples of the model for each prompt."""

    prompts: list[str]
    a: list[str]
    b: list[str]


def sample_pairs(base, prompts: list[str], cfg: RewardModelConfig, seed: int) -> Pairs:
    """``cfg.n_pairs`` prompts drawn from ``prompts`` (with replacement) and two samples of ``base`` for each."""
    from proxygap.lm.sampling import sample

    chosen = random.Random(seed).choices(prompts, k=cfg.n_pairs)
    generator = torch.Generator().manual_seed(seed + 1)
    doubled = [p for p in chosen for _ in range(2)]
    texts = sample(base.model, base.tokenizer, doubled, cfg.max_new_tokens, generator=generator, batch_size=1024).texts
    return Pairs(chosen, texts[0::2], texts[1::2])


def train_reward_model(base, prompts: list[str], rater: Judge, gold: Judge, cfg: RewardModelConfig, seed: int,
                       pairs: Pairs | None = None, n_heldout: int | None = None) -> tuple[RewardEnsemble, dict]:
    """A reward model (ensemble) trained on ``rater``'s labels of pairs of ``base``'s samples.

    The first ``heldout_fraction`` of the pairs are held out: the returned info gives the RM's
    agreement there with the rater and with gold, and the rater's own agreement with gold. The
    rater's ``label_noise`` flips labels. ``pairs`` (from :func:`sample_pairs` with the same seed)
    skips the sampling, so raters compared on the same answers share it. ``n_heldout`` (default
    ``heldout_fraction`` of the pairs) fixes the held-out block, so RMs trained on nested prefixes
    of one draw are measured on the same held-out pairs.
    """
    pairs = pairs if pairs is not None else sample_pairs(base, prompts, cfg, seed)
    p, a, b = pairs.prompts, pairs.a, pairs.b
    rater_a, rater_b = np.array(rater(p, a)), np.array(rater(p, b))
    gold_a, gold_b = np.array(gold(p, a)), np.array(gold(p, b))
    n_held = _n_heldout(cfg, len(p), n_heldout)
    train_pairs = label_pairs(p[n_held:], a[n_held:], b[n_held:], rater_a[n_held:], rater_b[n_held:],
                              rater.flaws.label_noise, seed)
    backbone = base.path if cfg.backbone == "base" else Path(cfg.backbone)
    members = []
    for i in range(cfg.ensemble_size):
        member = RewardModel.from_backbone(backbone, seed=seed * 100 + i)
        member.fit(train_pairs, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=seed * 100 + i)
        members.append(member)
    ensemble = RewardEnsemble(members, cfg.ensemble_combine, cfg.uwo_lambda)
    hp, ha, hb = p[:n_held], a[:n_held], b[:n_held]
    rm_a, rm_b = ensemble.score(hp, ha), ensemble.score(hp, hb)
    info = {
        "n_pairs_sampled": len(p),
        "n_train_pairs": len(train_pairs),
        "n_heldout_pairs": n_held,
        "agreement_rater": pair_agreement(rm_a, rm_b, rater_a[:n_held], rater_b[:n_held]),
        "agreement_gold": pair_agreement(rm_a, rm_b, gold_a[:n_held], gold_b[:n_held]),
        "rater_gold_agreement": pair_agreement(rater_a[:n_held], rater_b[:n_held], gold_a[:n_held], gold_b[:n_held]),
    }
    return ensemble, info


def _n_heldout(cfg: RewardModelConfig, n_pairs: int, n_heldout: int | None) -> int:
    return int(round(cfg.heldout_fraction * n_pairs)) if n_heldout is None else n_heldout


def training_pairs(pairs: Pairs, rater: Judge, cfg: RewardModelConfig, seed: int,
                   n_heldout: int | None = None) -> list[tuple[str, str, str]]:
    """The (prompt, chosen, rejected) pairs ``train_reward_model`` trains on, labelled the same way
    (the rater's preference, ties dropped, its label noise applied with the same seed): what a direct
    alignment method (DPO, IPO) trains on in place of the reward model."""
    p, a, b = pairs.prompts, pairs.a, pairs.b
    n_held = _n_heldout(cfg, len(p), n_heldout)
    return label_pairs(p[n_held:], a[n_held:], b[n_held:], np.array(rater(p[n_held:], a[n_held:])),
                       np.array(rater(p[n_held:], b[n_held:])), rater.flaws.label_noise, seed)


def heldout_pairs(pairs: Pairs, cfg: RewardModelConfig, n_heldout: int | None = None) -> Pairs:
    """The pairs ``train_reward_model`` holds out (the first block), on which its agreement is measured."""
    n_held = _n_heldout(cfg, len(pairs.prompts), n_heldout)
    return Pairs(pairs.prompts[:n_held], pairs.a[:n_held], pairs.b[:n_held])


def recentre_on(ensemble: RewardEnsemble, base_scores: np.ndarray) -> float:
    """Shift every member so that samples of the base policy, which scored ``base_scores`` under
    ``ensemble``, score 0 on average (as Gao et al. do); returns the shift."""
    offset = float(np.mean(base_scores))
    for m in ensemble.members:
        m.offset += offset
    return offset
