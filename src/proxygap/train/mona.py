"""MONA: myopic optimization with non-myopic approval (Farquhar et al. 2025), CleanRL style.

Ordinary RL maximizes the multi-step return, so an action is paid for the rewards it sets up
later (write softball tests now, collect passing tests later). MONA optimizes only each step's
own reward plus an overseer's approval of the action -- the overseer's foresighted judgement
of what the action is worth -- and lets no credit flow back from later steps (gamma = 0):

    r_it = r_obs(i, t) + approval_coef * approval(s_it, a_it) - beta * log(pi / pi_ref)(a_it)

What MONA does not prevent (and the experiment reports, not hides): a hack that pays within a
single step (its own observed reward), and a multi-step hack whose setting-up action the
overseer approves because it does not foresee the consequence.

Each step: roll out groups (approval computed before execution), per-action reward as above,
the per-step leave-one-out baseline of ``process`` (other episodes of the group, same step
index; 0 where none), ``loss = -(1/E) sum_{i,t} A_it log pi(a_it | s_it)``. The loop itself
(rollouts, the REINFORCE step, evaluations) is ``agent_common.train_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.config import knob
from proxygap.train.agent_common import AgentRegime, AgentRLConfig, Batch, Credit, per_step_loo_advantages


@dataclass
class MonaConfig(AgentRLConfig):
    approval_coef: float = knob(1.0, "weight of the overseer's approval against the step's own observed reward", lo=0)


def mona_advantages(observed: torch.Tensor, approval: torch.Tensor, kl: torch.Tensor, group: torch.Tensor,
                    step: torch.Tensor, approval_coef: float, kl_coef: float) -> torch.Tensor:
    """(N,) per-action observed rewards, approvals and KLs -> (N,) advantages of the myopic reward
    ``observed + approval_coef * approval - kl_coef * kl`` with the per-step leave-one-out baseline.
    Nothing from a later step of the episode enters an action's advantage."""
    return per_step_loo_advantages(observed + approval_coef * approval - kl_coef * kl, group, step)


def mona_credit(batch: Batch, cfg: MonaConfig) -> Credit:
    """The myopic reward and its advantages for one batch of rollouts the approver scored before execution."""
    steps = [s for e in batch.episodes for s in e.steps]
    # Myopic reward of each action: its own observed reward + approval (no later rewards), minus KL.
    observed = torch.tensor([s.observed_reward for s in steps], dtype=torch.float32)  # (N,)
    approval = torch.tensor([s.approval for s in steps], dtype=torch.float32)  # (N,)
    kl = batch.executed_kl(cfg.kl_coef)  # (N,)
    # Per-step leave-one-out baseline within the group.
    adv = mona_advantages(observed, approval, kl, batch.rows.group, batch.rows.step, cfg.approval_coef, cfg.kl_coef)
    return Credit(adv, log={"obs": float(observed.mean()), "approval": float(approval.mean())})


MONA = AgentRegime("mona", MonaConfig, mona_credit, score_rollouts=True, needs_approver=True)
