"""Policy-gradient RLHF with a KL penalty, readable top to bottom (CleanRL style).

Each step: sample k completions for each of a batch of prompts from the policy; score them
with the proxy (the reward model); subtract the Stiennon et al. (2020) penalty
``beta * sum_t log(pi(y_t) / pi_ref(y_t))`` (nats per sequence); take RLOO advantages (each
sample's shaped reward minus the mean of the other k-1 samples of its prompt); update with
the PPO-clipped surrogate, summed over the completion's tokens. With ``ppo_epochs=1`` the
ratio is 1 and this is plain REINFORCE with a leave-one-out baseline.

``kl_in="loss"`` moves the penalty from the reward into the loss, as GRPO does (Shao et al.
2024; TRL's ``GRPOTrainer``, which averages over tokens where this sums): the advantages see the
proxy alone, and ``beta * k3`` per token, summed over the completion like the surrogate, is added
to the loss, its gradient taken through the policy's log-probabilities at the sampled tokens.
That gradient, (1 - pi_ref/pi) grad log pi per token, is in expectation the gradient of the
*forward* KL(pi_ref || pi) at each position (later tokens' dependence dropped), not of the
KL(pi || pi_ref) the reward form penalizes and every evaluation logs: the same beta is not the
same penalty, and pi* ∝ pi_ref exp(r / beta) is the optimum of the reward form only.

Every ``eval_every`` steps the policy is evaluated on a fixed prompt set, never on training
batches: KL(pi || pi_ref) in nats per sequence (k1 and k3), the proxy, rater and gold means
with standard errors, entropy and length. The rater and gold are logged, never optimized.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob
from proxygap.lm.kl import kl_k1, kl_k3
from proxygap.lm.sampling import Samples, sample, sequence_logprobs
from proxygap.measure.stats import mean_se

ScoreFn = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class RLTrainConfig(Config):
    """RL's optimization knobs; an experiment that sets its own evaluation schedule embeds this one."""

    SET_ELSEWHERE: ClassVar[dict[str, str]] = {"kl_coef": "beta is the experiment's own knob (kl_coefs, kl_coef or "
                                                          "rl_kl_coef: see `proxygap knobs EXPERIMENT`)"}

    steps: int = knob(120, "optimizer steps", lo=0)
    prompts_per_step: int = knob(16, "prompts per batch", lo=1)
    samples_per_prompt: int = knob(4, "completions per prompt (the RLOO group; batch = prompts x samples)", lo=2)
    max_new_tokens: int = knob(24, "length limit of a completion, in tokens", lo=1)
    lr: float = knob(1e-4, "Adam learning rate", lo=0)
    ppo_epochs: int = knob(1, "gradient steps per batch (1: on-policy REINFORCE; >1: the clip matters)", lo=1, hi=16)
    clip_eps: float = knob(0.2, "PPO ratio clipping", lo=0, hi=1)
    grad_clip: float = knob(1.0, "max gradient norm (0: off)", lo=0)
    kl_in: str = knob("reward", "where the KL penalty goes: reward (Stiennon: beta x log(pi/pi_ref) summed over the "
                                "sequence, subtracted before the advantages) or loss (GRPO: beta x k3 per token, summed "
                                "over the sequence, added to the loss; its gradient is forward KL's, per token)",
                      choices=("reward", "loss"))

    def check(self) -> None:
        if self.ppo_epochs > 1 and self.clip_eps == 0:
            raise ConfigError("ppo_epochs > 1 needs clip_eps > 0")


@dataclass
class RLConfig(RLTrainConfig):
    eval_every: int = knob(10, "steps between evaluations on the fixed prompt set", lo=1)
    eval_samples_per_prompt: int = knob(2, "samples per evaluation prompt", lo=1)


@dataclass
class Evaluation:
    """One evaluation point: the Goodhart ladder and the price paid for it in KL."""

    step: int
    kl: float  # nats per sequence, k1 (the sample mean of log pi/pi_ref summed over tokens)
    kl_k3: float
    kl_se: float
    rm: float
    rm_se: float
    rater: float
    rater_se: float
    gold: float
    gold_se: float
    entropy: float  # nats per sequence, the Monte Carlo estimate -E[log pi(y)]
    length: float  # tokens per completion
    texts: list[str]

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "texts"}


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) rewards grouped as (B/k, k) -> each minus the mean of the other k-1 of its group."""
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).view(-1)


def _kl_terms(samples: Samples, ref_logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask = samples.mask.bool()
    k1 = torch.where(mask, kl_k1(samples.logprobs, ref_logprobs), 0.0).sum(-1)
    k3 = torch.where(mask, kl_k3(samples.logprobs, ref_logprobs), 0.0).sum(-1)
    return k1, k3  # (B,) each, nats per sequence


@torch.no_grad()
def evaluate(policy, ref, tokenizer, prompts: list[str], proxy: ScoreFn, judges: dict[str, ScoreFn],
             cfg: RLConfig, step: int, generator: torch.Generator) -> Evaluation:
    repeated = [p for p in prompts for _ in range(cfg.eval_samples_per_prompt)]
    s = sample(policy, tokenizer, repeated, cfg.max_new_tokens, generator=generator)
    ref_lp = sequence_logprobs(ref, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    k1, k3 = _kl_terms(s, ref_lp)
    scores = {"rm": proxy(repeated, s.texts), **{n: f(repeated, s.texts) for n, f in judges.items()}}
    stats = {n: mean_se(np.asarray(v, dtype=float)) for n, v in scores.items()}
    kl, kl_se = mean_se(k1.cpu().numpy())
    return Evaluation(
        step=step, kl=kl, kl_k3=float(k3.mean()), kl_se=kl_se,
        rm=stats["rm"][0], rm_se=stats["rm"][1], rater=stats["rater"][0], rater_se=stats["rater"][1],
        gold=stats["gold"][0], gold_se=stats["gold"][1],
        entropy=float(-s.logprobs.sum(-1).mean()), length=float(s.mask.sum(-1).float().mean()), texts=s.texts,
    )


def train_rl(base_model, tokenizer, train_prompts: list[str], eval_prompts: list[str], proxy: ScoreFn,
             judges: dict[str, ScoreFn], cfg: RLConfig, *, kl_coef: float, seed: int, progress: bool = True,
             on_eval: Callable[[Evaluation], None] | None = None,
             on_rollout: Callable[[int, list[str], list[str]], None] | None = None) -> tuple[object, list[Evaluation]]:
    """Optimize a copy of ``base_model`` against ``proxy`` - ``kl_coef`` * KL; returns (policy, evaluations).

    ``kl_coef`` is beta, the KL penalty per nat of log(pi/pi_ref) summed over the completion, in
    reward units (Stiennon et al. 2020). ``seed`` fixes batches and sampling (the caller owns it:
    one seed per unit of work). ``judges`` must hold 'rater' and 'gold' (logged at every
    evaluation, never optimized). ``on_rollout(step, prompts, texts)``, if given, sees every training
    batch's samples before the update (e.g. to count how often RL sampled an exploit at all).
    """
    if not math.isfinite(kl_coef) or kl_coef < 0:
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef}")
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    eval_generator = torch.Generator().manual_seed(seed + 10_000)
    ref = base_model.eval()
    policy = copy.deepcopy(base_model).eval()  # eval mode: no dropout, so sampled and trained log-probs agree
    policy.requires_grad_(True)  # the reference is only ever run under no_grad
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    k = cfg.samples_per_prompt

    evaluations = [evaluate(policy, ref, tokenizer, eval_prompts, proxy, judges, cfg, 0, eval_generator)]
    if on_eval:
        on_eval(evaluations[-1])
    bar = tqdm(range(1, cfg.steps + 1), desc=f"rl beta={kl_coef:g}", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        # 1. Rollouts: k samples for each prompt of the batch (no grad).
        batch = [p for p in rng.choices(train_prompts, k=cfg.prompts_per_step) for _ in range(k)]
        s = sample(policy, tokenizer, batch, cfg.max_new_tokens, generator=generator)
        if on_rollout:
            on_rollout(step, batch, s.texts)
        with torch.no_grad():
            ref_lp = sequence_logprobs(ref, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)  # (B, T)
        # 2. Shaped reward: proxy minus beta * log(pi/pi_ref) summed over the sequence (Stiennon form),
        #    or the proxy alone when the penalty is in the loss.
        proxy_reward = torch.as_tensor(proxy(batch, s.texts), dtype=torch.float32)  # (B,)
        kl_seq, _ = _kl_terms(s, ref_lp)  # (B,)
        shaped = proxy_reward - kl_coef * kl_seq if cfg.kl_in == "reward" else proxy_reward
        advantages = rloo_advantages(shaped, k)  # (B,)
        # 3. PPO-clipped policy-gradient update; tokens of a sequence share its advantage.
        mask = s.mask.float()
        for _ in range(cfg.ppo_epochs):
            logp = sequence_logprobs(policy, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)  # (B, T)
            ratio = torch.exp(logp - s.logprobs)
            adv = advantages[:, None]
            surrogate = torch.min(ratio * adv, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
            loss = -(surrogate * mask).sum(-1).mean()
            if cfg.kl_in == "loss":
                loss = loss + kl_coef * (kl_k3(logp, ref_lp) * mask).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            optimizer.step()
        bar.set_postfix(rm=f"{proxy_reward.mean():.2f}", kl=f"{kl_seq.mean():.1f}")

        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(policy, ref, tokenizer, eval_prompts, proxy, judges, cfg, step, eval_generator))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations
