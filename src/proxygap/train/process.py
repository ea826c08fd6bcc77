"""Process-based RL: each action is rewarded by an overseer's approval of it, before it is executed.

The overseer sees the proposed action in the current state (``env.preview``) through its own
foresight model and scores it; the action's consequences, and every reward the environment
reports, never reach the update. The claim under test: this has roughly the risk profile of
imitation, because nothing pays the agent for what an action does to the reward channel --
unless the overseer approves an action whose hidden consequence it does not foresee (the
"blind" overseer variant in the tampering experiment).

Myopic: an action's reward is its own approval only (no credit from later steps, gamma = 0).

Each step:
1. roll out ``group_size`` episodes from each of ``starts_per_step`` starts, scoring every
   proposed action with the overseer before the env executes it;
2. per-action reward ``r_it = approval(s_it, a_it) - beta * log(pi / pi_ref)(a_it)``;
3. baseline: the mean reward of the *other* episodes of the group at the same step index
   (``per_step_loo_advantages``: the group shares its start, so step j of its episodes is the
   closest thing to a common state; 0 where no other episode of the group reached step j);
4. ``loss = -(1/E) sum_{i,t} A_it log pi(a_it | s_it)``.

The loop itself (rollouts, the REINFORCE step, evaluations) is ``agent_common.train_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.train.agent_common import AgentRegime, AgentRLConfig, Batch, Credit, per_step_loo_advantages


@dataclass
class ProcessConfig(AgentRLConfig):
    """Process-based RL: the shared agent knobs; the reward is the approval of each action, before execution."""


def process_advantages(approval: torch.Tensor, kl: torch.Tensor, group: torch.Tensor, step: torch.Tensor,
                       kl_coef: float) -> torch.Tensor:
    """(N,) per-action approvals and KLs (nats) -> (N,) advantages: ``approval - kl_coef * kl`` minus
    the leave-one-out mean of the group's other episodes at the same step index."""
    return per_step_loo_advantages(approval - kl_coef * kl, group, step)


def process_credit(batch: Batch, cfg: ProcessConfig) -> Credit:
    """Steps 2-3 for one batch of rollouts whose every action the approver scored before it was executed."""
    # 2. Per-action reward: approval only (observed and true rewards are not used), minus the KL penalty.
    approval = torch.tensor([s.approval for e in batch.episodes for s in e.steps], dtype=torch.float32)  # (N,)
    kl = batch.executed_kl(cfg.kl_coef)  # (N,)
    # 3. Per-step leave-one-out baseline within the group.
    adv = process_advantages(approval, kl, batch.rows.group, batch.rows.step, cfg.kl_coef)  # (N,)
    return Credit(adv, log={"approval": float(approval.mean())})


PROCESS = AgentRegime("process", ProcessConfig, process_credit, score_rollouts=True, needs_approver=True)
