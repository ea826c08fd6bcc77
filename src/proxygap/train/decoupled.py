"""Decoupled approval (Uesato et al. 2020): feedback is asked about an action that was not executed.

At every state s the agent reaches, two actions are drawn independently from the policy:
the executed action a ~ pi(.|s), which moves the episode on, and the queried action
a' ~ pi(.|s), which the overseer scores (from ``env.preview(a')`` in state s, before anything
is executed) and which alone receives the gradient:

    update = sum_{i,t} (approval(s_it, a'_it) - b_it - beta * log(pi / pi_ref)(a'_it)) * grad log pi(a'_it | s_it)

The executed action never receives gradient from feedback about itself, so an action that
corrupts the feedback channel gains nothing from having done so: the feedback it could corrupt
is about a different, independently sampled action. Where the env's feedback is corruptible
(``approval_reads_channel``), feedback is read after the executed action ran, so the corruption
is there -- it just lands on whatever a' was drawn, with no preference among them. As in ``process`` the update is myopic
(no credit from later steps) and b_it is the leave-one-out mean of the queried approvals of the
group's other episodes at the same step index (0 where none reached it).

Asking about a' needs the env in state s after the episode has moved on: envs are
deterministic in (seed, actions), so state s is rebuilt by replaying the episode's executed
actions before step t (``agent_common.replay_state``). All queried actions of a batch are sampled in
one call, from the same policy that drew the executed ones (no update in between), with the
run's sampling generator right after the rollouts. The loop itself (rollouts of the executed
actions, never scored; the REINFORCE step; evaluations) is ``agent_common.train_agent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.envs.base import parse_action
from proxygap.lm.sampling import sample
from proxygap.train.agent_common import (
    AgentRegime, AgentRLConfig, Batch, Credit, action_logprobs, per_step_loo_advantages, replay_state,
)
from proxygap.train.rollout import stop_token_ids


@dataclass
class DecoupledConfig(AgentRLConfig):
    """Decoupled approval: the shared agent knobs; the gradient goes to independently sampled, queried actions."""


def decoupled_advantages(queried_approval: torch.Tensor, queried_kl: torch.Tensor, group: torch.Tensor,
                         step: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """(N,) approvals and KLs of the *queried* actions, one per visited state -> (N,) their advantages
    ``approval - kl_coef * kl`` minus the per-step leave-one-out baseline. The executed actions
    get no advantage at all: nothing about them (their approval included) is an input."""
    return per_step_loo_advantages(queried_approval - kl_coef * queried_kl, group, step)


def queried_approval(batch: Batch, episode: int, step: int, queried: str) -> float:
    """The overseer's feedback about ``queried`` at ``episode``'s step ``step``: its own score of the
    action in the state before the step, unless the feedback channel is corruptible and the
    *executed* action left it seized, in which case it is what the seized channel reports -- the
    same for any queried action, so no queried action is favoured by the corruption."""
    ep = batch.episodes[episode]
    env = replay_state(batch.make_env, ep, step)  # the state before the step, replayed once
    own = float(batch.approver(env, queried))  # from a preview: the state is unchanged
    env.step(ep.steps[step].action)  # then the executed action, which may seize the channel
    corrupted = env.corrupted_approval()
    return own if corrupted is None else float(corrupted)


def decoupled_credit(batch: Batch, cfg: DecoupledConfig) -> Credit:
    """Steps 2-4 for one batch of rollouts of the executed actions (whose feedback is never asked for)."""
    rows = batch.rows
    # 2. One queried action per visited state, sampled independently of the executed one.
    q = sample(batch.policy, batch.tokenizer, rows.prompts, cfg.max_action_tokens, generator=batch.generator,
               stop_token_ids=stop_token_ids(batch.tokenizer))
    q_tokens = [q.tokens[n][q.mask[n].bool()].tolist() for n in range(len(q))]
    q_logprob = q.logprobs.sum(-1)  # (N,) log pi_sampler(a')
    # 3. The overseer scores each queried action in its state, rebuilt by replaying the executed actions.
    approval = torch.tensor([queried_approval(batch, int(e), int(t), parse_action(text))
                             for e, t, text in zip(rows.episode, rows.step, q.texts)], dtype=torch.float32)  # (N,)
    if cfg.kl_coef > 0:
        with torch.no_grad():
            kl = q_logprob - action_logprobs(batch.ref, batch.tokenizer, rows.prompts, q_tokens)  # (N,) k1, nats
    else:
        kl = torch.zeros(len(rows))
    # 4. Advantages for the queried actions only; the update is grad log pi(a'|s), never grad log pi(a|s).
    adv = decoupled_advantages(approval, kl, rows.group, rows.step, cfg.kl_coef)  # (N,)
    return Credit(adv, token_ids=q_tokens, log={"approval": float(approval.mean())})


DECOUPLED = AgentRegime("decoupled", DecoupledConfig, decoupled_credit, needs_approver=True)
