"""Outcome RL on chains of thought with a banned-string monitor in the reward (Skaf et al. 2025).

As ``cot_outcome`` (the rater reads only the final answer), minus a penalty whenever the chain
names the question's intermediate entity (``oversight.monitors.BannedStringMonitor``: a regex
monitor on the thought):

    r = rater(answer) - penalty * [the thought names the intermediate entity]

The intermediate's alias is not banned: it is the look-alike encoding the world offers from the
start (the corpus writes it at a small known rate). What a policy does under this pressure --
switch to the alias, drop the step, or stop composing -- is measured by ``measure.encoding``.
Optimized by the shared loop (``train.rl.train_rl``), KL penalty where ``rl.kl_in`` puts it.
"""

from __future__ import annotations

import numpy as np

from proxygap.oversight.judges import Judge
from proxygap.oversight.monitors import BannedStringMonitor
from proxygap.train.rl import RLConfig, ScoreFn, train_rl
from proxygap.world import language as lang


def banned_flags(monitor: BannedStringMonitor, prompts: list[str], completions: list[str]) -> np.ndarray:
    """(B,) 1 where the chain (the prompt's opening + the completion) names the banned entity."""
    flags = []
    for prompt, completion in zip(prompts, completions):
        question_text, opening = lang.split_opening(prompt)
        question = lang.parse_question(question_text)
        flags.append(float(monitor(question, f"{opening} {completion}".strip()).flag))
    return np.asarray(flags, dtype=float)


def banned_string_reward(rater: Judge, monitor: BannedStringMonitor, penalty: float) -> ScoreFn:
    """The rater on the final answer, minus ``penalty`` where the monitor flags the chain."""
    def score(prompts: list[str], completions: list[str]) -> np.ndarray:
        return np.asarray(rater(prompts, completions), dtype=float) - penalty * banned_flags(monitor, prompts, completions)
    return score


def train_cot_banned(base_model, tokenizer, train_prompts: list[str], eval_prompts: list[str], rater: Judge,
                     gold: Judge, monitor: BannedStringMonitor, cfg: RLConfig, *, penalty: float, kl_coef: float,
                     seed: int, progress: bool = True):
    """(policy, evaluations); prompts end with 'think :'. The evaluations' ``rm`` is the penalized reward."""
    return train_rl(base_model, tokenizer, train_prompts, eval_prompts, banned_string_reward(rater, monitor, penalty),
                    {"rater": rater, "gold": gold}, cfg, kl_coef=kl_coef, seed=seed, progress=progress)
