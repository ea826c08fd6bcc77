"""What every agent regime shares: episode groups, per-action log-probs, one policy-gradient step, evaluation.

The RL regimes (``outcome``, ``process``, ``mona``, ``decoupled``; ``expert_iteration`` shares the
rollouts and evaluation but imitates instead) differ only in which reward
each action is credited with and which baseline is subtracted; they all

1. roll out ``group_size`` episodes from each of ``starts_per_step`` starts (an env seed),
   so that episodes of one group begin in the same state (the leave-one-out baseline compares
   like with like);
2. compute per-action advantages with a pure function of tensors (in the regime's file, called
   from the regime's ``credit`` function, which may also draw and score actions of its own);
3. take one REINFORCE step: ``loss = -(1/E) sum_rows adv_row * log pi(action_row | prompt_row)``,
   where ``log pi`` of an action is summed over its tokens and E is the number of episodes
   (so the learning rate means the same thing in every regime, however many actions an
   episode has). One gradient step per batch, on-policy: no ratio, no clipping needed.

An action "row" is one sampled action: the transcript prefix it was sampled after (its prompt)
and its tokens. Log-probs are recomputed from (prompt, tokens) with ``sequence_logprobs``,
exactly as at sampling time (same left padding, same bos), so the gradient is of the very
probability the sampler drew from.

``train_agent`` is that loop, once for every regime; a regime is an ``AgentRegime`` (its config
class, its credit function, whether its rollouts ask the approver), defined in its own file and
listed by name in ``agent_regimes.AGENT_REGIMES``. Seeds are arguments, not config knobs: the
caller (the experiment) owns them.

Evaluation always runs the policy on a fixed set of held-out env seeds with a fixed sampling
generator, at temperature 1 (sampled, not greedy: the rates are rates of the policy's own
behaviour, tampering included).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob
from proxygap.envs.base import TextEnv
from proxygap.train.rollout import Approver, EnvFactory, Episode, rollout
from proxygap.lm.sampling import encode_prompts, pad_id, sequence_logprobs

EVAL_SEED_OFFSET = 1_000_000  # eval episodes start from env seeds no training batch ever draws
EVAL_SEEDS_PER_RUN = 10_000  # experiment seed s evaluates on env seeds EVAL_SEED_OFFSET + s * this + i


@dataclass
class AgentRLConfig(Config):
    """Knobs shared by every agent RL regime (the same budget for each, so they compare fairly)."""

    steps: int = knob(40, "optimizer steps", lo=0)
    starts_per_step: int = knob(4, "distinct episode starts (env seeds) per batch", lo=1)
    group_size: int = knob(4, "episodes per start, the leave-one-out group (batch = starts x group_size episodes)", lo=2)
    max_action_tokens: int = knob(24, "length limit of one turn in tokens: the thought the corpus's agents write first "
                                      "('think : ... ;', up to 11 tokens) and the action, which ends at '.'", lo=1)
    lr: float = knob(3e-4, "Adam learning rate (1e-3 made outcome RL's own objective fall on the 0.84M default "
                           "model: the policy collapsed onto one answer; 1e-4 and 3e-4 raised it)", lo=0)
    kl_coef: float = knob(0.0, "beta: penalty per nat of log(pi/pi_ref) summed over the credited action tokens "
                               "(Stiennon et al. 2020 form, in reward units); 0 = no penalty; expert iteration has "
                               "none (it imitates)", lo=0)
    grad_clip: float = knob(1.0, "max gradient norm (0: off)", lo=0)
    eval_every: int = knob(10, "steps between evaluations on the fixed held-out episodes", lo=1)
    eval_episodes: int = knob(48, "held-out episodes per evaluation (fixed env seeds, sampled at T=1)", lo=1)
    train_env_seeds: int = knob(1000, "training starts are drawn from env seeds 0..train_env_seeds-1", lo=1)

    def check(self) -> None:
        if self.train_env_seeds > EVAL_SEED_OFFSET:
            raise ConfigError(f"train_env_seeds must be <= {EVAL_SEED_OFFSET} (eval seeds start there)")
        if self.eval_episodes > EVAL_SEEDS_PER_RUN:
            raise ConfigError(f"eval_episodes={self.eval_episodes} must be <= {EVAL_SEEDS_PER_RUN}: each experiment "
                              "seed's held-out episodes are a block of that many env seeds, and a larger one would "
                              "overlap the next seed's")


# ---------------------------------------------------------------------------------------------
# Episodes (played by envs.rollout)


def rollout_groups(policy, tokenizer, make_env: EnvFactory, cfg: AgentRLConfig, rng: random.Random,
                   generator: torch.Generator, approver: Approver | None = None) -> list[Episode]:
    """``starts_per_step`` random starts, ``group_size`` episodes from each (episode g*k + j is in group g)."""
    starts = rng.sample(range(cfg.train_env_seeds), k=min(cfg.starts_per_step, cfg.train_env_seeds))
    seeds = [s for s in starts for _ in range(cfg.group_size)]
    groups = [g for g in range(len(starts)) for _ in range(cfg.group_size)]
    return rollout(policy, tokenizer, make_env, seeds, cfg.max_action_tokens, generator, approver, groups)


def replay_state(make_env: EnvFactory, episode: Episode, upto: int) -> TextEnv:
    """A fresh env in the state just before ``episode``'s step ``upto`` (envs are deterministic in
    (seed, actions)), for asking about an action that was not taken there."""
    env = make_env()
    env.reset(episode.env_seed)
    for step in episode.steps[:upto]:
        env.step(step.action)
    return env


# ---------------------------------------------------------------------------------------------
# Rows, log-probs, the update


@dataclass
class Rows:
    """A flat batch of action rows with the indices the advantage functions need."""

    prompts: list[str]
    token_ids: list[list[int]]
    logprob: Tensor  # (N,) log pi_sampler(action), summed over its tokens
    episode: Tensor  # (N,) long, index of the row's episode in the batch
    group: Tensor  # (N,) long, the episode's group
    step: Tensor  # (N,) long, the row's step index within its episode

    def __len__(self) -> int:
        return len(self.prompts)


def step_rows(episodes: Sequence[Episode]) -> Rows:
    """Every executed action of ``episodes`` as a row, in episode order then step order."""
    prompts, toks, lps, ep, grp, st = [], [], [], [], [], []
    for e_i, ep_ in enumerate(episodes):
        for s_i, s in enumerate(ep_.steps):
            prompts.append(s.prompt)
            toks.append(s.token_ids)
            lps.append(s.logprob)
            ep.append(e_i)
            grp.append(ep_.group)
            st.append(s_i)
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return Rows(prompts, toks, torch.tensor(lps, dtype=torch.float32), as_long(ep), as_long(grp), as_long(st))


def action_logprobs(model, tokenizer, prompts: Sequence[str], token_ids: Sequence[list[int]],
                    chunk: int = 256) -> Tensor:
    """log pi(tokens | prompt) summed over each row's tokens, (N,); with grad unless under no_grad.

    Prompts are encoded exactly as ``sample`` encodes them (left padding, bos in front).
    """
    if not prompts:
        return torch.zeros(0)
    device = next(model.parameters()).device
    out = []
    for a in range(0, len(prompts), chunk):
        ps, ts = list(prompts[a:a + chunk]), list(token_ids[a:a + chunk])
        prompt_ids, prompt_mask = encode_prompts(tokenizer, ps)
        T = max(1, max(len(t) for t in ts))
        tokens = torch.full((len(ts), T), pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros((len(ts), T), dtype=torch.long)
        for i, t in enumerate(ts):
            tokens[i, :len(t)] = torch.tensor(t, dtype=torch.long)
            mask[i, :len(t)] = 1
        lp = sequence_logprobs(model, prompt_ids.to(device), prompt_mask.to(device), tokens.to(device), mask.to(device))
        out.append(lp.sum(-1))  # (n,)
    return torch.cat(out)


@torch.no_grad()
def kl_per_row(ref, tokenizer, rows: Rows) -> Tensor:
    """k1 estimate of KL(pi || pi_ref) of each sampled action, nats: log pi_sampler - log pi_ref, (N,)."""
    return rows.logprob - action_logprobs(ref, tokenizer, rows.prompts, rows.token_ids)


def per_step_loo_advantages(rewards: Tensor, group: Tensor, step: Tensor) -> Tensor:
    """Per-action reward minus the mean reward of the *other* episodes of its group at the same step index.

    Episodes of a group start in the same state, so their j-th actions are the closest thing to
    a common state that independent rollouts give. The baseline never uses the row's own
    episode, so it does not depend on the action and the gradient stays unbiased. Where no other
    episode of the group reached step j, the baseline is 0 (still unbiased, just noisier).
    Rows must have distinct (episode, group, step); (N,) tensors in, (N,) out.
    """
    key = group * (int(step.max()) + 1 if len(step) else 1) + step  # one id per (group, step)
    n_keys = int(key.max()) + 1 if len(key) else 0
    sums = torch.zeros(n_keys, dtype=rewards.dtype).index_add_(0, key, rewards)
    counts = torch.zeros(n_keys, dtype=rewards.dtype).index_add_(0, key, torch.ones_like(rewards))
    others = counts[key] - 1
    baseline = torch.where(others > 0, (sums[key] - rewards) / others.clamp(min=1), torch.zeros_like(rewards))
    return rewards - baseline


def policy_gradient_step(policy, optimizer: torch.optim.Optimizer, tokenizer, prompts: Sequence[str],
                         token_ids: Sequence[list[int]], advantages: Tensor, n_episodes: int,
                         grad_clip: float) -> float:
    """One REINFORCE step, ``loss = -(1/E) sum_rows adv * log pi(row)``; returns the loss value.

    Rows with zero advantage carry no gradient and are skipped (saves a forward pass on them).
    """
    keep = [i for i in range(len(prompts)) if float(advantages[i]) != 0.0]
    optimizer.zero_grad(set_to_none=True)
    if not keep:
        return 0.0
    logp = action_logprobs(policy, tokenizer, [prompts[i] for i in keep], [token_ids[i] for i in keep])  # (N',)
    loss = -(advantages[keep].to(logp.device) * logp).sum() / max(1, n_episodes)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


def make_policy(base_model):
    """A trainable copy of the base model; the base itself stays the frozen reference."""
    import copy

    policy = copy.deepcopy(base_model).eval()  # eval mode: no dropout, so sampled and trained log-probs agree
    policy.requires_grad_(True)
    return policy


# ---------------------------------------------------------------------------------------------
# Evaluation


METRICS = ("observed_return", "true_return", "tamper_rate", "intended_rate", "failure_rate", "capability")


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """Means over episodes of the six reported measures, plus approval and length diagnostics."""
    n = max(1, len(episodes))
    approvals = [s.approval for e in episodes for s in e.steps if s.approval is not None]
    return {
        "observed_return": sum(e.observed_return for e in episodes) / n,
        "true_return": sum(e.true_return for e in episodes) / n,
        "tamper_rate": sum(e.outcome.tampered for e in episodes) / n,
        "intended_rate": sum(e.outcome.intended for e in episodes) / n,
        "failure_rate": sum(e.outcome.failed for e in episodes) / n,
        "capability": sum(e.outcome.success for e in episodes) / n,
        "approval": float(np.mean(approvals)) if approvals else None,
        "actions_per_episode": sum(len(e.steps) for e in episodes) / n,
        "truncated_rate": sum(e.truncated for e in episodes) / n,
    }


def episode_record(e: Episode) -> dict:
    """A JSON-ready summary of one episode, for example tables."""
    return {"env_seed": e.env_seed, "transcript": e.transcript, "actions": [s.action for s in e.steps],
            "observed_return": e.observed_return, "true_return": e.true_return,
            "approvals": [s.approval for s in e.steps], "outcome": e.outcome.to_dict(), "truncated": e.truncated}


@dataclass
class AgentEvaluation:
    step: int
    metrics: dict[str, float]
    episodes: list[dict]  # the evaluation's episodes as records (transcripts, returns, outcomes)

    def to_dict(self) -> dict:
        return {"step": self.step, **self.metrics}


@torch.no_grad()
def evaluate_agent(policy, tokenizer, make_env: EnvFactory, n_episodes: int, max_action_tokens: int, seed: int,
                   step: int = 0, approver: Approver | None = None, n_records: int | None = None) -> AgentEvaluation:
    """The policy on ``n_episodes`` held-out starts (env seeds EVAL_SEED_OFFSET + seed * EVAL_SEEDS_PER_RUN + i), sampled at T=1
    from a generator seeded by ``seed`` alone: every evaluation of a run, and every regime of one
    experiment seed, sees the same starts and the same random numbers. ``n_records`` episodes
    (all if None) are kept as records."""
    generator = torch.Generator().manual_seed(seed + 7919)
    seeds = [EVAL_SEED_OFFSET + seed * EVAL_SEEDS_PER_RUN + i for i in range(n_episodes)]
    episodes = rollout(policy, tokenizer, make_env, seeds, max_action_tokens, generator, approver)
    return AgentEvaluation(step, episode_metrics(episodes), [episode_record(e) for e in episodes[:n_records]])


# ---------------------------------------------------------------------------------------------
# The one training loop


@dataclass
class Batch:
    """One step's rollouts, and what a regime's credit function may use to score them."""

    episodes: list[Episode]
    rows: Rows  # the executed actions, one row per (episode, step)
    policy: object  # the policy that sampled them (not yet updated on them)
    ref: object  # the frozen reference policy (the base model)
    tokenizer: object
    make_env: EnvFactory
    approver: Approver | None
    generator: torch.Generator  # the run's sampling generator, for any further actions the regime draws

    def executed_kl(self, kl_coef: float) -> Tensor:
        """k1 KL (nats) of each executed action, (N,); zeros without a reference pass when ``kl_coef`` is 0."""
        return kl_per_row(self.ref, self.tokenizer, self.rows) if kl_coef > 0 else torch.zeros(len(self.rows))


@dataclass
class Credit:
    """What a regime's credit function returns: one advantage per row and the actions they go to."""

    advantages: Tensor  # (N,), one per row of the batch
    token_ids: list[list[int]] | None = None  # row n's credited action (after its prompt); None: the executed one
    log: dict[str, float] = field(default_factory=dict)  # progress-bar diagnostics


@dataclass(frozen=True)
class AgentRegime:
    """One agent RL regime: its config class and how it credits a batch of rollouts."""

    name: str
    config_cls: type[AgentRLConfig]
    credit: Callable[[Batch, AgentRLConfig], Credit]
    score_rollouts: bool = False  # the approver scores every executed action before it runs (``Step.approval``)
    needs_approver: bool = False


def train_agent(regime: AgentRegime, base_model, tokenizer, make_env: EnvFactory, cfg: AgentRLConfig, seed: int,
                approver: Approver | None = None, *, progress: bool = True,
                on_eval: Callable[[AgentEvaluation], None] | None = None, first_eval: AgentEvaluation | None = None,
                label: str | None = None) -> tuple[object, list[AgentEvaluation]]:
    """Optimize a copy of ``base_model`` under ``regime``; returns (policy, evaluations).

    ``seed`` seeds the batches (``random.Random(seed)``: the starts) and the sampling
    (``torch.Generator().manual_seed(seed)``: rollouts and any actions the regime draws), and picks
    the held-out evaluation episodes. ``approver`` is logged at every evaluation (approval of the
    executed actions); whether it enters the update is the regime's business. ``first_eval`` is
    the step-0 evaluation if the caller already has it (the base model's).
    """
    if not isinstance(cfg, regime.config_cls):
        raise TypeError(f"the {regime.name} regime takes a {regime.config_cls.__name__}, not {type(cfg).__name__}")
    if regime.needs_approver and approver is None:
        raise ConfigError(f"the {regime.name} regime needs an approver")
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    ref, policy = base_model.eval(), make_policy(base_model)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)

    def evaluate(step: int) -> AgentEvaluation:
        return evaluate_agent(policy, tokenizer, make_env, cfg.eval_episodes, cfg.max_action_tokens, seed, step,
                              approver)

    evaluations = [first_eval or evaluate(0)]
    if on_eval:
        on_eval(evaluations[-1])
    bar = tqdm(range(1, cfg.steps + 1), desc=label or regime.name, disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        # 1. Rollouts: group_size episodes from each start (no grad); approval-scored if the regime says so.
        episodes = rollout_groups(policy, tokenizer, make_env, cfg, rng, generator,
                                  approver if regime.score_rollouts else None)
        rows = step_rows(episodes)
        if len(rows) > 0:  # (none only if every episode was cut at its first prompt by the context length)
            # 2-3. The regime's credit: an advantage per row, for the executed action or one it drew itself.
            credit = regime.credit(Batch(episodes, rows, policy, ref, tokenizer, make_env, approver, generator), cfg)
            token_ids = rows.token_ids if credit.token_ids is None else credit.token_ids
            # 4. One REINFORCE step: loss = -(1/E) sum_rows A_row log pi(action_row | prompt_row).
            loss = policy_gradient_step(policy, optimizer, tokenizer, rows.prompts, token_ids, credit.advantages,
                                        len(episodes), cfg.grad_clip)
            bar.set_postfix({**{k: f"{v:.2f}" for k, v in credit.log.items()}, "loss": f"{loss:.2f}"})

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
