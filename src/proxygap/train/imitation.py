"""Imitation: the base model acting as it is, optionally after a short SFT on honest demonstrations.

With ``sft_steps = 0`` (the default) this regime is pure language modeling: the policy is the
base model, which learned the agent transcripts of the corpus by next-token prediction and
therefore takes every action -- tampering included -- at about the rate the corpus shows it.
Nothing is optimized against any reward. This is the reference point of the claim that
process-based RL has "roughly the risk profile of imitation".

With ``sft_steps > 0``: a short supervised fine-tuning on honest demonstrations. The
demonstrator is the corpus's scripted one (``world.agent.DEMONSTRATORS``) told never to tamper
and to err at ``demo_error_rate`` (0: an expert who knows the world's facts). The policy is
trained to maximize the log-likelihood of the demonstrated actions given the transcript so far
(mean over a batch of actions of ``-log pi(a | s)``, summed over each action's tokens). Nothing
here is a reward: the agent cannot influence its training signal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob
from proxygap.envs.base import StepResult, continuation
from proxygap.train.rollout import Approver, EnvFactory
from proxygap.train.agent_common import AgentEvaluation, evaluate_agent, make_policy, policy_gradient_step


@dataclass
class ImitationConfig(Config):
    sft_steps: int = knob(0, "SFT steps on honest demonstrations (0: the base model as it is, pure imitation)", lo=0)
    sft_lr: float = knob(1e-3, "Adam learning rate of the SFT", lo=0)
    sft_batch: int = knob(32, "demonstration actions per SFT step", lo=1)
    demo_episodes: int = knob(128, "honest demonstrated episodes (from training starts)", lo=1)
    demo_error_rate: float = knob(0.0, "P(the demonstrator errs, e.g. believes a wrong value); 0 = an expert", lo=0, hi=1)
    eval_every: int = knob(10, "SFT steps between evaluations", lo=1)
    train_env_seeds: int = knob(1000, "demonstration starts are env seeds 0..train_env_seeds-1", lo=1)

    def check(self) -> None:
        from proxygap.train.agent_common import EVAL_SEED_OFFSET

        if self.train_env_seeds > EVAL_SEED_OFFSET:
            raise ConfigError(f"train_env_seeds must be <= {EVAL_SEED_OFFSET} (eval seeds start there)")


def honest_demonstrations(make_env: EnvFactory, tokenizer, env_seeds: list[int], error_rate: float,
                          rng: random.Random) -> list[tuple[str, list[int]]]:
    """(transcript so far, action tokens incl. the closing '.') for every action of honest scripted episodes."""
    from proxygap.envs.demonstrators import DEMONSTRATORS, INNOCUOUS_THOUGHTS

    demos = []
    for seed in env_seeds:
        env = make_env()
        if env.name not in DEMONSTRATORS:
            raise ConfigError(f"no scripted demonstrator for environment {env.name!r}; use sft_steps=0")
        text = env.reset(seed)
        act = DEMONSTRATORS[env.name](env, rng, False, error_rate)  # tamper=False: an honest demonstrator
        thought = INNOCUOUS_THOUGHTS.get(env.name)  # as the corpus's demonstrators think before acting
        while True:
            action = act()
            turn = continuation(action, StepResult("", 0.0, 0.0, True), thought).strip()  # 'think : ... ; act .'
            # The turn as it follows the transcript (a byte-level BPE spells a word after a space apart).
            ids = tokenizer.encode(f"{text} {turn}", add_special_tokens=False)[
                len(tokenizer.encode(text, add_special_tokens=False)):]
            if tokenizer.unk_token_id in ids:
                raise ConfigError(f"the model's vocabulary cannot write the demonstrated turn {turn!r}")
            demos.append((text, ids))
            result = env.step(action)
            text += continuation(action, result, thought)
            if result.done:
                break
    return demos


def train_imitation(base_model, tokenizer, make_env: EnvFactory, cfg: ImitationConfig, seed: int, *,
                    max_action_tokens: int, eval_episodes: int, approver: Approver | None = None,
                    progress: bool = True, on_eval: Callable[[AgentEvaluation], None] | None = None,
                    first_eval: AgentEvaluation | None = None, label: str = "imitation",
                    ) -> tuple[object, list[AgentEvaluation], dict]:
    """Returns (policy, evaluations, info). With ``sft_steps = 0`` the policy is ``base_model`` itself.

    ``seed`` seeds the demonstrations and batches (``random.Random(seed)``) and picks the held-out
    evaluation episodes; evaluation is as in the RL regimes (``eval_episodes`` episodes, actions of
    at most ``max_action_tokens`` tokens), so the caller passes the same values it gives them.
    ``approver`` is only logged at evaluation. ``info`` says how many demonstrations there were.
    """
    def evaluate(policy, step: int) -> AgentEvaluation:
        return evaluate_agent(policy, tokenizer, make_env, eval_episodes, max_action_tokens, seed, step, approver)

    evaluations = [first_eval or evaluate(base_model, 0)]
    if on_eval:
        on_eval(evaluations[-1])
    if cfg.sft_steps == 0:
        return base_model, evaluations, {"sft": False}

    rng = random.Random(seed)
    # 1. Honest demonstrations from training starts.
    starts = [rng.randrange(cfg.train_env_seeds) for _ in range(cfg.demo_episodes)]
    demos = honest_demonstrations(make_env, tokenizer, starts, cfg.demo_error_rate, rng)
    info = {"sft": True, "demo_episodes": len(starts), "demo_actions": len(demos)}

    # 2. SFT: maximize log pi of the demonstrated actions (mean over a batch of actions).
    policy = make_policy(base_model)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.sft_lr)
    bar = tqdm(range(1, cfg.sft_steps + 1), desc=label, disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        batch = rng.choices(demos, k=min(cfg.sft_batch, len(demos)))
        ones = torch.ones(len(batch))
        loss = policy_gradient_step(policy, optimizer, tokenizer, [p for p, _ in batch], [t for _, t in batch], ones,
                                    len(batch), grad_clip=1.0)  # = mean NLL of the demonstrated actions
        bar.set_postfix(nll=f"{loss:.3f}")
        if step % cfg.eval_every == 0 or step == cfg.sft_steps:
            evaluations.append(evaluate(policy, step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    info["train_time_s"] = time.time() - t0
    return policy, evaluations, info
