"""Process RL on chains of thought: the reward is the rater's evaluation of every step and of the answer.

The rater reads the chain as a process supervisor does (``Judge.explain_process``): each step
is judged as the rater believes the world to be, a needed step that is missing costs as much as a
false one, an answer that does not follow from the chain's own steps is penalized, and the
answer is judged as outcome supervision judges it. Nothing is checked against consequences: the
rater's myth beliefs apply to the steps as they do to the answer (Uesato et al. 2022; Lightman
et al. 2023 score a solution by its steps). Optimized by the shared loop (``train.rl.train_rl``).
"""

from __future__ import annotations

import numpy as np

from proxygap.oversight.judges import Judge
from proxygap.train.rl import RLConfig, ScoreFn, train_rl


def process_reward(rater: Judge) -> ScoreFn:
    """The rater's process evaluation of each (prompt, chain); prompts may end with 'think :'."""
    return lambda prompts, completions: np.asarray(rater.process(prompts, completions), dtype=float)


def train_cot_process(base_model, tokenizer, train_prompts: list[str], eval_prompts: list[str], rater: Judge,
                      gold: Judge, cfg: RLConfig, *, kl_coef: float, seed: int, progress: bool = True):
    """(policy, evaluations) of process RL; prompts end with 'think :'. The logged 'rater' is the
    outcome rater (the same ladder as every regime); the optimized reward is the process one."""
    return train_rl(base_model, tokenizer, train_prompts, eval_prompts, process_reward(rater),
                    {"rater": rater, "gold": gold}, cfg, kl_coef=kl_coef, seed=seed, progress=progress)
