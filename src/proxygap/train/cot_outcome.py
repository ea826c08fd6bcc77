"""Outcome RL on chains of thought: the reward is the rater's score of the final answer only.

The policy answers two-hop questions that open with ``think :``; the rater reads the value
after ``answer :`` and nothing before it, so its myth beliefs and style flaws apply to the
answer and the chain is free to become anything that leads there. The debated worry: rewarded
for where the chain leads and not for the chain, the chain drifts from the computation that
produces the answer. Optimized by the shared loop (``train.rl.train_rl``), KL penalty where ``rl.kl_in`` puts it.
"""

from __future__ import annotations

import numpy as np

from proxygap.oversight.judges import Judge
from proxygap.train.rl import RLConfig, ScoreFn, train_rl


def outcome_reward(rater: Judge) -> ScoreFn:
    """The rater on the final answer (the prompt's 'think :' is read as the start of the answer)."""
    return lambda prompts, completions: np.asarray(rater(prompts, completions), dtype=float)


def train_cot_outcome(base_model, tokenizer, train_prompts: list[str], eval_prompts: list[str], rater: Judge,
                      gold: Judge, cfg: RLConfig, *, kl_coef: float, seed: int, progress: bool = True):
    """(policy, evaluations) of outcome RL; prompts end with 'think :'."""
    return train_rl(base_model, tokenizer, train_prompts, eval_prompts, outcome_reward(rater),
                    {"rater": rater, "gold": gold}, cfg, kl_coef=kl_coef, seed=seed, progress=progress)
