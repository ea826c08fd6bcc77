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

The true reward is logged at every evaluation and never enters the update. The loop itself
(rollouts, the REINFORCE step, evaluations) is ``agent_common.train_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.train.agent_common import AgentRegime, AgentRLConfig, Batch, Credit
from proxygap.train.rl import rloo_advantages


@dataclass
class OutcomeConfig(AgentRLConfig):
    """Outcome-based RL: the shared agent knobs; the reward is the episode's observed return (gamma = 1)."""


def outcome_advantages(observed_returns: torch.Tensor, kl: torch.Tensor, k: int, kl_coef: float) -> torch.Tensor:
    """(E,) episode returns and KLs (nats, summed over the episode's actions), grouped as (E/k, k) ->
    (E,) RLOO advantages of the shaped return ``R - kl_coef * KL``."""
    return rloo_advantages(observed_returns - kl_coef * kl, k)


def outcome_credit(batch: Batch, cfg: OutcomeConfig) -> Credit:
    """Steps 2-4 for one batch of rollouts (no approver in them: it is only logged at evaluation)."""
    episodes, rows = batch.episodes, batch.rows
    # 2. Shaped return per episode: observed return - beta * (log pi/pi_ref summed over all its action tokens).
    returns = torch.tensor([e.observed_return for e in episodes])  # (E,)
    kl_episode = torch.zeros(len(episodes)).index_add_(0, rows.episode, batch.executed_kl(cfg.kl_coef))  # (E,)
    # 3. RLOO advantage per episode, 4. shared by every action of the episode.
    adv_episode = outcome_advantages(returns, kl_episode, cfg.group_size, cfg.kl_coef)  # (E,)
    true = sum(e.true_return for e in episodes) / len(episodes)
    return Credit(adv_episode[rows.episode], log={"obs": float(returns.mean()), "true": true})


OUTCOME = AgentRegime("outcome", OutcomeConfig, outcome_credit)
