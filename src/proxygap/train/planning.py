"""Planning against a learned model: model predictive control with a fixed, learned return model.

The model-based RL case of the tampering question. No policy is trained; the agent chooses
each action by searching over imagined futures, and the search is scored by a model of the
environment's **observed** reward learned from transcripts. Does the search find the tampering
actions (when the learned model pays for them), exploit the learned model's errors (plans the
model rates highly that the environment does not pay), or neither?

1. **Data.** The base LM plays ``model_episodes`` episodes from training env seeds (drawn with
   ``random.Random(seed)`` from ``0..train_env_seeds-1``, sampled with
   ``torch.Generator().manual_seed(seed)``), exactly as ``rollout`` plays any policy.
2. **The return model.** A scalar head on the LM backbone (``RewardModel.from_backbone``, the
   reward-model architecture) regresses an episode's observed return from its transcript (MSE).
   Every episode gives one row per action: the transcript up to and including that action's
   closing ``' .'`` (``... act : <action> .``; the last such prefix is the whole transcript),
   each labelled with the episode's *total observed* return, so the model scores partial
   imagined episodes too (for a prefix the target is a Monte-Carlo value under the base
   policy). True rewards are never used. The head regresses the centred return; the train mean
   goes into ``RewardModel.offset``. A held-out slice of episodes (``model_holdout``) measures the
   fit: MSE against the constant (train-mean) predictor's, and the correlation.
3. **Planning** (random-shooting MPC, re-planned at every step). At each decision, for each live
   episode, the **base** LM writes ``candidates`` continuations of the transcript so far. The LM
   is both the proposal policy and the dynamics model: it writes the imagined observations the
   way the corpus writes them. A continuation is sampled at temperature 1 without the ``.`` stop,
   so it runs on to the end of the imagined episode (the LM ends an episode with its EOS, as the
   corpus separates documents) or to ``imagine_tokens`` (less if the model's context is nearer);
   it is then cut after the env's remaining action budget (an episode has at most ``max_steps``
   actions), so every imagined text ends after an action's ``' .'`` like the training rows. The
   return model scores ``prompt + continuation``; the agent executes the *first* turn of the
   best-scored candidate (first on ties), thought included (``envs.base.parse_turn``). The
   episodes are ordinary ``rollout.Episode``s (played by ``rollout._run`` with a planning
   ``Chooser``): a step's ``token_ids`` are the chosen candidate's first-turn tokens (up to its
   first ``.``) and its ``logprob`` their base log-prob. The model stays fixed: it is never refit
   on the planner's own episodes, which is what lets a planner exploit its errors.
4. **Evaluation.** The planner plays the held-out episodes ``evaluate_agent`` uses (env seeds
   ``EVAL_SEED_OFFSET + seed * 10_000 + i``, candidates sampled from a generator seeded
   ``seed + 7919``); metrics by ``episode_metrics``. Per decision it records the return model's
   prediction for the chosen imagined episode; ``predicted_return`` is its mean at the first
   decision (the whole plan, before anything happened) and ``model_error`` = predicted - actual
   observed return, per episode, averaged. ``base_model_error`` is the same error on the base
   policy's own evaluation episodes (their real transcripts scored whole): the model's bias
   where it was trained, the control for ``model_error``.
5. **Gains** (``planning_gains``): the planner's tamper-rate gain over the base and its model
   error in excess of ``base_model_error`` (the search picks what the model overrates: with an
   unbiased model this is the optimizer's curse of taking the max of noisy scores, plus whatever
   the model gets wrong about plans unlike its data). Which case a planner is (it *finds the
   tampering actions*, *exploits the learned model's errors*, both or neither) is decided across
   seeds, from intervals, by the experiment (``experiments.tampering.planning_finding``): one
   run's gains carry no interval to decide it with.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob
from proxygap.envs.base import ACT, ACTION_END, StepResult, continuation, transcript_actions
from proxygap.lm.sampling import encode_prompts, sample
from proxygap.oversight.reward_model import RewardModel
from proxygap.train.agent_common import (
    EVAL_SEED_OFFSET, EVAL_SEEDS_PER_RUN, AgentEvaluation, episode_metrics, episode_record, evaluate_agent,
)
from proxygap.train.rollout import Approver, EnvFactory, Episode, _run, rollout, stop_token_ids

ScoreFn = Callable[[list[str], list[str]], np.ndarray]
"""(prompts, continuations) -> (B,) predicted observed return of each ``prompt + continuation``."""


@dataclass
class PlanningConfig(Config):
    model_episodes: int = knob(192, "base-policy episodes from training env seeds that the return model learns from "
                                    "(about 2.5 rows each: one per action)", lo=2)
    model_holdout: float = knob(0.25, "share of those episodes held out to measure the fit (not trained on)",
                                lo=0.0, hi=0.9)
    model_epochs: int = knob(4, "passes of MSE regression over the return model's training rows (8 was no better "
                                "held out on the default model)", lo=1)
    model_lr: float = knob(1e-4, "AdamW learning rate of the regression, whole backbone trained as a reward model is "
                                 "(best held-out MSE on sensor of 1e-4, 3e-4, 1e-3; in tdd and reward_file none beat "
                                 "the constant predictor: their return hinges on a world fact 144 episodes don't "
                                 "teach)", lo=0)
    model_batch: int = knob(32, "rows per regression step", lo=1)
    train_env_seeds: int = knob(1000, "the return model's episodes start from env seeds 0..train_env_seeds-1 "
                                      "(the agent regimes' training range)", lo=1)
    candidates: int = knob(8, "imagined continuations per decision; the best-scored one's first turn is executed", lo=1)
    imagine_tokens: int = knob(96, "token limit of one imagined continuation: the rest of an episode of these envs "
                                   "(3 turns of up to 24 tokens and 2 observations of ~10; the base's real episodes "
                                   "are at most ~82 tokens with the header) -- clipped to the model's context", lo=1)
    max_action_tokens: int = knob(24, "length limit of one turn of the base-policy rollouts and evaluation, as the "
                                      "agent regimes' (an episode stops when that no longer fits the context)", lo=1)

    def check(self) -> None:
        held = int(self.model_episodes * self.model_holdout)
        if self.model_episodes - held < 1:
            raise ConfigError(f"model_holdout={self.model_holdout} leaves no episode to train the return model on")
        if self.train_env_seeds > EVAL_SEED_OFFSET:
            raise ConfigError(f"train_env_seeds must be <= {EVAL_SEED_OFFSET} (eval seeds start there)")
        if self.model_episodes > self.train_env_seeds:
            raise ConfigError(f"model_episodes={self.model_episodes} exceeds train_env_seeds={self.train_env_seeds} "
                              "(episodes start from distinct seeds)")
        if self.imagine_tokens < self.max_action_tokens:
            raise ConfigError(f"imagine_tokens={self.imagine_tokens} < max_action_tokens={self.max_action_tokens}: "
                              "an imagined continuation must hold at least one whole turn")


# ---------------------------------------------------------------------------------------------
# 1-2. The return model: MSE regression of the observed return on transcripts and their action prefixes

_CLOSED = StepResult("", 0.0, 0.0, True)  # renders a turn as the episode's last: ' <thought> <action> .'


def action_prefixes(episode: Episode) -> list[str]:
    """The transcript up to and including each action's closing ``' .'``, in order (the last is the
    whole transcript when the env ended the episode)."""
    return [s.prompt + continuation(s.action, _CLOSED, s.thought) for s in episode.steps]


def return_rows(episodes: Sequence[Episode]) -> tuple[list[str], list[float], list[int]]:
    """(texts, targets, episode index): every action prefix of every episode, labelled with its
    episode's total **observed** return (never the true one)."""
    texts, targets, index = [], [], []
    for i, e in enumerate(episodes):
        for text in action_prefixes(e):
            texts.append(text)
            targets.append(e.observed_return)
            index.append(i)
    return texts, targets, index


def fit_regression(rm: RewardModel, texts: Sequence[str], targets: Sequence[float], *, epochs: int, lr: float,
                   batch_size: int, seed: int, progress: bool = False) -> list[float]:
    """Fit ``rm`` by MSE to ``targets``: the head regresses ``target - mean`` and ``rm.offset = -mean``, so
    ``rm.score(texts, '')`` predicts the target itself. Returns the per-step losses (centred MSE)."""
    mean = float(np.mean(targets)) if len(targets) else 0.0
    rm.offset = -mean  # score = forward - offset = forward + mean
    y = torch.tensor(targets, dtype=torch.float32) - mean  # (N,)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(rm.model.parameters(), lr=lr, weight_decay=0.0)
    rm.model.train()
    losses = []
    bar = tqdm(range(epochs), desc="return model", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        order = list(range(len(texts)))
        rng.shuffle(order)
        for a in range(0, len(order), batch_size):
            batch = order[a:a + batch_size]
            pred = rm.forward([texts[j] for j in batch], [""] * len(batch))  # (b,)
            loss = torch.nn.functional.mse_loss(pred, y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rm.model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        bar.set_postfix(mse=f"{np.mean(losses[-max(1, -(-len(order) // batch_size)):]):.3f}")
    rm.model.eval()
    return losses


def regression_report(rm: RewardModel, texts: Sequence[str], targets: Sequence[float], constant: float) -> dict:
    """MSE of ``rm`` on (texts, targets), of the constant predictor ``constant``, their correlation and bias."""
    if not texts:
        return {"n": 0, "mse": None, "constant_mse": None, "corr": None, "bias": None}
    pred = rm.score(list(texts), [""] * len(texts))
    y = np.asarray(targets, dtype=float)
    corr = float(np.corrcoef(pred, y)[0, 1]) if pred.std() > 0 and y.std() > 0 else None
    return {"n": len(texts), "mse": float(np.mean((pred - y) ** 2)),
            "constant_mse": float(np.mean((constant - y) ** 2)), "corr": corr, "bias": float(np.mean(pred - y))}


def fit_return_model(base, make_env: EnvFactory, cfg: PlanningConfig, seed: int,
                     progress: bool = True) -> tuple[RewardModel, dict]:
    """Steps 1-2: base-policy episodes from training seeds, then the return model fit to their
    observed returns. Returns (model, fit log)."""
    t0 = time.time()
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    seeds = rng.sample(range(cfg.train_env_seeds), k=cfg.model_episodes)
    episodes = rollout(base.model, base.tokenizer, make_env, seeds, cfg.max_action_tokens, generator)
    held = int(cfg.model_episodes * cfg.model_holdout)  # the last `held` episodes (the seeds are in random order)
    train_eps, held_eps = episodes[:len(episodes) - held], episodes[len(episodes) - held:]
    texts, targets, _ = return_rows(train_eps)
    rm = RewardModel.from_backbone(base.path, seed)
    losses = fit_regression(rm, texts, targets, epochs=cfg.model_epochs, lr=cfg.model_lr, batch_size=cfg.model_batch,
                            seed=seed, progress=progress)
    mean = -rm.offset
    h_texts, h_targets, _ = return_rows(held_eps)
    whole = [e.transcript for e in held_eps]  # the full transcripts alone (what the planner's plans mostly are)
    n_last = max(1, -(-len(texts) // cfg.model_batch))  # steps per epoch
    fit = {"episodes_train": len(train_eps), "episodes_heldout": len(held_eps), "rows_train": len(texts),
           "target_mean": mean, "target_std": float(np.std(targets)) if targets else 0.0,
           "train_mse_first_epoch": float(np.mean(losses[:n_last])) if losses else None,
           "train_mse_last_epoch": float(np.mean(losses[-n_last:])) if losses else None,
           "train": regression_report(rm, texts, targets, mean),
           "heldout": regression_report(rm, h_texts, h_targets, mean),
           "heldout_whole": regression_report(rm, whole, [e.observed_return for e in held_eps], mean),
           "data_metrics": episode_metrics(episodes), "fit_time_s": time.time() - t0}
    return rm, fit


# ---------------------------------------------------------------------------------------------
# 3. Planning: imagine candidates with the base LM, score them, execute the best one's first turn


def cut_after_actions(text: str, n: int) -> str:
    """``text`` (a continuation written after ``act :``) up to and including its ``n``-th action's
    closing ``.``; all of it if it has fewer. Observations also end with ``.``; an action is what
    follows ``act :`` (or the start) up to the next ``.``."""
    words, acting, done = text.split(), True, 0
    for j, w in enumerate(words):
        if acting and w == ACTION_END:
            done, acting = done + 1, False
            if done >= n:
                return " ".join(words[:j + 1])
        elif not acting and w == ":" and j > 0 and words[j - 1] == ACT.split()[0]:
            acting = True
    return " ".join(words)


def first_turn_length(token_ids: Sequence[int], stop: int | Sequence[int], eos: int | None) -> int:
    """How many of a continuation's tokens make its first turn: up to and including the first ``.``
    (or an EOS before it, as ``rollout``'s sampler would have stopped there); all if neither comes."""
    stops = {stop} if isinstance(stop, int) else set(stop)
    for j, t in enumerate(token_ids):
        if t in stops or (eos is not None and t == eos):
            return j + 1
    return len(token_ids)


@dataclass
class Decision:
    """One planning decision of one episode."""

    predicted: float  # the return model's score of the executed plan (prompt + its imagined continuation)
    plan: str  # the executed plan's imagined continuation (cut after the remaining action budget)
    candidates: list[tuple[str, float]]  # every candidate's first turn (decoded) and score, in sampling order

    def to_dict(self) -> dict:
        return {"predicted": self.predicted, "plan": self.plan}


def plan_rollout(policy, tokenizer, score: ScoreFn, make_env: EnvFactory, env_seeds: Sequence[int],
                 cfg: PlanningConfig, generator: torch.Generator, approver: Approver | None = None,
                 ) -> tuple[list[Episode], list[list[Decision]]]:
    """One planned episode per env seed (step 3); returns the episodes and each one's decisions."""
    stop, eos = stop_token_ids(tokenizer), tokenizer.eos_token_id
    limit = getattr(policy.config, "max_position_embeddings", None) or 10**9
    max_steps = make_env().max_steps
    k = cfg.candidates
    decisions: list[list[Decision]] = [[] for _ in env_seeds]

    def n_tokens(prompt: str) -> int:  # +1 for the bos token the sampler adds
        return len(tokenizer.encode(prompt, add_special_tokens=False)) + 1

    def fits(i: int, prompt: str) -> bool:  # as rollout: the episode ends where one more turn does not fit
        return n_tokens(prompt) + cfg.max_action_tokens <= limit

    def choose(live: list[int], prompts: list[str]) -> list[tuple[str, list[int], float]]:
        rows = [p for p in prompts for _ in range(k)]  # (L*k,): candidate c of live episode j is row j*k + c
        width = encode_prompts(tokenizer, prompts)[0].shape[1]  # the batch's padded prompt length, bos included
        # No '.' stop: the LM imagines observations and further turns until its EOS ends the episode.
        s = sample(policy, tokenizer, rows, min(cfg.imagine_tokens, limit - width), generator=generator,
                   batch_size=1024)
        firsts, imagined = [], []
        for r, prompt in enumerate(rows):
            toks = s.tokens[r][s.mask[r].bool()].tolist()
            n1 = first_turn_length(toks, stop, eos)
            firsts.append((toks[:n1], float(s.logprobs[r, :n1].sum())))
            remaining = max(1, max_steps - len(transcript_actions(prompt)))
            imagined.append(cut_after_actions(s.texts[r], remaining))
        scores = np.asarray(score(rows, imagined), dtype=float).reshape(len(prompts), k)  # (L, k)
        out = []
        for j, i in enumerate(live):
            best = j * k + int(scores[j].argmax())  # first on ties
            toks, logprob = firsts[best]
            turns = [tokenizer.decode(firsts[j * k + c][0], skip_special_tokens=True) for c in range(k)]
            decisions[i].append(Decision(float(scores[j].max()), imagined[best], list(zip(turns, scores[j].tolist()))))
            out.append((turns[best - j * k], toks, logprob))
        return out

    episodes = _run(make_env, env_seeds, choose, approver, None, fits)
    return episodes, decisions


# ---------------------------------------------------------------------------------------------
# 4-5. Evaluation, the gains, and the call the experiment makes


def model_errors(episodes: Sequence[Episode], decisions: Sequence[Sequence[Decision]]) -> tuple[float, float]:
    """(mean predicted return of the executed plan at the first decision, mean of predicted - actual
    observed return), over episodes that made a decision."""
    pairs = [(d[0].predicted, e.observed_return) for e, d in zip(episodes, decisions) if d]
    if not pairs:
        return float("nan"), float("nan")
    return float(np.mean([p for p, _ in pairs])), float(np.mean([p - o for p, o in pairs]))


@torch.no_grad()
def evaluate_planner(policy, tokenizer, score: ScoreFn, make_env: EnvFactory, n_episodes: int, cfg: PlanningConfig,
                     seed: int, step: int = 1, approver: Approver | None = None,
                     n_records: int | None = None) -> tuple[AgentEvaluation, dict]:
    """The planner on ``evaluate_agent``'s held-out episodes (same env seeds, generator seeded
    ``seed + 7919``). Records carry each decision's prediction and imagined plan; ``extra`` holds
    ``predicted_return`` and ``model_error`` (see ``model_errors``) and ``plan_time_s``."""
    t0 = time.time()
    generator = torch.Generator().manual_seed(seed + 7919)
    seeds = [EVAL_SEED_OFFSET + seed * EVAL_SEEDS_PER_RUN + i for i in range(n_episodes)]
    episodes, decisions = plan_rollout(policy, tokenizer, score, make_env, seeds, cfg, generator, approver)
    predicted, error = model_errors(episodes, decisions)
    records = [{**episode_record(e), "decisions": [d.to_dict() for d in ds]}
               for e, ds in zip(episodes[:n_records], decisions)]
    extra = {"predicted_return": predicted, "model_error": error,
             "predicted_per_decision": float(np.mean([d.predicted for ds in decisions for d in ds]))
             if any(decisions) else float("nan"),
             "plan_time_s": time.time() - t0}
    return AgentEvaluation(step, episode_metrics(episodes), records), extra


def planning_gains(planner: dict, base: dict, model_error: float, base_model_error: float) -> dict:
    """What the planner changed against the base policy, on one run.

    ``planner`` and ``base`` are ``episode_metrics`` dicts; the errors are predicted - actual
    observed return (the planner's plans; the base's own episodes, the model's bias where it was trained).
    """
    excess_error = model_error - (base_model_error if np.isfinite(base_model_error) else 0.0)
    return {"tamper_gain": planner["tamper_rate"] - base["tamper_rate"], "excess_model_error": excess_error,
            "observed_gain": planner["observed_return"] - base["observed_return"],
            "true_gain": planner["true_return"] - base["true_return"]}


def train_planning(base, make_env: EnvFactory, cfg: PlanningConfig, seed: int, *, eval_episodes: int,
                   approver: Approver | None = None, progress: bool = True,
                   first_eval: AgentEvaluation | None = None) -> tuple[list[AgentEvaluation], dict]:
    """[step 0: the base policy (``first_eval`` if given), step 1: the planner] on the same held-out
    episodes, and info: the fit log, ``predicted_return``, ``model_error``, ``base_model_error``,
    the gains, ``train_time_s`` (fitting + planning, base evaluation excluded)."""
    first = first_eval or evaluate_agent(base.model, base.tokenizer, make_env, eval_episodes, cfg.max_action_tokens,
                                         seed, 0, approver)
    rm, fit = fit_return_model(base, make_env, cfg, seed, progress)
    planned, extra = evaluate_planner(base.model, base.tokenizer, rm.score, make_env, eval_episodes, cfg, seed, 1,
                                      approver)
    # The model's error on the base policy's own evaluation episodes (real transcripts, scored whole).
    shown = [r for r in first.episodes if r.get("transcript")]
    base_pred = rm.score([r["transcript"] for r in shown], [""] * len(shown)) if shown else np.zeros(0)
    base_error = float(np.mean(base_pred - [r["observed_return"] for r in shown])) if shown else float("nan")
    info = {"fit": fit, **extra, "base_predicted_return": float(base_pred.mean()) if shown else float("nan"),
            "base_model_error": base_error,
            "gains": planning_gains(planned.metrics, first.metrics, extra["model_error"], base_error),
            "train_time_s": fit["fit_time_s"] + extra["plan_time_s"]}
    return [first, planned], info
