"""Expert iteration: sample, keep the best by the optimized signal, fine-tune on it, repeat.

The regime of Sycophancy-to-Subterfuge (Denison et al. 2024) and of STaR / ReST-style
"filtered behaviour cloning": no advantages and no KL term, only imitation of the policy's own
best samples, so whatever the signal prefers is amplified round after round.

- **Answers** (``train_expert_iteration``, for ``loopholes``): each round draws
  ``prompts_per_round`` training prompts, samples ``samples_per_prompt`` answers to each from
  the current policy, keeps the one the signal (the reward model) scores highest, and fine-tunes
  the policy on the kept (prompt, answer) pairs with ``train.sft.train_sft``. The sample budget
  is rounds x prompts_per_round x samples_per_prompt, the same count as RL's
  steps x prompts_per_step x samples_per_prompt.
- **Agents** (``EXPERT_ITERATION``, for ``tampering``, on ``agent_common.train_agent``): each step
  rolls out the usual groups of episodes from shared starts; the episode with the highest observed
  return in each group is kept, and the policy takes one imitation step on its actions
  (advantage 1 for the kept episode's actions, 0 for the rest: the REINFORCE loss is then the
  log-likelihood of the kept episodes), the same budget and learning rate as every agent regime.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from proxygap.config import Config, knob
from proxygap.lm.sampling import sample
from proxygap.train.agent_common import AgentRegime, AgentRLConfig, Batch, Credit
from proxygap.train.sft import SFTConfig, train_sft

ScoreFn = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class ExpertIterationTrainConfig(Config):
    """Expert iteration's knobs but the answers' length, for an experiment that sets it (as RL's)."""

    SET_ELSEWHERE: ClassVar[dict[str, str]] = {"max_new_tokens": "expert iteration samples as RL does: set "
                                                                 "rl.max_new_tokens"}

    rounds: int = knob(4, "sample-select-fine-tune rounds", lo=1)
    prompts_per_round: int = knob(128, "training prompts drawn per round", lo=1)
    samples_per_prompt: int = knob(4, "answers sampled per prompt; the best is kept", lo=2)
    steps_per_round: int = knob(16, "SFT steps on each round's kept answers", lo=1)
    batch_size: int = knob(32, "kept answers per SFT step (drawn with replacement)", lo=1)
    lr: float = knob(1e-4, "SFT learning rate (AdamW)", lo=0)

    @property
    def budget(self) -> int:
        return self.rounds * self.prompts_per_round * self.samples_per_prompt


@dataclass
class ExpertIterationConfig(ExpertIterationTrainConfig):
    max_new_tokens: int = knob(24, "length limit of a sampled answer, in tokens", lo=1)


def best_of_group(scores: np.ndarray, k: int) -> np.ndarray:
    """(B,) scores grouped as (B/k, k) -> the index (into B) of each group's highest score (first on a tie)."""
    grouped = np.asarray(scores, dtype=float).reshape(-1, k)
    return np.arange(len(grouped)) * k + grouped.argmax(1)


def train_expert_iteration(base_model, tokenizer, prompts: list[str], signal: ScoreFn, cfg: ExpertIterationConfig,
                           *, seed: int, progress: bool = True) -> tuple[object, list[dict]]:
    """(policy, per-round log of the signal's mean over all samples and over the kept ones)."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    policy, history = base_model, []
    sft = SFTConfig(steps=cfg.steps_per_round, batch_size=cfg.batch_size, lr=cfg.lr)
    for r in range(cfg.rounds):
        chosen = [p for p in rng.choices(prompts, k=cfg.prompts_per_round) for _ in range(cfg.samples_per_prompt)]
        texts = sample(policy, tokenizer, chosen, cfg.max_new_tokens, generator=generator, batch_size=1024).texts
        scores = np.asarray(signal(chosen, texts), dtype=float)
        keep = best_of_group(scores, cfg.samples_per_prompt)
        kept = [(chosen[i], texts[i]) for i in keep if texts[i].strip()]
        history.append({"round": r, "signal_all": float(scores.mean()), "signal_kept": float(scores[keep].mean()),
                        "n_kept": len(kept)})
        if kept:
            policy, _ = train_sft(policy, tokenizer, kept, sft, seed=seed * 100 + r, progress=progress)
    return policy, history


@dataclass
class ExpertIterationAgentConfig(AgentRLConfig):
    """Expert iteration for agents: the shared agent knobs (kl_coef is not used: imitation has no penalty term)."""


def expert_iteration_credit(batch: Batch, cfg: ExpertIterationAgentConfig) -> Credit:
    """Advantage 1 for every action of each group's best episode by observed return, 0 for the others."""
    episodes, rows = batch.episodes, batch.rows
    returns = np.array([e.observed_return for e in episodes])
    keep = np.zeros(len(episodes))
    keep[best_of_group(returns, cfg.group_size)] = 1.0
    true = sum(e.true_return for e in episodes) / len(episodes)
    return Credit(torch.tensor(keep, dtype=torch.float32)[rows.episode],
                  log={"obs": float(returns.mean()), "kept": float(returns[keep == 1].mean()), "true": true})


EXPERT_ITERATION = AgentRegime("expert_iteration", ExpertIterationAgentConfig, expert_iteration_credit)
