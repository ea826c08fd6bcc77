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
    per_step_loo_advantages, policy_gradient_step, rollout_groups, step_rows,
)


@dataclass
class ProcessConfig(AgentRLConfig):
    """Process-based RL: the shared agent knobs; the reward is the approval of each action, before execution."""


def process_advantages(approval: torch.Tensor, kl: torch.Tensor, group: torch.Tensor, step: torch.Tensor,
                       kl_coef: float) -> torch.Tensor:
    """(N,) per-action approvals and KLs (nats) -> (N,) advantages: ``approval - kl_coef * kl`` minus
    the leave-one-out mean of the group's other episodes at the same step index."""
    return per_step_loo_advantages(approval - kl_coef * kl, group, step)


def train_process(base_model, tokenizer, make_env: EnvFactory, approver: Approver, cfg: ProcessConfig,
                  progress: bool = True, on_eval: Callable[[AgentEvaluation], None] | None = None,
                  first_eval: AgentEvaluation | None = None, label: str = "process",
                  ) -> tuple[object, list[AgentEvaluation]]:
    """Optimize a copy of ``base_model`` on the approver's per-action scores; returns (policy, evaluations)."""
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
        # 1. Rollouts; every proposed action is scored before it is executed.
        episodes = rollout_groups(policy, tokenizer, make_env, cfg, rng, generator, approver)
        rows = step_rows(episodes)
        # 2. Per-action reward: approval only (observed and true rewards are not used), minus the KL penalty.
        approval = torch.tensor([s.approval for e in episodes for s in e.steps], dtype=torch.float32)  # (N,)
        kl = kl_per_row(ref, tokenizer, rows) if cfg.kl_coef > 0 else torch.zeros(len(rows))  # (N,)
        # 3. Per-step leave-one-out baseline within the group.
        adv = process_advantages(approval, kl, rows.group, rows.step, cfg.kl_coef)  # (N,)
        loss = policy_gradient_step(policy, optimizer, tokenizer, rows.prompts, rows.token_ids, adv, len(episodes),
                                    cfg.grad_clip)
        bar.set_postfix(approval=f"{approval.mean():.2f}", loss=f"{loss:.2f}")

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
