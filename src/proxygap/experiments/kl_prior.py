"""`proxygap run kl-prior`: does a KL penalty keep out an exploit only when the base model makes it improbable?

The debate: "RLHF is safe enough because the KL penalty keeps the policy close to a base model
that only imitates people" vs "an exploit that is *likely* under the base model costs little KL,
so the penalty does not keep it out". Here the same world is pretrained into one small base
model per corpus base rate of one exploit (the manipulation phrase, which the flawed rater
rewards and gold penalizes); each base is then optimized by KL-penalized RL at several beta
against a reward model trained on the rater's labels, and the exploit rate after RL is set
beside the base model's own rate and the KL the policy paid.

The theoretical reference: the optimum of KL-regularized RL is pi* ∝ pi_ref · exp(r / beta)
(e.g. Korbak et al. 2022, "RL with KL penalties is better viewed as Bayesian inference"), so
an exploit worth Delta reward under the RM, with base-model probability p, has the predicted
rate p·e^(Delta/beta) / (p·e^(Delta/beta) + 1 − p). Delta is measured on the RM (the same
answers scored with and without the phrase appended) and p on the base model, so observed and
predicted are independent measurements side by side. (The estimate that also reweights the answers,
``predicted_rate_mixture``, draws half its answers from the trained policy: the weights undo the
policy's preferences in expectation, but on a few answers per prompt it leans on the answers the
policy found, so it is not independent of the run it is compared with.) The prediction is a
measurement aid, never a target: nothing here is tuned to make the two agree.

Two things can keep an exploit out, and the design separates them: the KL term (which the
formula captures) and exploration (RL can only reinforce what it samples: at p = 1e-4 a short
run may never draw the exploit at all). The report gives, beside each point, how many exploit
samples the base policy would be expected to produce over all of RL's rollouts.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
import shutil
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from proxygap.config import apply_overrides, ConfigError, knob, nested
from proxygap.fileio import replace_dir, temp_sibling
from proxygap.experiments.spec import Experiment, ExperimentConfig, Unit, UnitContext
from proxygap.pipeline.base_model import BaseModelRecipe, base_model_for
from proxygap.lm.model import ModelConfig
from proxygap.lm.pretrain import PretrainConfig
from proxygap.measure.intervals import UNIT as RATE
from proxygap.measure.intervals import (Interval, as_interval, count_interval, moved, paired_rate_change,
                                        pooled_count_interval, seed_differences, seed_interval, separated)
from proxygap.measure.stats import cluster_design_effect
from proxygap.oversight.judges import Judge, RaterFlaws
from proxygap.pipeline.reward_model import RewardModelConfig, train_reward_model
from proxygap.tasks.splits import eval_train_split
from proxygap.train.rl import RLConfig, train_rl

# Exploit name -> the CorpusConfig field that sets its base rate. The exploit name is also the
# key of oversight.detectors.detect_text's verdicts. The manipulation phrase is appended after
# a complete answer, so its base-model probability and its reward under the RM can be measured
# exactly on the same answers with and without it (see phrase_probabilities, reward_deltas).
EXPLOITS = {"manipulation_phrase": "manipulation_rate"}
PROMPT_TOKENS = 40  # an assistant prompt's tokens with the bos, at most (as pipeline.base_model.check_fits)


# ---------------------------------------------------------------- config
@dataclass
class KLPriorModelConfig(ModelConfig):
    """The transformer's shape, smaller than the default base model: one is pretrained per base rate."""

    n_layer: int = knob(2, "transformer blocks", lo=1)
    n_embd: int = knob(64, "embedding width; must be divisible by n_head", lo=8)
    n_head: int = knob(2, "attention heads per block", lo=1)
    n_positions: int = knob(128, "context length: a prompt (checked at up to 40 tokens) and the longest completion "
                                 "(rl.max_new_tokens, rm.max_new_tokens) must fit", lo=8)


@dataclass
class KLPriorPretrainConfig(PretrainConfig):
    """Pretraining, shortened so each base rate costs about a minute on a 2-core CPU."""

    steps: int = knob(600, "optimizer steps", lo=1)
    seq_len: int = knob(64, "tokens per window; documents are short", lo=2)
    checkpoint_every: int = knob(200, "steps between resumable checkpoints", lo=1)
    eval_every: int = knob(200, "steps between validation-loss evaluations", lo=1)


@dataclass
class KLPriorRecipe(BaseModelRecipe):
    """The base model pretrained per base rate (the default world; a smaller model)."""

    model: KLPriorModelConfig = nested(KLPriorModelConfig, "the transformer's shape")
    train: KLPriorPretrainConfig = nested(KLPriorPretrainConfig, "pretraining by next-token loss")


@dataclass
class KLPriorConfig(ExperimentConfig):
    exploit: str = knob("manipulation_phrase", "the exploit whose corpus base rate is swept "
                        "(manipulation_phrase: CorpusConfig.manipulation_rate)", choices=tuple(EXPLOITS))
    base_rates: tuple[float, ...] = knob((1e-4, 1e-3, 1e-2, 1e-1), "corpus base rates of the exploit, each in (0, 1); "
                                         "one base model is pretrained per rate", lo=0, hi=1)
    kl_coefs: tuple[float, ...] = knob((0.01, 0.1, 1.0), "the RL betas (KL penalty in the reward, per nat); "
                                       "decades chosen before any result", lo=0)
    reward_model: str = knob("shared", "shared: one RM per seed, trained on samples of the base at rm_base_rate and "
                             "used for every base rate, so the exploit is worth the same reward everywhere; own: each "
                             "base rate's base model labels and backbones its own RM (as in practice; then the RM's "
                             "reward for the exploit also depends on how often it saw it)", choices=("shared", "own"))
    rm_base_rate: float = knob(0.1, "base rate of the base model that makes the shared RM (high, so the RM's "
                               "labels contain the exploit often enough to learn the rater's taste for it)", lo=0, hi=1)
    prompt_kinds: tuple[str, ...] = knob(("fact", "belief", "recommend"), "assistant question kinds used",
                                         choices=("fact", "belief", "recommend"))
    n_eval_prompts: int = knob(64, "held-out prompts on which every RL evaluation is measured", lo=4)
    n_base_samples: int = knob(4096, "samples per base model measuring its exploit rate (Wilson interval)", lo=1)
    n_delta_samples: int = knob(256, "base-model answers on which the RM's reward for the exploit is measured", lo=1)
    n_reweight_prompts: int = knob(64, "prompts on which the optimum's answer-reweighted rate is estimated "
                                   "(pi* reweights each prompt's own answers, so they are grouped by prompt)", lo=1)
    reweight_answers_per_prompt: int = knob(8, "base-model samples per prompt for the answer-reweighted rate "
                                            "(and as many of each trained policy's, for the pooled estimate)", lo=1)
    cache_dir: str = knob("", "where pretrained base models are kept, keyed by recipe hash ('' = "
                          "$PROXYGAP_CACHE or $XDG_CACHE_HOME/proxygap or ~/.cache/proxygap, then /bases)")
    base: KLPriorRecipe = nested(KLPriorRecipe, "the base model pretrained per base rate "
                                 "(world.corpus.<exploit's rate> is replaced by each base rate)")
    rater: RaterFlaws = nested(RaterFlaws, "the rater's flaws (rater.manipulation: how much it rewards the phrase)")
    rm: RewardModelConfig = nested(RewardModelConfig, "the reward model")
    rl: RLConfig = nested(RLConfig, "KL-penalized RL, one run per beta of kl_coefs")

    def check(self) -> None:
        super().check()
        if self.world:
            raise ConfigError("kl-prior pretrains its own bases on its own worlds: the world knob does not apply")
        for rate in (*self.base_rates, self.rm_base_rate):
            if not 0 < rate < 1:
                raise ConfigError(f"base rates must be strictly between 0 and 1 (got {rate}); "
                                  "0 removes the exploit from the corpus, 1 makes it the only behaviour")
        if not self.base_rates:
            raise ConfigError("base_rates is empty; give at least one rate")
        if not self.kl_coefs:
            raise ConfigError("kl_coefs is empty; give at least one beta")
        swept = EXPLOITS[self.exploit]
        if getattr(self.base.world.corpus, swept) != getattr(type(self.base.world.corpus)(), swept):
            raise ConfigError(f"kl-prior sets base.world.corpus.{swept} to each of base_rates; set base_rates instead")
        if self.rl.kl_in != "reward":
            raise ConfigError("kl-prior compares RL with the optimum pi_ref exp(r/beta) of the KL penalty in the "
                              "reward; rl.kl_in=loss optimizes another objective: leave rl.kl_in=reward")
        if len(set(self.base_rates)) != len(self.base_rates) or len(set(self.kl_coefs)) != len(self.kl_coefs):
            raise ConfigError("base_rates and kl_coefs must not repeat a value")
        for rate in (*self.base_rates, self.rm_base_rate):
            recipe_for(self, rate)  # the world's own checks (e.g. citation rates summing to <= 1), up front
        if self.rl.steps < 1:
            raise ConfigError(f"rl.steps={self.rl.steps}: without RL there is nothing to compare with the base model; "
                              "give at least 1 step")
        # Before any base model is pretrained: the prompts and lengths every base will be asked to fit.
        from proxygap.world.world import build_world

        eval_train_split(build_world(self.base.world), 0, self.prompt_kinds, self.n_eval_prompts)
        context = self.base.model.n_positions
        for name, n in (("rl.max_new_tokens", self.rl.max_new_tokens), ("rm.max_new_tokens", self.rm.max_new_tokens)):
            if PROMPT_TOKENS + n > context:
                raise ConfigError(f"{name}={n} does not fit base.model.n_positions={context} with prompts of up to "
                                  f"{PROMPT_TOKENS} tokens; lower it to at most {context - PROMPT_TOKENS}")


def recipe_for(cfg: KLPriorConfig, rate: float) -> KLPriorRecipe:
    """The base recipe with the exploit's corpus rate set to ``rate``: the only thing that differs."""
    field = EXPLOITS[cfg.exploit]
    return apply_overrides(cfg.base, [f"world.corpus.{field}={rate!r}"])


# ---------------------------------------------------------------- theory
def predicted_rate(p: float | list[float], delta: float | list[float], beta: float) -> float:
    """Exploit rate at the optimum of KL-regularized RL, pi* ∝ pi_ref · exp(r / beta).

    With one exploit variant of base-model probability p worth delta reward over not exploiting:
    p·e^(delta/beta) / (p·e^(delta/beta) + 1 − p). With several variants (one per phrase, each
    with its own p_k and delta_k): sum_k p_k·e^(delta_k/beta) / (that sum + 1 − sum_k p_k).
    beta = 0 is the limit: 1 if the best variant with p_k > 0 has delta_k > 0, 0 if it is < 0.
    Computed in log space, so e^(delta/beta) never overflows.
    """
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    ds = np.atleast_1d(np.asarray(delta, dtype=float))
    if ps.shape != ds.shape:
        raise ValueError("p and delta must have the same length")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if (ps < 0).any() or ps.sum() >= 1 + 1e-12:
        raise ValueError(f"base-model probabilities must be >= 0 and sum to < 1, got {ps.tolist()}")
    live = ps > 0
    if not live.any():
        return 0.0
    if beta == 0:
        best = ds[live].max()
        return 1.0 if best > 0 else (0.0 if best < 0 else float(ps.sum()))
    log_exploit = np.logaddexp.reduce(np.log(ps[live]) + ds[live] / beta)
    log_rest = math.log1p(-float(ps.sum()))
    return float(1.0 / (1.0 + math.exp(min(700.0, log_rest - log_exploit))))


def optimum_over_answers(p: np.ndarray, delta: np.ndarray, reward: np.ndarray, beta: float,
                         groups: Sequence | None = None, log_ratio: np.ndarray | None = None) -> dict:
    """The optimum's exploit rate from per-answer measurements, two ways (beta > 0).

    ``p``, ``delta``: (n_answers, n_phrases), each answer's base-model probability of each phrase and
    the RM's reward for appending it; ``reward``: (n_answers,), the RM's reward for the answer alone.
    ``per_answer``: the mean over answers of each answer's own predicted_rate (exponentiate, then
    average; averaging delta first differs wherever delta varies, by Jensen: far lower where the
    rate is small, since e^(delta/beta) is convex, and saturating at 1 sooner).
    ``reweighted``: pi*(y|x) ∝ pi_ref(y|x)·e^(r/beta) also reweights each prompt's answers by
    e^(r/beta), within the prompt (pi* is normalized per prompt, so answers to different prompts are
    never weighed against each other). ``groups`` names each answer's prompt (None: all answers
    of one prompt); per prompt a self-normalized importance estimate over its base-model answers,
    sum_a w_a·q_a / sum_a w_a with w_a = e^(r_a/beta)·(1 − sum_k p_ak + sum_k p_ak·e^(delta_ak/beta)),
    then the mean over prompts. ``reweighted_ess``: the mean over prompts of the effective sample size
    (sum w)²/sum w², at most ``answers_per_prompt`` (the mean group size): at small beta one answer per
    prompt carries the weight, and the estimate is then each prompt's best sampled answer's rate.
    ``log_ratio``: per answer, log pi_ref(a|x) − log q(a|x) where the answers were drawn from another
    proposal q (e.g. a mixture of the base model and a trained policy, ``mixture_log_ratio``); None: drawn
    from pi_ref itself (ratio 1). Any constant per prompt cancels in the normalization.
    """
    p, delta, reward = (np.asarray(x, dtype=float) for x in (p, delta, reward))
    if p.shape != delta.shape or p.ndim != 2 or reward.shape != (p.shape[0],):
        raise ValueError(f"p {p.shape}, delta {delta.shape} and reward {reward.shape} do not match")
    if groups is not None and len(groups) != len(reward):
        raise ValueError(f"need one group per answer, got {len(groups)} for {len(reward)} answers")
    if not len(reward):
        return {"per_answer": None, "reweighted": None, "reweighted_ess": 0.0, "answers_per_prompt": 0.0}
    q = np.array([predicted_rate(pa, da, beta) for pa, da in zip(p, delta)])
    if beta <= 0:
        return {"per_answer": float(q.mean()), "reweighted": None, "reweighted_ess": None, "answers_per_prompt": None}
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    log_exploit = np.logaddexp.reduce(log_p + delta / beta, axis=1)  # log sum_k p_ak e^(delta_ak / beta)
    log_rest = np.log1p(-np.minimum(p.sum(1), 1 - 1e-12))
    log_ratio = np.zeros_like(reward) if log_ratio is None else np.asarray(log_ratio, dtype=float)
    if log_ratio.shape != reward.shape:
        raise ValueError(f"need one log ratio per answer, got {log_ratio.shape} for {reward.shape}")
    log_w = reward / beta + np.logaddexp(log_rest, log_exploit) + log_ratio
    index: dict = {}
    for i, g in enumerate(groups if groups is not None else [0] * len(reward)):
        index.setdefault(g, []).append(i)
    rates, ess = [], []
    for rows in index.values():
        lw = log_w[rows]
        w = np.exp(lw - lw.max())
        # w_a·q_a is e^(r_a/beta)·sum_k p_ak e^(delta_ak/beta): the exploit's share of pi*, in log space
        rates.append(math.exp(np.logaddexp.reduce(reward[rows] / beta + log_exploit[rows] + log_ratio[rows])
                              - np.logaddexp.reduce(lw)))
        ess.append(float(w.sum() ** 2 / np.dot(w, w)))
    return {"per_answer": float(q.mean()), "reweighted": float(np.mean(rates)), "reweighted_ess": float(np.mean(ess)),
            "answers_per_prompt": len(reward) / len(index)}


def binary_kl(q: float, p: float) -> float:
    """KL(Bernoulli(q) || Bernoulli(p)) in nats: the least KL any policy pays to move the exploit rate from p to q."""
    if not 0 < p < 1:
        return math.nan
    q = min(max(q, 0.0), 1.0)
    out = 0.0
    if q > 0:
        out += q * math.log(q / p)
    if q < 1:
        out += (1 - q) * math.log((1 - q) / (1 - p))
    return out


# ---------------------------------------------------------------- base models (pipeline.base_model caches them by recipe hash)
def build_or_load_base(recipe: BaseModelRecipe, cache_dir: Path | None = None, progress: bool = True) -> dict:
    """The base model of ``recipe``, with every manipulation phrase in its tokenizer's vocabulary:
    at a base rate of 1e-4 a phrase may never occur in the corpus, and a model whose tokenizer
    lacks its words could not write it at all (the sweep would compare "improbable" with "impossible")."""
    return base_model_for(recipe, cache_dir, extra_vocab=tuple(recipe.world.corpus.manipulation_phrases),
                          progress=progress)


# ---------------------------------------------------------------- measurements on one base model
def exploit_flags(prompts: list[str], texts: list[str], world, exploit: str, in_slot: list | None = None) -> list[bool]:
    """The exploit's detector on every (prompt, completion) where it applies. Given a list
    ``in_slot``, it is filled alongside: whether each flagged completion has a phrase right after
    its first sentence, the one place the optimum's prediction counts (the detector counts anywhere)."""
    from proxygap.oversight.detectors import detect_text

    flags = []
    for p, t in zip(prompts, texts):
        verdict = detect_text(p, t, world)
        if verdict is not None and verdict.get(exploit) is not None:
            flags.append(bool(verdict[exploit]))
            if in_slot is not None:
                in_slot.append(flags[-1] and phrase_after_first_sentence(t, world.manipulation_phrases))
    return flags


def phrase_after_first_sentence(completion: str, phrases) -> bool:
    """Whether one of ``phrases`` follows the completion's first sentence directly: where the
    corpus appends a manipulation phrase, and where ``phrase_probabilities`` measures it."""
    core = first_sentence(completion)
    if core is None:
        return False
    rest = completion.split()[len(core.split()):]
    return any(rest[:len(ph.split())] == ph.split() for ph in phrases)


def first_sentence(completion: str) -> str | None:
    """The answer up to and including its first ' .': where the corpus appends a manipulation phrase."""
    words = completion.split()
    if "." not in words:
        return None
    return " ".join(words[: words.index(".") + 1])


@torch.no_grad()
def phrase_probabilities(model, tokenizer, prompts: list[str], cores: list[str], phrases: tuple[str, ...],
                         batch_size: int = 512) -> np.ndarray:
    """(n_samples, n_phrases): the base model's probability of each phrase right after each answer.

    Averaged over answers sampled from the base model this is an unbiased, low-variance estimate
    of P(the answer is followed by the phrase) (a Rao-Blackwellized rate): at a base rate of 1e-4
    a few thousand samples hold no exploit at all, but every answer still gives its probability.
    A phrase containing a word outside the vocabulary gets probability 0 (the model cannot write it).
    """
    from proxygap.lm.sampling import encode_prompts, sequence_logprobs

    out = np.zeros((len(cores), len(phrases)))
    unk = tokenizer.unk_token_id
    for j, phrase in enumerate(phrases):
        ids = tokenizer.encode(" " + phrase, add_special_tokens=False)
        if unk is not None and unk in ids:
            continue
        for i in range(0, len(cores), batch_size):
            prefixes = [f"{p} {c}" for p, c in zip(prompts[i:i + batch_size], cores[i:i + batch_size])]
            prompt_ids, prompt_mask = encode_prompts(tokenizer, prefixes)  # (b, P), left-padded
            tokens = torch.tensor([ids] * len(prefixes), dtype=torch.long)  # (b, L)
            lp = sequence_logprobs(model, prompt_ids, prompt_mask, tokens, torch.ones_like(tokens))  # (b, L)
            out[i:i + len(prefixes), j] = lp.sum(-1).exp().cpu().numpy()
    return out


@torch.no_grad()
def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 512) -> np.ndarray:
    """(n,): log pi(answer | prompt), the model's log-probability of a completion that begins with ``answer``
    (its tokens' log-probabilities summed, whatever follows)."""
    from proxygap.lm.sampling import encode_prompts, pad_id, sequence_logprobs

    out = np.zeros(len(answers))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(answers), batch_size):
            prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts[i:i + batch_size], device=device)
            ids = [tokenizer.encode(" " + a, add_special_tokens=False) for a in answers[i:i + batch_size]]
            width = max(len(t) for t in ids)
            tokens = torch.tensor([t + [pad_id(tokenizer)] * (width - len(t)) for t in ids], dtype=torch.long, device=device)
            mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in ids], dtype=torch.long, device=device)
            lp = sequence_logprobs(model, prompt_ids, prompt_mask, tokens, mask)  # 0 where mask is 0
            out[i:i + len(ids)] = lp.sum(-1).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def mixture_log_ratio(log_ref: np.ndarray, log_policy: np.ndarray, groups: Sequence,
                      draws: dict[tuple, int]) -> np.ndarray:
    """log pi_ref(a|x) − log q(a|x) for answers drawn from two proposals, the base model and a policy, pooled
    (multiple importance sampling, the balance heuristic): q = (n_ref·pi_ref + n_pol·pi_pol) / (n_ref + n_pol)
    with each prompt's own draw counts ``draws[(prompt, drawn_by_policy)]`` (parsed or not: an unparsed draw
    weighs 0 but was drawn). Every weight is then at most (n_ref + n_pol) / n_ref times pi*'s own tilt, so
    no answer the policy found but the base model finds unlikely can blow the estimate up; and the pool
    covers pi*'s support wherever the base model does."""
    log_ref, log_policy = np.asarray(log_ref, dtype=float), np.asarray(log_policy, dtype=float)
    n_ref = np.array([draws.get((g, False), 0) for g in groups], dtype=float)
    n_pol = np.array([draws.get((g, True), 0) for g in groups], dtype=float)
    with np.errstate(divide="ignore"):
        log_q = np.logaddexp(np.log(n_ref) + log_ref, np.log(n_pol) + log_policy) - np.log(n_ref + n_pol)
    return log_ref - log_q


def reward_deltas(score, prompts: list[str], cores: list[str], phrases: tuple[str, ...]) -> np.ndarray:
    """(n_samples, n_phrases): score(answer + phrase) − score(answer), the same answers with and without."""
    base = np.asarray(score(prompts, cores), dtype=float)
    return np.stack([np.asarray(score(prompts, [f"{c} {ph} ." for c in cores]), dtype=float) - base
                     for ph in phrases], axis=1)


def reweight_samples(base, prompts: list[str], cfg: KLPriorConfig, seed: int = 0) -> list[list[str]]:
    """[prompt, completion] pairs: ``reweight_answers_per_prompt`` base-model samples of each of the
    ``n_reweight_prompts`` prompts drawn at random from all (every kind, as the held-out prompts are),
    for the answer-reweighted optimum (grouped by prompt). Their own random numbers, so the base
    model's other measurements do not depend on these knobs."""
    from proxygap.lm.sampling import sample

    chosen = random.Random(seed + 1).sample(prompts, min(cfg.n_reweight_prompts, len(prompts)))
    repeated = [p for p in chosen for _ in range(cfg.reweight_answers_per_prompt)]
    gen = torch.Generator().manual_seed(seed + 1)
    texts = sample(base.model, base.tokenizer, repeated, cfg.rl.max_new_tokens, generator=gen, batch_size=1024).texts
    return [[p, t] for p, t in zip(repeated, texts)]


def reweight_inputs(base, score, samples: list[list[str]], phrases: tuple[str, ...]) -> dict:
    """``optimum_over_answers``' inputs on ``reweight_samples`` (``p``, ``delta``, ``reward``, ``groups``:
    each sample's prompt), on the samples whose answer parses: as the per-answer prediction, a rate
    per parsed answer (an unparsed one has no phrase slot, and scoring it on its whole completion
    would weigh it on another basis than the answers scored on their first sentence)."""
    pairs = [(p, first_sentence(t)) for p, t in samples]
    pairs = [(p, c) for p, c in pairs if c is not None]
    if not pairs:
        return {"p": np.zeros((0, len(phrases))), "delta": np.zeros((0, len(phrases))), "reward": np.zeros(0), "groups": [],
                "cores": []}
    prompts, cores = [p for p, _ in pairs], [c for _, c in pairs]
    return {"p": phrase_probabilities(base.model, base.tokenizer, prompts, cores, phrases),
            "delta": reward_deltas(score, prompts, cores, phrases),
            "reward": np.asarray(score(prompts, cores), dtype=float), "groups": prompts, "cores": cores}


def mixture_optimum(base, policy, score, samples: list[list[str]], grouped: dict, base_logp: np.ndarray, beta: float,
                    cfg: KLPriorConfig, seed: int) -> dict:
    """The answer-reweighted optimum on the base model's answers pooled with as many of the trained policy's,
    of the same prompts (``mixture_log_ratio``): the policy has already found answers pi* favours that a few
    base samples per prompt rarely hold, which is where the base-only estimate, at small beta each prompt's
    best of a few base answers, falls short of pi*. It still estimates pi*, not the policy: the weights undo
    the policy's own preferences. ``optimum_over_answers``' output, on both pools."""
    from proxygap.lm.sampling import sample

    repeated = [p for p, _ in samples]
    gen = torch.Generator().manual_seed(seed + 2)
    texts = sample(policy, base.tokenizer, repeated, cfg.rl.max_new_tokens, generator=gen, batch_size=1024).texts
    drawn = reweight_inputs(base, score, [[p, t] for p, t in zip(repeated, texts)], tuple(base.world.manipulation_phrases))
    groups = list(grouped["groups"]) + list(drawn["groups"])
    cores = list(grouped["cores"]) + list(drawn["cores"])
    log_ref = np.concatenate([base_logp, answer_logprobs(base.model, base.tokenizer, drawn["groups"], drawn["cores"])])
    log_policy = answer_logprobs(policy, base.tokenizer, groups, cores)
    # both pools drew the same prompts, each as often
    draws = {(p, by_policy): n for p, n in Counter(repeated).items() for by_policy in (False, True)}
    ratio = mixture_log_ratio(log_ref, log_policy, groups, draws)
    out = optimum_over_answers(np.concatenate([grouped["p"], drawn["p"]]), np.concatenate([grouped["delta"], drawn["delta"]]),
                               np.concatenate([grouped["reward"], drawn["reward"]]), beta, groups=groups, log_ratio=ratio)
    # what each pool brought: the RM's mean reward of its parsed answers, without any phrase appended
    out["pool_rm"] = {"base": float(np.mean(grouped["reward"])) if len(grouped["reward"]) else None,
                      "policy": float(np.mean(drawn["reward"])) if len(drawn["reward"]) else None}
    return out


def _clustered_se(values: np.ndarray, clusters: list) -> float:
    """Standard error of a mean over samples grouped in clusters (several answers of one prompt):
    sqrt(C/(C-1) * sum_c (sum_{i in c} (x_i - mean))^2) / n; nan with fewer than two clusters."""
    values = np.asarray(values, dtype=float)
    sums: dict = {}
    for x, c in zip(values - values.mean() if len(values) else values, clusters):
        sums[c] = sums.get(c, 0.0) + x
    C = len(sums)
    if C < 2:
        return math.nan
    return float(math.sqrt(C / (C - 1) * sum(v * v for v in sums.values())) / len(values))


def measure_base(base, prompts: list[str], cfg: KLPriorConfig, seed: int = 0) -> dict:
    """The base model's exploit rate: sampled (Wilson) and per-phrase probability after the answer."""
    from proxygap.lm.sampling import sample

    repeated = [prompts[i % len(prompts)] for i in range(cfg.n_base_samples)]
    gen = torch.Generator().manual_seed(seed)
    texts = sample(base.model, base.tokenizer, repeated, cfg.rl.max_new_tokens, generator=gen, batch_size=1024).texts
    flags = exploit_flags(repeated, texts, base.world, cfg.exploit)
    k, n = sum(flags), len(flags)
    deff = cluster_design_effect(flags, repeated)  # a prompt's samples are one cluster
    pairs = [(p, first_sentence(t)) for p, t in zip(repeated, texts)]
    pairs = [(p, c) for p, c in pairs if c is not None]
    phrases = tuple(base.world.manipulation_phrases)
    probs = phrase_probabilities(base.model, base.tokenizer, [p for p, _ in pairs], [c for _, c in pairs], phrases)
    per_phrase = probs.mean(0) if len(pairs) else np.zeros(len(phrases))
    se = _clustered_se(probs.sum(1), [p for p, _ in pairs])
    corpus = base.corpus_rates["behaviours"].get(cfg.exploit, {})
    return {
        "sampled": count_interval(k, n, deff),  # {mean, lo, hi, n, method: wilson, k[, n_effective, design_effect]}
        "prob_after_answer": {"rate": float(per_phrase.sum()), "se": se, "n_answers": len(pairs),
                              "per_phrase": dict(zip(phrases, per_phrase.tolist()))},
        "corpus_realized": {"rate": corpus.get("rate"), "k": corpus.get("k"), "n": corpus.get("n")},
        "answer_parse_rate": len(pairs) / max(1, len(texts)),
        # answers on which the RM's reward for the exploit is measured: drawn from every prompt kind, as the
        # held-out prompts are (``pairs`` run through the prompts in order, the fact questions first)
        "delta_pairs": random.Random(seed).sample(pairs, min(cfg.n_delta_samples, len(pairs))),
        "reweight_samples": reweight_samples(base, prompts, cfg, seed),
    }


# ---------------------------------------------------------------- one seed
def _prompt_split(world, cfg: KLPriorConfig, seed: int) -> tuple[list[str], list[str]]:
    return eval_train_split(world, seed, cfg.prompt_kinds, cfg.n_eval_prompts)


def run_rate_seed(cfg: KLPriorConfig, base, base_info: dict, ensemble, seed: int, progress: bool = True,
                  save: Callable[[str, object], object] | None = None) -> dict:
    """RL at every beta from one base model against one RM; exploit rate, KL and scores per evaluation.
    ``save(name, policy)``, if given, keeps each trained policy (``save_models``)."""
    world = base.world
    eval_prompts, train_prompts = _prompt_split(world, cfg, seed)
    rater, gold = Judge(world, cfg.rater), Judge.gold(world)
    phrases = tuple(world.manipulation_phrases)
    pairs = base_info["delta_pairs"]
    dp, dc = [p for p, _ in pairs], [c for _, c in pairs]
    per_answer_deltas = {name: reward_deltas(f, dp, dc, phrases)
                         for name, f in (("rm", ensemble.score), ("rater", rater), ("gold", gold))}
    deltas = {name: d.mean(0).tolist() for name, d in per_answer_deltas.items()}
    # the same answers' own phrase probabilities and RM rewards, for the prediction answer by answer
    per_answer_p = phrase_probabilities(base.model, base.tokenizer, dp, dc, phrases)
    answer_reward = np.asarray(ensemble.score(dp, dc), dtype=float)
    p_phrase = list(base_info["prob_after_answer"]["per_phrase"].values())
    # pi* reweights each prompt's own answers: several base samples per prompt (None in older prepared runs)
    samples = base_info.get("reweight_samples")
    grouped = reweight_inputs(base, ensemble.score, samples, phrases) if samples else None
    if grouped:
        grouped_base_logp = answer_logprobs(base.model, base.tokenizer, grouped["groups"], grouped["cores"])
    runs = []
    for beta in cfg.kl_coefs:
        repeated = [p for p in eval_prompts for _ in range(cfg.rl.eval_samples_per_prompt)]
        curve = []
        rollouts = {"k": 0, "n": 0, "first_step": None}

        def on_rollout(step, prompts, texts, rollouts=rollouts):
            # exploration: how often RL sampled the exploit at all, which it must before it can reinforce it
            flags = exploit_flags(prompts, texts, world, cfg.exploit)
            rollouts["k"] += sum(flags)
            rollouts["n"] += len(flags)
            if rollouts["first_step"] is None and any(flags):
                rollouts["first_step"] = step

        def on_eval(e, repeated=repeated, curve=curve):
            in_slot: list[bool] = []
            flags = exploit_flags(repeated, e.texts, world, cfg.exploit, in_slot)
            curve.append({"step": e.step, "kl": e.kl, "kl_k3": e.kl_k3, "rm": e.rm, "rater": e.rater, "gold": e.gold,
                          "exploit_rate": sum(flags) / len(flags) if flags else None, "k": sum(flags),
                          "k_in_slot": sum(in_slot),
                          "n": len(flags), "n_effective": len(flags) / cluster_design_effect(flags, repeated)})

        policy, evals = train_rl(base.model, base.tokenizer, train_prompts, eval_prompts, ensemble.score,
                                 {"rater": rater, "gold": gold}, cfg.rl, kl_coef=beta, seed=seed, progress=progress,
                                 on_eval=on_eval, on_rollout=on_rollout)
        if save is not None:
            save(f"rl_beta_{beta:g}", policy)
        mixture = (mixture_optimum(base, policy, ensemble.score, samples, grouped, grouped_base_logp, beta, cfg, seed)
                   if grouped and beta > 0 else {})
        del policy
        example = next((t for t in evals[-1].texts if any(f" {ph} " in f" {t} " for ph in phrases)), evals[-1].texts[0])
        optimum = optimum_over_answers(per_answer_p, per_answer_deltas["rm"], answer_reward, beta)
        tilted = optimum_over_answers(grouped["p"], grouped["delta"], grouped["reward"], beta, groups=grouped["groups"]) \
            if grouped else {}
        runs.append({"kl_coef": beta, "curve": curve,
                     "predicted_rate": predicted_rate(p_phrase, deltas["rm"], beta),  # pooled: mean p, mean delta
                     "predicted_rate_per_answer": optimum["per_answer"],
                     "predicted_rate_reweighted": tilted.get("reweighted"), "reweighted_ess": tilted.get("reweighted_ess"),
                     "reweighted_answers_per_prompt": tilted.get("answers_per_prompt"), "reweighted_by": "prompt",
                     "predicted_rate_mixture": mixture.get("reweighted"), "mixture_ess": mixture.get("reweighted_ess"),
                     "mixture_answers_per_prompt": mixture.get("answers_per_prompt"),
                     "mixture_pool_rm": mixture.get("pool_rm"),
                     "n_answers": len(dp), "rollout_exploits": rollouts,
                     "example": {"prompt": repeated[evals[-1].texts.index(example)], "completion": example}})
    return {"seed": seed, "deltas": deltas, "runs": runs}


# ---------------------------------------------------------------- aggregation
def _iv(values: list[float], bounds: tuple[float, float] | None = None) -> dict:
    return seed_interval(values, bounds=bounds, per_seed=True)



def _effective(count: dict) -> float:
    """A curve point's effective number of trials (its raw n in runs made before it was recorded)."""
    return count.get("n_effective") or count["n"]


def aggregate(cfg: KLPriorConfig, bases: dict[float, dict], per_rate_seed: dict[float, list[dict]]) -> dict:
    points = []
    rl_rollouts = cfg.rl.steps * cfg.rl.prompts_per_step * cfg.rl.samples_per_prompt
    for rate in cfg.base_rates:
        info, seeds = bases[rate], per_rate_seed[rate]
        p_base = info["prob_after_answer"]["rate"]
        for j, beta in enumerate(cfg.kl_coefs):
            runs = [s["runs"][j] for s in seeds]
            first, last = [r["curve"][0] for r in runs], [r["curve"][-1] for r in runs]
            after = _iv([c["exploit_rate"] for c in last], RATE)
            # Seeds' own spread (t) says nothing when every seed saw 0 of a few hundred samples; the
            # pooled Wilson interval (on the effective number of trials: a prompt's samples are one
            # cluster) says what that many samples can resolve. Comparisons use the hull.
            after["pooled"] = pooled_count_interval(last)
            after["hull"] = Interval.hull(after, after["pooled"]).to_dict()
            # The change against step 0, the base model on the same held-out prompts, seed, and random
            # numbers: paired, where the base model's 4,096 samples over every prompt are another mix.
            change = paired_rate_change([c["exploit_rate"] for c in last], [c["exploit_rate"] for c in first],
                                        min(_effective(c) for c in last + first))
            # Seed by seed: is this seed's own rate above its step 0 (Newcombe on the two counts)? Three
            # seeds that all agree can still give a t-interval wide enough to include no change.
            after["seeds_amplified"] = sum(
                a["n"] > 0 and b["n"] > 0
                and moved(Interval.from_count_difference(a["k"] * _effective(a) / a["n"], _effective(a),
                                                         b["k"] * _effective(b) / b["n"], _effective(b))) == "up"
                for a, b in zip(last, first))
            point = {
                "base_rate": rate,
                "kl_coef": beta,
                "exploit_rate_before": _iv([c["exploit_rate"] for c in first], RATE),
                "exploit_rate_after": after,
                "exploit_rate_change": {**change, "direction": moved(change)},
                "kl": _iv([c["kl"] for c in last]),
                "kl_k3": _iv([c["kl_k3"] for c in last]),
                "base_model_rate": info["sampled"],
                "base_model_prob": p_base,
                # the probability above is per parsed answer; per sample, an unparsed answer has no phrase slot
                "base_model_prob_per_sample": p_base * info.get("answer_parse_rate", 1.0),
                **_predictions(runs),
                "rollout_exploits": _rollout_exploits(runs),
                **_in_slot(last),
                "rm_delta": _iv([float(np.dot(s["deltas"]["rm"], _weights(info))) for s in seeds]),
                "kl_exploit_floor": binary_kl(after["mean"], p_base) if after["mean"] is not None else None,
                "expected_base_exploit_rollouts": rl_rollouts * p_base,
                "n_eval_samples": last[0]["n"],
            }
            for name in ("rm", "rater", "gold"):
                point[f"{name}_before"] = _iv([c[name] for c in first])
                point[f"{name}_after"] = _iv([c[name] for c in last])
                point[f"{name}_change"] = _iv([b[name] - a[name] for a, b in zip(first, last)])
            points.append(point)
    result = {"points": points, "findings": findings(points, cfg)}
    low = result["findings"]["lowest_rate"]
    low["corpus_realized"] = bases[low["base_rate"]]["corpus_realized"]
    return result


def _predictions(runs: list[dict]) -> dict:
    """The optimum's predicted rate per point: answer by answer where the units measured it (since
    2026-12-07; exponentiate, then average), else pooled (mean p and mean delta, as older units
    recorded it), which is reported beside it either way; and the answer-reweighted estimate with its
    effective sample size."""
    per_answer = [r.get("predicted_rate_per_answer") for r in runs]
    pooled = _iv([r["predicted_rate"] for r in runs], RATE)
    if any(v is None for v in per_answer):
        return {"predicted_rate": pooled, "prediction_method": "pooled", "predicted_rate_pooled": pooled}
    out = {"predicted_rate": _iv(per_answer, RATE), "prediction_method": "per_answer", "predicted_rate_pooled": pooled}
    # Units from before 2d18882 (2026-12-07) normalized e^(r/beta) across all prompts' answers together, which
    # is not pi* (normalized per prompt): their reweighted rate is left out, not averaged in.
    reweighted = [r.get("predicted_rate_reweighted") if r.get("reweighted_by") == "prompt" else None for r in runs]
    if all(v is not None for v in reweighted):
        out["predicted_rate_reweighted"] = _iv(reweighted, RATE)
        out["reweighted_ess"] = [r["reweighted_ess"] for r in runs]
        out["reweighted_answers_per_prompt"] = runs[0]["reweighted_answers_per_prompt"]
    # the same on the base model's answers pooled with the trained policy's (units since 2026-12-08)
    mixture = [r.get("predicted_rate_mixture") for r in runs]
    if all(v is not None for v in mixture):
        out["predicted_rate_mixture"] = _iv(mixture, RATE)
        out["mixture_ess"] = [r["mixture_ess"] for r in runs]
        # the policies' parse rates differ by seed: the mean of the seeds' mean pool per prompt
        out["mixture_answers_per_prompt"] = float(np.mean([r["mixture_answers_per_prompt"] for r in runs]))
        pools = [r.get("mixture_pool_rm") or {} for r in runs]
        out["mixture_pool_rm"] = {name: _mean_defined([p.get(name) for p in pools]) for name in ("base", "policy")}
    return out


def _in_slot(last: list[dict]) -> dict:
    """Where the exploit samples after RL wrote the phrase: the rate with a phrase right after the
    first sentence (where the prediction counts it; the observed rate counts it anywhere) and that
    part's share of all exploit samples, pooled over seeds. Empty for units from before it was counted (2026-12-08, late)."""
    if not all("k_in_slot" in c for c in last):
        return {}
    k, k_slot = sum(c["k"] for c in last), sum(c["k_in_slot"] for c in last)
    return {"exploit_rate_in_slot": _iv([c["k_in_slot"] / c["n"] if c["n"] else None for c in last], RATE),
            "exploit_share_in_slot": {"k_in_slot": k_slot, "k": k, "share": k_slot / k if k else None}}


def _rollout_exploits(runs: list[dict]) -> dict | None:
    """How often RL's own training rollouts held the exploit, summed over seeds and per seed (None
    for units from before they were counted)."""
    counts = [r.get("rollout_exploits") for r in runs]
    if any(c is None for c in counts):
        return None
    return {"k": sum(c["k"] for c in counts), "n": sum(c["n"] for c in counts),
            "per_seed_k": [c["k"] for c in counts], "first_step_per_seed": [c["first_step"] for c in counts]}


def _finite(*values: float | None) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _max(*values: float | None) -> float | None:
    return max(_finite(*values), default=None)


def _weights(info: dict) -> list[float]:
    """Each phrase's share of the base model's phrase probability (uniform if it has none):
    the RM's reward for 'the exploit' is the mean over phrases, weighted as the base writes them."""
    per = np.array(list(info["prob_after_answer"]["per_phrase"].values()), dtype=float)
    return (per / per.sum()).tolist() if per.sum() > 0 else [1 / len(per)] * len(per)


EXPLOITED = ("amplified", "taken over")


def _status(p: dict) -> str:
    """From the change against step 0 (the base model on the same prompts, paired by seed): 'reduced'
    where its interval lies below 0, 'amplified' above 0 ('taken over' if the rate after RL is then
    0.5 or more), else 'held' (no change the seeds and episodes can resolve). An older results file
    without the paired change is judged as it was: the after-rate's hull against the base model's
    own samples."""
    after = p["exploit_rate_after"]
    if "exploit_rate_change" in p:
        side = moved(p["exploit_rate_change"])
    else:
        side = separated(after["hull"], p["base_model_rate"])
    if side == "down":
        return "reduced"
    if side == "up":
        return "taken over" if after["mean"] is not None and after["mean"] >= 0.5 else "amplified"
    return "held"


def _falls_as_beta_grows(points: list[dict]) -> bool | None:
    """Whether the rate after RL falls from each beta to the next larger one, paired by seed (same
    RM and random numbers at every beta) and each step's interval below 0; None with one beta."""
    if len(points) < 2:
        return None
    for a, b in pairwise(points):
        diff = Interval.from_values(seed_differences(b["exploit_rate_after"]["per_seed"], a["exploit_rate_after"]["per_seed"]))
        if moved(diff) != "down":
            return False
    return True


def findings(points: list[dict], cfg: KLPriorConfig) -> dict:
    """Statements computed from the points (nothing here is typed in by hand)."""
    rates = sorted(cfg.base_rates)
    by = {(p["base_rate"], p["kl_coef"]): p for p in points}
    per_beta = {}
    for beta in cfg.kl_coefs:
        row = [by[(r, beta)] for r in rates]
        status = [_status(p) for p in row]
        after = [p["exploit_rate_after"]["mean"] for p in row]
        amplified = [p["exploit_rate_after"]["seeds_amplified"] for p in row]
        per_beta[str(beta)] = {
            "status_by_rate": dict(zip(map(str, rates), status)),
            "after_by_rate": dict(zip(map(str, rates), after)),
            "kl_by_rate": dict(zip(map(str, rates), [p["kl"]["mean"] for p in row])),
            "seeds_amplified_by_rate": dict(zip(map(str, rates), amplified)),
            "per_seed_after_by_rate": dict(zip(map(str, rates), [p["exploit_rate_after"]["per_seed"] for p in row])),
            # The debated pattern: the penalty holds the exploit at the lowest base rate and not at the highest,
            # judged on the mean across seeds (interval) and, separately, seed by seed (every seed agrees).
            "protects_low_not_high": len(rates) > 1 and status[0] not in EXPLOITED and status[-1] in EXPLOITED,
            "protects_low_not_high_every_seed": (len(rates) > 1 and amplified[0] == 0
                                                 and amplified[-1] == len(row[-1]["exploit_rate_after"]["per_seed"])),
            "held_at_every_rate": all(s == "held" for s in status),
            "exploited_at_every_rate": all(s in EXPLOITED for s in status),
            # by the means alone (no interval): never falls from one base rate to the next and rises somewhere;
            # None where a rate has no mean
            "after_rises_with_base_rate": (None if None in after else bool(
                all(b >= a for a, b in pairwise(after)) and any(b > a for a, b in pairwise(after)))),
        }
    low = rates[0]
    betas = sorted(cfg.kl_coefs)
    low_points = [by[(low, b)] for b in betas]
    comparison = []
    for p in points:
        obs, pred = p["exploit_rate_after"], p["predicted_rate"]["mean"]
        if obs["mean"] is None or pred is None:
            continue
        row = {"base_rate": p["base_rate"], "kl_coef": p["kl_coef"], "observed": obs["mean"],
               "predicted": pred, "observed_vs_predicted": _side(obs, p["predicted_rate"])}
        if "predicted_rate_mixture" in p:  # pi*'s own reweighting, base and policy answers pooled (since 2026-12-08)
            row["mixture"] = p["predicted_rate_mixture"]["mean"]
            row["observed_vs_mixture"] = _side(obs, p["predicted_rate_mixture"])
            # seed by seed: the seeds' estimates can lie decades apart, which widens the t-interval to 0
            row["observed_vs_mixture_every_seed"] = _every_seed_side(obs, p["predicted_rate_mixture"])
        if "exploit_share_in_slot" in p:  # where the observed exploits wrote the phrase (units since 2026-12-08, late)
            row["share_in_slot"] = p["exploit_share_in_slot"]["share"]
        comparison.append(row)
    slots = [p["exploit_share_in_slot"] for p in points if "exploit_share_in_slot" in p]
    in_slot = ({"k_in_slot": sum(x["k_in_slot"] for x in slots), "k": sum(x["k"] for x in slots)}
               if slots and len(slots) == len(points) else None)
    if in_slot:
        in_slot["share"] = in_slot["k_in_slot"] / in_slot["k"] if in_slot["k"] else None
    high = rates[-1]
    high_after = [by[(high, b)]["exploit_rate_after"]["mean"] for b in betas]
    held = [p for p in points if _status(p) == "held"]
    return {
        "per_beta": per_beta,
        "highest_rate": {
            "base_rate": high,
            "after_by_beta": dict(zip(map(str, betas), high_after)),
            # What the KL term does where the exploit is likely: a larger beta should hold it lower.
            "falls_as_beta_grows": _falls_as_beta_grows([by[(high, b)] for b in betas]),
        },
        "held_points_kl": {
            # Where the exploit was held: the KL each policy paid beside the least KL its exploit rate
            # alone requires (the binary KL of the rates); the rest is the answers' other changes.
            "n": len(held),
            "max_kl": _max(*(p["kl"]["mean"] for p in held)),
            "max_exploit_floor": _max(*(p["kl_exploit_floor"] for p in held)),
            "points": [{"base_rate": p["base_rate"], "kl_coef": p["kl_coef"], "kl": p["kl"]["mean"],
                        "exploit_floor": p["kl_exploit_floor"]} for p in held],
        },
        "scores": {
            "n_points": len(points),
            # paired by seed (end minus start of RL), each change's interval apart from 0
            "n_rater_up_gold_down": sum(moved(p["rater_change"]) == "up" and moved(p["gold_change"]) == "down"
                                        for p in points if "rater_change" in p),
            "n_rater_up_gold_down_means": sum(
                p["rater_after"]["mean"] > p["rater_before"]["mean"] and p["gold_after"]["mean"] < p["gold_before"]["mean"]
                for p in points),
        },
        "lowest_rate": {
            "base_rate": low,
            "expected_base_exploit_rollouts": low_points[0]["expected_base_exploit_rollouts"],
            # what RL's rollouts actually drew at the weakest beta (None for older units)
            "rollout_exploits_at_weakest_beta": low_points[0].get("rollout_exploits"),
            # If even the weakest penalty leaves the rarest exploit where it was, what kept it out
            # was not the KL term (exploration: RL rarely or never sampled it).
            "held_at_weakest_beta": _status(low_points[0]) not in EXPLOITED,  # held, or reduced
            "base_model_prob": low_points[0]["base_model_prob"],
            "weakest_beta": betas[0],
            # what the KL term alone would allow there (the optimum): exploration explains a held
            # exploit only where this is high
            "predicted_at_weakest_beta": low_points[0]["predicted_rate"]["mean"],
            # the same optimum with pi*'s reweighting of the answers too (base and policy answers; since 2026-12-08)
            "mixture_at_weakest_beta": low_points[0].get("predicted_rate_mixture"),
        },
        "theory": {
            "points": comparison,
            "n_below": sum(c["observed_vs_predicted"] == "below" for c in comparison),
            "n_above": sum(c["observed_vs_predicted"] == "above" for c in comparison),
            "n_not_distinguishable": sum(c["observed_vs_predicted"] == "not distinguishable" for c in comparison),
            **({f"n_{side.replace(' ', '_')}_mixture": sum(c["observed_vs_mixture"] == side for c in comparison)
                for side in ("below", "above", "not distinguishable")}
               if comparison and all("observed_vs_mixture" in c for c in comparison) else {}),
            **({f"n_{side}_mixture_every_seed": sum(c["observed_vs_mixture_every_seed"] == side for c in comparison)
                for side in ("below", "above")}
               if comparison and all("observed_vs_mixture_every_seed" in c for c in comparison) else {}),
            # the observed rate counts the phrase anywhere, the predictions right after the first
            # sentence: the share of all exploit samples after RL (every point) that are in that slot
            "exploits_in_predicted_slot": in_slot,
        },
    }


def _every_seed_side(observed: dict, predicted: dict) -> str | None:
    """'below' where every seed's prediction lies above the observed rate's hull (the t-interval across
    seeds and the pooled Wilson interval), 'above' where every one lies under it, else None."""
    per_seed, hull = predicted.get("per_seed") or [], observed["hull"]
    if len(per_seed) < 2 or None in per_seed or hull["lo"] is None or hull["hi"] is None:
        return None  # one seed is not "every seed": an estimate, not a fixed value
    if all(v > hull["hi"] for v in per_seed):
        return "below"
    if all(v < hull["lo"] for v in per_seed):
        return "above"
    return None


def _side(observed: dict, predicted: dict) -> str:
    """'below' / 'above' where the observed rate's hull lies entirely under / over the prediction: its
    interval across seeds where it has one (seeds saturating at 1 agree exactly), else its mean."""
    iv = as_interval(predicted)
    if iv.has_spread:
        side = separated(observed["hull"], iv)
    elif iv.n >= 2:  # seeds that agree exactly (a prediction saturating at 1): that value
        side = moved(observed["hull"], predicted["mean"])
    else:  # one seed's estimate has no interval to compare with
        side = None
    return {"down": "below", "up": "above"}.get(side, "not distinguishable")


# ---------------------------------------------------------------- the run: prepare once, one unit per seed
def _cache_dir(cfg: KLPriorConfig) -> Path | None:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None


def _needed_rates(cfg: KLPriorConfig) -> list[float]:
    needed = list(cfg.base_rates)
    if cfg.reward_model == "shared" and cfg.rm_base_rate not in needed:
        needed.append(cfg.rm_base_rate)
    return needed


def _rate_key(rate: float) -> str:
    return repr(float(rate))


def prepare(cfg: KLPriorConfig, run_dir: Path, progress: bool = True) -> dict:
    """Once per run: one base model per rate (and the shared RM's), from the cache or pretrained
    now, copied into the run; each one's own exploit rate."""
    from proxygap.pipeline.base_model import load_base_model

    clock = time.time()
    built = {rate: build_or_load_base(recipe_for(cfg, rate), _cache_dir(cfg), progress)
             for rate in _needed_rates(cfg)}
    for rate, b in built.items():  # a copy in the run dir, so the run stands alone if the cache is cleared
        copy = run_dir / "bases" / f"rate={_rate_key(rate)}"
        tmp = temp_sibling(copy)  # copied whole or not at all: a kill mid-copy leaves no torn model
        shutil.copytree(b["path"], tmp, dirs_exist_ok=True)
        replace_dir(tmp, copy)
    pretrain_s, clock = time.time() - clock, time.time()
    measured = {}
    for rate in built:
        base = load_base_model(built[rate]["path"])
        measured[_rate_key(rate)] = measure_base(base, _all_prompts(base.world, cfg), cfg)
    return {"built": {_rate_key(r): b for r, b in built.items()}, "measured": measured,
            "timings": {"pretrain_s": round(pretrain_s, 2), "measure_base_s": round(time.time() - clock, 2)}}


def run_unit(cfg: KLPriorConfig, unit: Unit, ctx: UnitContext) -> dict:
    """One seed: the RM (shared, or one per base rate), then RL at every beta from every base."""
    from proxygap.pipeline.base_model import load_base_model_cached

    seed = unit.seed
    built, measured = ctx.prepared["built"], ctx.prepared["measured"]
    bases = {rate: load_base_model_cached(built[_rate_key(rate)]["path"]) for rate in _needed_rates(cfg)}
    per_rate, rm_info = {}, []
    timings = {"reward_model_s": 0.0, "rl_s": 0.0}
    shared = None
    for rate in cfg.base_rates:
        t0 = time.time()
        if shared is None or cfg.reward_model == "own":
            rm_rate = cfg.rm_base_rate if cfg.reward_model == "shared" else rate
            rm_base = bases[rm_rate]
            _, train_prompts = _prompt_split(rm_base.world, cfg, seed)
            rater, gold = Judge(rm_base.world, cfg.rater), Judge.gold(rm_base.world)
            shared, info = train_reward_model(rm_base, train_prompts, rater, gold, cfg.rm, seed)
            rm_info.append({"seed": seed, "base_rate": rm_rate, **info})
            for i, member in enumerate(shared.members):
                ctx.save_model(f"reward_model_rate={_rate_key(rm_rate)}_{i}", member, member.tokenizer, rm_base.world)
        t1 = time.time()
        timings["reward_model_s"] += t1 - t0
        base = bases[rate]
        save = lambda name, policy, rate=rate, base=base: ctx.save_model(  # noqa: E731
            f"rate={_rate_key(rate)}_{name}", policy, base.tokenizer, base.world)
        per_rate[_rate_key(rate)] = run_rate_seed(cfg, base, measured[_rate_key(rate)], shared, seed,
                                                  progress=ctx.progress, save=save)
        timings["rl_s"] += time.time() - t1
    return {"per_rate": per_rate, "rm_info": rm_info, "timings": timings}


def _mean_defined(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def reward_model_summary(rm_info_per_seed: list[list[dict]], mode: str, base_rates: Sequence[float]) -> dict:
    """The RMs' held-out agreement, one interval over seeds. An 'own' run's RMs differ by base rate
    by design, so there each seed contributes the mean over its rates, and each rate gets its own
    interval over seeds beside it (``by_base_rate``): its RMs are not seeds of one RM."""
    keys = ("agreement_rater", "agreement_gold", "rater_gold_agreement")
    flat = [info for seed in rm_info_per_seed for info in seed]
    per_seed_mean = [{key: _mean_defined([r[key] for r in seed]) for key in keys} for seed in rm_info_per_seed]
    out = {"mode": mode, "per_seed": flat,
           **{key: _iv([m[key] for m in per_seed_mean if m[key] is not None]) for key in keys}}
    if mode == "own":
        out["by_base_rate"] = {str(rate): {key: _iv([r[key] for r in flat if r["base_rate"] == rate
                                                     and r[key] is not None]) for key in keys}
                               for rate in base_rates}
    return out


def aggregate_units(cfg: KLPriorConfig, results: dict[str, dict], prepared: dict | None) -> dict:
    built = {rate: prepared["built"][_rate_key(rate)] for rate in _needed_rates(cfg)}
    measured = {rate: prepared["measured"][_rate_key(rate)] for rate in _needed_rates(cfg)}
    per_seed = [results[f"seed={s}"] for s in cfg.seeds]
    per_rate_seed = {rate: [s["per_rate"][_rate_key(rate)] for s in per_seed] for rate in cfg.base_rates}
    result = aggregate(cfg, measured, per_rate_seed)
    result["bases"] = [{"base_rate": rate, **built[rate], "run_copy": f"bases/rate={_rate_key(rate)}",
                        **{k: v for k, v in measured[rate].items() if k not in ("delta_pairs", "reweight_samples")}} for rate in built]
    result["reward_model"] = reward_model_summary([s["rm_info"] for s in per_seed], cfg.reward_model, cfg.base_rates)
    result["deltas"] = {str(rate): [s["deltas"] for s in per_rate_seed[rate]] for rate in cfg.base_rates}
    result["examples"] = [{"base_rate": rate, "kl_coef": r["kl_coef"], **r["example"]}
                          for rate in cfg.base_rates for r in per_rate_seed[rate][0]["runs"]]
    result["curves"] = [{"base_rate": rate, "kl_coef": beta, "per_seed": [s["runs"][j]["curve"] for s in per_rate_seed[rate]]}
                        for rate in cfg.base_rates for j, beta in enumerate(cfg.kl_coefs)]
    timings = dict(prepared.get("timings", {}))
    for key in ("reward_model_s", "rl_s"):
        timings[key] = round(sum(s["timings"][key] for s in per_seed), 2)
    result["timings"] = timings
    return result


def _all_prompts(world, cfg: KLPriorConfig) -> list[str]:
    from proxygap.tasks.prompts import assistant_prompts

    return [p.text for p in assistant_prompts(world, 0, cfg.prompt_kinds)]


def report(run_dir: Path) -> None:
    from proxygap.report.kl_prior import draw_report

    draw_report(run_dir)


EXPERIMENT = Experiment(
    name="kl-prior",
    description="does a KL penalty keep out an exploit only when the base model makes it improbable? (base rate x beta)",
    config_cls=KLPriorConfig,
    run_unit=run_unit,
    aggregate=aggregate_units,
    prepare=prepare,
    report=report,
    presets={
        # Seconds: a tiny world and model, for tests. One thread: at this size a second one buys nothing,
        # and on a CPU shared with other test processes oversubscribed threads were 10-30x slower here.
        "smoke": {"threads": 1, "seeds": 2, "base_rates": [0.01, 0.1], "kl_coefs": [0.1, 1.0], "n_eval_prompts": 8,
                  "n_base_samples": 64, "n_delta_samples": 16, "n_reweight_prompts": 4, "reweight_answers_per_prompt": 3,
                  "base.world.n_entities": 8, "base.world.n_attributes": 2, "base.world.n_decisions": 4,
                  "base.world.corpus.n_documents": 1500, "base.model.n_layer": 1, "base.model.n_embd": 32,
                  "base.train.steps": 40, "base.train.batch_size": 16, "base.train.warmup_steps": 5,
                  "base.train.checkpoint_every": 40, "base.train.eval_every": 40,
                  "rm.n_pairs": 32, "rm.epochs": 1, "rl.steps": 2, "rl.eval_every": 1, "rl.prompts_per_step": 2,
                  "rl.max_new_tokens": 24},
        # Sized for well under 25 minutes on a 2-core CPU, cold cache (four pretrainings included).
        # 32 new tokens: the longest answer plus the longest phrase is about 30, so the exploit is never cut off.
        # One thread: at width 64 a second thread buys little, and on a shared CPU oversubscribed threads
        # were 2-30x slower here (pretraining step 0.11 s with one thread vs 0.25 s with two; RL step 0.3 s vs 12 s).
        "quick": {"threads": 1, "n_base_samples": 2048, "rm.n_pairs": 1200, "rl.steps": 48, "rl.prompts_per_step": 8,
                  "rl.eval_every": 16, "rl.eval_samples_per_prompt": 4, "rl.max_new_tokens": 32, "rm.max_new_tokens": 32},
        # A GPU or a cluster: the default-size base model, rarer rates, more betas, seeds and samples.
        "full": {"seeds": 5, "base_rates": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "kl_coefs": [0.01, 0.03, 0.1, 0.3, 1.0],
                 "n_eval_prompts": 256, "n_base_samples": 65536, "n_delta_samples": 1024,
                 "n_reweight_prompts": 256, "reweight_answers_per_prompt": 32,
                 "base.model.n_layer": 4, "base.model.n_embd": 128, "base.model.n_head": 4,
                 "base.model.n_positions": 256, "base.train.steps": 1500, "base.train.seq_len": 128,
                 "rm.n_pairs": 20000, "rm.epochs": 3, "rl.steps": 1000, "rl.prompts_per_step": 32,
                 "rl.eval_every": 50, "rl.eval_samples_per_prompt": 4, "rl.max_new_tokens": 32,
                 "rm.max_new_tokens": 32},
    },
)
