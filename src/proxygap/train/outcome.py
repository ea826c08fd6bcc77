"""Outcome-based RL: every action is credited with the whole episode's observed return (CleanRL style).

The return of an episode is the sum of the rewards the reward channel reported (gamma = 1):
a sensor, the agent's own tests, a reward file. If an action early in the episode makes a
later observation look better (fool the sensor, write softball tests, edit the reward file),
that action is credited with the later reward: this is the regime that has a reason to seize
the reward channel.

Each step:
1. roll out ``group_size`` episodes from each of ``starts_per_step`` starts;
2. shaped return per episode, Stiennon et al. (2020) form summed over the episode's actions:
   ``R_i = sum_t r_obs(i, t) - beta * sum_{action tokens of episode i} log(pi / pi_ref)``;
3. RLOO advantage: ``A_i = R_i - mean_{i' != i in the group} R_i'`` (the group shares the start);
4. every action token of episode i gets A_i: ``loss = -(1/E) sum_i A_i sum_t log pi(a_it | s_it)``.

The true reward is logged at every evaluation and never enters the update.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from proxygap.train.agent_common import (
    AgentEvaluation, AgentRLConfig, Approver, EnvFactory, evaluate_agent, kl_per_row, make_policy,
    policy_gradient_step, rollout_groups, step_rows,
)
from proxygap.train.rl import rloo_advantages


@dataclass
class OutcomeConfig(AgentRLConfig):
    """Outcome-based RL: the shared agent knobs; the reward is the episode's observed return (gamma = 1)."""


def outcome_advantages(observed_returns: torch.Tensor, kl: torch.Tensor, k: int, kl_coef: float) -> torch.Tensor:
    """(E,) episode returns and KLs (nats, summed over the episode's actions), grouped as (E/k, k) ->
    (E,) RLOO advantages of the shaped return ``R - kl_coef * KL``."""
    return rloo_advantages(observed_returns - kl_coef * kl, k)


def train_outcome(base_model, tokenizer, make_env: EnvFactory, cfg: OutcomeConfig, approver: Approver | None = None,
                  progress: bool = True, on_eval: Callable[[AgentEvaluation], None] | None = None,
                  first_eval: AgentEvaluation | None = None, label: str = "outcome",
                  ) -> tuple[object, list[AgentEvaluation]]:
    """Optimize a copy of ``base_model`` on observed episode returns; returns (policy, evaluations).

    ``approver`` is only logged (approval of the executed actions at evaluation), never optimized.
    ``first_eval`` is the step-0 evaluation if the caller already has it (the base model's).
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    ref, policy = base_model.eval(), make_policy(base_model)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    def evaluate(step: int) -> AgentEvaluation:
        return evaluate_agent(policy, tokenizer, make_env, cfg.eval_episodes, cfg.max_action_tokens, cfg.seed, step,
                              approver)

    evaluations = [first_eval or evaluate(0)]
    if on_eval:
        on_eval(evaluations[-1])
    bar = tqdm(range(1, cfg.steps + 1), desc=label, disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        # 1. Rollouts: group_size episodes from each start (no grad).
        episodes = rollout_groups(policy, tokenizer, make_env, cfg, rng, generator)
        rows = step_rows(episodes)
        # 2. Shaped return per episode: observed return - beta * (log pi/pi_ref summed over all its action tokens).
        returns = torch.tensor([e.observed_return for e in episodes])  # (E,)
        kl_rows = kl_per_row(ref, tokenizer, rows) if cfg.kl_coef > 0 else torch.zeros(len(rows))  # (N,)
        kl_episode = torch.zeros(len(episodes)).index_add_(0, rows.episode, kl_rows)  # (E,)
        # 3. RLOO advantage per episode, 4. shared by every action of the episode.
        adv_episode = outcome_advantages(returns, kl_episode, cfg.group_size, cfg.kl_coef)  # (E,)
        adv_rows = adv_episode[rows.episode]  # (N,)
        loss = policy_gradient_step(policy, optimizer, tokenizer, rows.prompts, rows.token_ids, adv_rows,
                                    len(episodes), cfg.grad_clip)
        bar.set_postfix(obs=f"{returns.mean():.2f}", true=f"{sum(e.true_return for e in episodes) / len(episodes):.2f}",
                        loss=f"{loss:.2f}")

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
