"""Direct preference optimization (DPO) and IPO, readable top to bottom, as TRL's DPOTrainer defines them.

Trained on the same rater-labelled pairs as the reward model, with no reward model and no
sampling: the policy's log-probabilities of the chosen and the rejected answer, summed over the
completion's tokens (its closing EOS included), against a frozen reference (the base model):

    h = [log pi(y_w) - log pi_ref(y_w)] - [log pi(y_l) - log pi_ref(y_l)]
    DPO ("sigmoid"):  loss = -log sigmoid(beta * h)                         (Rafailov et al. 2023)
    IPO:              loss = (h_norm - 1 / (2 beta))^2, with each log-ratio divided by its
                      completion's token count before the difference (TRL's length-normalized
                      form, which its authors confirmed is what the IPO paper's results used)

The implicit reward of an answer is beta * log(pi(y) / pi_ref(y)) (per token for IPO): read as a
reward model, the policy orders held-out pairs (``implicit_reward_agreement``), which is compared
with the reward model trained on the same labels. Every ``eval_every`` steps the policy is evaluated
as RL is (``train.rl.evaluate``): KL from the reference, the proxy (the reward model, logged here,
never optimized), rater and gold, on held-out prompts.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from proxygap.config import Config, knob
from proxygap.lm.sampling import encode_prompts, pad_id, sequence_logprobs
from proxygap.train.rl import Evaluation, ScoreFn, evaluate

LOSSES = ("sigmoid", "ipo")


@dataclass
class DPOTrainConfig(Config):
    """DPO's optimization knobs; an experiment that sets its own evaluation schedule embeds this one."""

    SET_ELSEWHERE: ClassVar[dict[str, str]] = {
        "max_new_tokens": "the direct policies are evaluated as RL is: set rl.max_new_tokens",
        "eval_samples_per_prompt": "the direct policies are evaluated as RL is: set rl.eval_samples_per_prompt, or "
                                   "eval_samples_per_prompt where the experiment has it",
        "eval_every": "this experiment evaluates the direct policies once, at the end"}

    steps: int = knob(60, "optimizer steps", lo=0)
    batch_size: int = knob(32, "pairs per step (drawn with replacement, seeded)", lo=1)
    lr: float = knob(1e-4, "Adam learning rate", lo=0)
    grad_clip: float = knob(1.0, "max gradient norm (0: off)", lo=0)


@dataclass
class DPOScheduleConfig(DPOTrainConfig):
    """With the evaluation interval, for an experiment that sets the evaluation samples (as RL's)."""

    eval_every: int = knob(20, "steps between evaluations on the fixed prompt set", lo=1)


@dataclass
class DPOConfig(DPOScheduleConfig):
    eval_samples_per_prompt: int = knob(2, "samples per evaluation prompt", lo=1)
    max_new_tokens: int = knob(24, "length limit of the evaluation samples, in tokens", lo=1)


def encode_completions(tokenizer, completions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (tokens, mask), each (B, T): each completion's tokens and the closing EOS."""
    rows = [tokenizer.encode(c, add_special_tokens=False) + [tokenizer.eos_token_id] for c in completions]
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), T), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return tokens, mask


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float, loss_type: str = "sigmoid",
             chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss (B,) from sequence log-probs (B,) each; IPO needs the completion lengths."""
    chosen = chosen_logps - ref_chosen_logps
    rejected = rejected_logps - ref_rejected_logps
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * (chosen - rejected))
    if loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the IPO loss needs the completions' token counts")
        delta = chosen / chosen_lengths.clamp(min=1) - rejected / rejected_lengths.clamp(min=1)
        return (delta - 1 / (2 * beta)) ** 2
    raise ValueError(f"loss_type must be one of {LOSSES}, got {loss_type!r}")


def pair_logps(model, tokenizer, pairs: list[tuple[str, str, str]]) -> tuple[torch.Tensor, ...]:
    """(chosen log-probs, rejected log-probs, chosen lengths, rejected lengths), each (B,), with grad."""
    prompts = [p for p, _, _ in pairs]
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts + prompts)
    tokens, mask = encode_completions(tokenizer, [c for _, c, _ in pairs] + [r for _, _, r in pairs])
    logps = sequence_logprobs(model, prompt_ids, prompt_mask, tokens, mask).sum(-1)  # (2B,)
    lengths = mask.sum(-1).float()
    B = len(pairs)
    return logps[:B], logps[B:], lengths[:B], lengths[B:]


@torch.no_grad()
def reference_logps(ref, tokenizer, pairs: list[tuple[str, str, str]], chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen reference's sequence log-probs of every pair's two completions, (B,) each: computed
    once and shared by every DPO/IPO run (and agreement measurement) on the same pairs."""
    chosen, rejected = [], []
    for i in range(0, len(pairs), chunk):
        c, r, _, _ = pair_logps(ref, tokenizer, pairs[i:i + chunk])
        chosen.append(c)
        rejected.append(r)
    if not pairs:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(base_model, tokenizer, pairs: list[tuple[str, str, str]], eval_prompts: list[str], proxy: ScoreFn,
              judges: dict[str, ScoreFn], cfg: DPOConfig, *, beta: float, loss_type: str, seed: int,
              progress: bool = True, on_eval: Callable[[Evaluation], None] | None = None,
              ref_logps: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Optimize a copy of ``base_model`` on (prompt, chosen, rejected) pairs; returns (policy, evaluations).
    With no pairs (a rater that tied every pair) the policy stays the base model, evaluated on the same schedule.
    ``ref_logps``: ``reference_logps(base_model, tokenizer, pairs)``, where several runs share the pairs."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0 for DPO/IPO, got {beta}")
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type must be one of {LOSSES}, got {loss_type!r}")
    rng = random.Random(seed)
    eval_generator = torch.Generator().manual_seed(seed + 10_000)
    ref = base_model.eval()
    policy = copy.deepcopy(base_model).eval()  # eval mode: no dropout, as in RL
    policy.requires_grad_(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    ref_chosen, ref_rejected = reference_logps(ref, tokenizer, pairs) if ref_logps is None else ref_logps
    if len(ref_chosen) != len(pairs) or len(ref_rejected) != len(pairs):
        raise ValueError(f"ref_logps has {len(ref_chosen)} and {len(ref_rejected)} log-probs for {len(pairs)} pairs")

    evaluations = [evaluate(policy, ref, tokenizer, eval_prompts, proxy, judges, cfg, 0, eval_generator)]
    if on_eval:
        on_eval(evaluations[-1])
    bar = tqdm(range(1, cfg.steps + 1), desc=f"{loss_type} beta={beta:g}", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        if not pairs:  # every pair was a tie: nothing to learn; the policy is evaluated as it stands
            bar.set_postfix(loss="no pairs")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                evaluations.append(evaluate(policy, ref, tokenizer, eval_prompts, proxy, judges, cfg, step, eval_generator))
            continue
        idx = rng.choices(range(len(pairs)), k=cfg.batch_size)
        chosen, rejected, len_c, len_r = pair_logps(policy, tokenizer, [pairs[i] for i in idx])
        rows = torch.tensor(idx, device=ref_chosen.device)
        loss = dpo_loss(chosen, rejected, ref_chosen[rows], ref_rejected[rows], beta, loss_type, len_c, len_r).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(policy, ref, tokenizer, eval_prompts, proxy, judges, cfg, step, eval_generator))
            if on_eval:
                on_eval(evaluations[-1])
    bar.close()
    policy.proxygap_train_time_s = time.time() - t0
    return policy, evaluations


@torch.no_grad()
def implicit_reward_agreement(policy, ref, tokenizer, prompts: list[str], a: list[str], b: list[str],
                              judged: dict[str, tuple[np.ndarray, np.ndarray]], *, length_normalized: bool,
                              chunk: int = 256,
                              ref_logps: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float | None]:
    """How the policy, read as a reward model, orders pairs (a, b): by its implicit reward
    log pi(y) - log pi_ref(y) (beta scales it, so the order does not depend on beta), per token
    where the loss normalizes by length (IPO). ``judged`` maps a judge's name to its scores of
    (a, b); the result is the fraction of pairs, the judge's ties dropped, ordered as the judge
    orders them (``pair_agreement``, as the reward model's held-out agreement). ``ref_logps``: the
    reference's, ``reference_logps(ref, tokenizer, list(zip(prompts, a, b)))``, where several
    policies are read on the same pairs."""
    from proxygap.oversight.reward_model import pair_agreement

    if ref_logps is None:
        ref_logps = reference_logps(ref, tokenizer, list(zip(prompts, a, b)), chunk)
    ratio = {"a": [], "b": []}
    for i in range(0, len(prompts), chunk):
        rows = list(zip(prompts[i:i + chunk], a[i:i + chunk], b[i:i + chunk]))
        pol_a, pol_b, len_a, len_b = pair_logps(policy, tokenizer, rows)
        ra, rb = pol_a - ref_logps[0][i:i + chunk], pol_b - ref_logps[1][i:i + chunk]
        if length_normalized:
            ra, rb = ra / len_a, rb / len_b
        ratio["a"].append(ra)
        ratio["b"].append(rb)
    if not prompts:
        return {name: None for name in judged}
    ra, rb = (torch.cat(ratio[k]).cpu().numpy() for k in ("a", "b"))
    return {name: pair_agreement(ra, rb, np.asarray(sa), np.asarray(sb)) for name, (sa, sb) in judged.items()}
