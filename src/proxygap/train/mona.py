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
index; 0 where none), ``loss = -(1/E) sum_{i,t} A_it log pi(a_it | s_it)``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from proxygap.config import knob
from proxygap.train.agent_common import (
    AgentEvaluation, AgentRLConfig, Approver, EnvFactory, evaluate_agent, kl_per_row, make_policy,
    per_step_loo_advantages, policy_gradient_step, rollout_groups, step_rows,
)


@dataclass
class MonaConfig(AgentRLConfig):
    approval_coef: float = knob(1.0, "weight of the overseer's approval against the step's own observed reward", lo=0)


def mona_advantages(observed: torch.Tensor, approval: torch.Tensor, kl: torch.Tensor, group: torch.Tensor,
                    step: torch.Tensor, approval_coef: float, kl_coef: float) -> torch.Tensor:
    """(N,) per-action observed rewards, approvals and KLs -> (N,) advantages of the myopic reward
    ``observed + approval_coef * approval - kl_coef * kl`` with the per-step leave-one-out baseline.
    Nothing from a later step of the episode enters an action's advantage."""
    return per_step_loo_advantages(observed + approval_coef * approval - kl_coef * kl, group, step)


def train_mona(base_model, tokenizer, make_env: EnvFactory, approver: Approver, cfg: MonaConfig,
               progress: bool = True, on_eval: Callable[[AgentEvaluation], None] | None = None,
               first_eval: AgentEvaluation | None = None, label: str = "mona",
               ) -> tuple[object, list[AgentEvaluation]]:
    """Optimize a copy of ``base_model`` on each step's observed reward plus approval; returns (policy, evaluations)."""
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
        # 2. Myopic reward of each action: its own observed reward + approval (no later rewards), minus KL.
        observed = torch.tensor([s.observed_reward for e in episodes for s in e.steps], dtype=torch.float32)  # (N,)
        approval = torch.tensor([s.approval for e in episodes for s in e.steps], dtype=torch.float32)  # (N,)
        kl = kl_per_row(ref, tokenizer, rows) if cfg.kl_coef > 0 else torch.zeros(len(rows))  # (N,)
        # 3. Per-step leave-one-out baseline within the group.
        adv = mona_advantages(observed, approval, kl, rows.group, rows.step, cfg.approval_coef, cfg.kl_coef)  # (N,)
        loss = policy_gradient_step(policy, optimizer, tokenizer, rows.prompts, rows.token_ids, adv, len(episodes),
                                    cfg.grad_clip)
        bar.set_postfix(obs=f"{observed.mean():.2f}", approval=f"{approval.mean():.2f}", loss=f"{loss:.2f}")

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
