"""Decoupled approval (Uesato et al. 2020): feedback is asked about an action that was not executed.

At every state s the agent reaches, two actions are drawn independently from the policy:
the executed action a ~ pi(.|s), which moves the episode on, and the queried action
a' ~ pi(.|s), which the overseer scores (from ``env.preview(a')`` in state s, before anything
is executed) and which alone receives the gradient:

    update = sum_{i,t} (approval(s_it, a'_it) - b_it - beta * log(pi / pi_ref)(a'_it)) * grad log pi(a'_it | s_it)

The executed action never receives gradient from feedback about itself, so an action that
corrupts the feedback channel gains nothing from having done so: the feedback it could corrupt
is about a different, independently sampled action. As in ``process`` the update is myopic
(no credit from later steps) and b_it is the leave-one-out mean of the queried approvals of the
group's other episodes at the same step index (0 where none reached it).

Asking about a' needs the env in state s after the episode has moved on: envs are
deterministic in (seed, actions), so state s is rebuilt by replaying the episode's executed
actions before step t (``agent_common.replay_state``). All queried actions of a batch are sampled in
one call, from the same policy that drew the executed ones (no update in between).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from proxygap.envs.base import parse_action
from proxygap.train.rollout import stop_token_id
from proxygap.lm.sampling import sample
from proxygap.train.agent_common import (
    AgentEvaluation, AgentRLConfig, Approver, EnvFactory, action_logprobs, evaluate_agent, make_policy,
    per_step_loo_advantages, policy_gradient_step, replay_state, rollout_groups, step_rows,
)


@dataclass
class DecoupledConfig(AgentRLConfig):
    """Decoupled approval: the shared agent knobs; the gradient goes to independently sampled, queried actions."""


def decoupled_advantages(queried_approval: torch.Tensor, queried_kl: torch.Tensor, group: torch.Tensor,
                         step: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """(N,) approvals and KLs of the *queried* actions, one per visited state -> (N,) their advantages
    ``approval - kl_coef * kl`` minus the per-step leave-one-out baseline. The executed actions
    get no advantage at all: nothing about them (their approval included) is an input."""
    return per_step_loo_advantages(queried_approval - kl_coef * queried_kl, group, step)


def _decoupled_update(policy, ref, optimizer, tokenizer, make_env: EnvFactory, approver: Approver, episodes, rows,
                      cfg: DecoupledConfig, generator: torch.Generator, stop: int) -> tuple[float, float]:
    """Steps 2-4 of the loop for one batch of rollouts; returns (loss, mean queried approval)."""
    # 2. One queried action per visited state, sampled independently of the executed one.
    q = sample(policy, tokenizer, rows.prompts, cfg.max_action_tokens, generator=generator, stop_token_ids=(stop,))
    q_tokens = [q.tokens[n][q.mask[n].bool()].tolist() for n in range(len(q))]
    q_logprob = q.logprobs.sum(-1)  # (N,) log pi_sampler(a')
    # 3. The overseer scores each queried action in its state, rebuilt by replaying the executed actions.
    approval = torch.tensor([float(approver(replay_state(make_env, episodes[int(e)], int(t)), parse_action(text)))
                             for e, t, text in zip(rows.episode, rows.step, q.texts)], dtype=torch.float32)  # (N,)
    if cfg.kl_coef > 0:
        with torch.no_grad():
            kl = q_logprob - action_logprobs(ref, tokenizer, rows.prompts, q_tokens)  # (N,) k1, nats
    else:
        kl = torch.zeros(len(rows))
    # 4. Advantages for the queried actions only; the update is grad log pi(a'|s), never grad log pi(a|s).
    adv = decoupled_advantages(approval, kl, rows.group, rows.step, cfg.kl_coef)  # (N,)
    loss = policy_gradient_step(policy, optimizer, tokenizer, rows.prompts, q_tokens, adv, len(episodes), cfg.grad_clip)
    return loss, float(approval.mean())


def train_decoupled(base_model, tokenizer, make_env: EnvFactory, approver: Approver, cfg: DecoupledConfig,
                    progress: bool = True, on_eval: Callable[[AgentEvaluation], None] | None = None,
                    first_eval: AgentEvaluation | None = None, label: str = "decoupled",
                    ) -> tuple[object, list[AgentEvaluation]]:
    """Optimize a copy of ``base_model`` on approvals of queried actions; returns (policy, evaluations)."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    ref, policy = base_model.eval(), make_policy(base_model)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    stop = stop_token_id(tokenizer)

    def evaluate(step: int) -> AgentEvaluation:
        return evaluate_agent(policy, tokenizer, make_env, cfg.eval_episodes, cfg.max_action_tokens, cfg.seed, step,
                              approver)

    evaluations = [first_eval or evaluate(0)]
    if on_eval:
        on_eval(evaluations[-1])
    bar = tqdm(range(1, cfg.steps + 1), desc=label, disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        # 1. Rollouts with the executed actions (their feedback is never asked for).
        episodes = rollout_groups(policy, tokenizer, make_env, cfg, rng, generator)
        rows = step_rows(episodes)  # the visited states, one row per (episode, step)
        if len(rows) > 0:  # (none only if every episode was cut at its first prompt by the context length)
            loss, mean_approval = _decoupled_update(policy, ref, optimizer, tokenizer, make_env, approver, episodes, rows,
                                                    cfg, generator, stop)
            bar.set_postfix(approval=f"{mean_approval:.2f}", loss=f"{loss:.2f}")

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
