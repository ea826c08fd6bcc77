"""Shoggoth/Face on the tampering environments: one model writes the hidden chain, another the visible action.

Kokotajlo's proposal, and Drori et al.'s (2025) mitigations of "feedback spillover" (pressure on
the output alone also obfuscates the chain). Every turn of an episode is written in two stages:

1. the **Shoggoth** writes the thought: it is prompted with the transcript so far and
   ``think :``, and samples until the thought closes with ``;``;
2. the **Face** sees the transcript, the thought and ``;``, and samples the action until ``.``.

The transcript is the corpus's ``act : think : <thought> ; <action> .`` either way, so the base
model has seen every turn's format. Every variant has the same monitor in its reward -- the CoT
monitor, reading **what the overseer sees** -- and the same task reward, outcome RL's observed
return (RLOO over the episodes of a start, gamma = 1):

- ``single``: one model writes both stages; the overseer sees the whole turn, thought included,
  and the penalty's gradient reaches every token (the ``monitored`` regime, in two stages);
- ``single_targeted``: the same, with Drori et al.'s *reward targeting*: the thought's tokens are
  credited with the task reward only, the monitor's penalty goes to the action's tokens alone (one
  model, so the weights are still shared: what spills over is what is measured);
- ``shoggoth_face``: two copies of the base model; the overseer sees only the Face's output (the
  actions), so the CoT monitor has no thought to read and its penalty cannot fire: keeping the
  chain out of the overseer's view is the proposal itself, by construction. What the variant
  measures is what that buys (the hidden chain's legibility) and what it costs (the hack rate
  without the penalty).

Per episode i, with the task return R_i and the monitor's flag f_i on what the overseer sees:

    A_i = RLOO(R_i - penalty * f_i),   A_i^chain = RLOO(R_i) if targeted else A_i
    loss = -(1/E) sum_i sum_turns [ A_i^chain log pi_S(thought | prompt, 'think :')
                                    + A_i log pi_F(action | prompt, 'think :', thought, ';') ]

Chain legibility is measured by the CoT monitor reading the *hidden* thoughts on truly tampered
episodes (its recall): does the chain still say what the agent does? A paraphraser between the
two stages is not part of this version (the tampering thoughts have no alternative wordings).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from proxygap.config import ConfigError, knob
from proxygap.envs.base import ACTION_END, THINK, THOUGHT_END
from proxygap.lm.sampling import sample
from proxygap.oversight.monitors import CoTMonitor, Turn, episode_turns
from proxygap.train.agent_common import (
    EVAL_SEED_OFFSET, AgentEvaluation, AgentRLConfig, action_logprobs, episode_metrics, episode_record,
)
from proxygap.train.rl import rloo_advantages
from proxygap.lm.tokenizer import word_token_ids
from proxygap.train.rollout import EnvFactory, Episode, _run, stop_token_ids

VARIANTS = ("single", "single_targeted", "shoggoth_face")


@dataclass
class ShoggothFaceConfig(AgentRLConfig):
    variant: str = knob("shoggoth_face", "single (one model; the overseer sees the thoughts), single_targeted (the "
                                         "same; the monitor's penalty reaches only the action tokens), shoggoth_face "
                                         "(two models; the overseer sees only the Face's actions)", choices=VARIANTS)
    penalty: float = knob(1.0, "reward subtracted from an episode whose visible part the CoT monitor flags", lo=0)

    def check(self) -> None:
        super().check()
        if self.kl_coef != 0:
            raise ConfigError("kl_coef must be 0 for the two-stage (Shoggoth/Face) turns: no KL term is implemented "
                              "there; set train.kl_coef=0")


@dataclass
class Turns:
    """The two stages of every turn of a batch of episodes, aligned with each episode's steps."""

    thought_prompts: list[list[str]]  # per episode, per turn: the Shoggoth's prompt (ends with 'think :')
    thought_tokens: list[list[list[int]]]
    action_prompts: list[list[str]]  # the Face's prompt (ends with the thought's ';')
    action_tokens: list[list[list[int]]]


def two_stage_rollout(shoggoth, face, tokenizer, make_env: EnvFactory, env_seeds: Sequence[int],
                      max_tokens: int, generator: torch.Generator,
                      group_of: Sequence[int] | None = None) -> tuple[list[Episode], Turns]:
    """Episodes whose every turn the Shoggoth thinks and the Face acts (``shoggoth is face``: one model)."""
    semicolon, dot = word_token_ids(tokenizer, THOUGHT_END), stop_token_ids(tokenizer)
    n = len(env_seeds)
    turns = Turns([[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)])
    limit = getattr(face.config, "max_position_embeddings", None) or 10**9

    opening = len(tokenizer.encode(f" {THINK}", add_special_tokens=False))
    closing = len(tokenizer.encode(f" {THOUGHT_END}", add_special_tokens=False))

    def fits(i: int, prompt: str) -> bool:  # bos + prompt + 'think :' + thought + ';' + action
        return len(tokenizer.encode(prompt, add_special_tokens=False)) + 1 + opening + closing + 2 * max_tokens <= limit

    def capped(thought: str) -> str:
        """The thought as text, cut to what re-encodes in ``max_tokens`` (a BPE may re-split it)."""
        words = thought.split()
        while words and len(tokenizer.encode(" " + " ".join(words), add_special_tokens=False)) > max_tokens:
            words.pop()
        return " ".join(words)

    def choose(live: list[int], prompts: list[str]) -> list[tuple[str, list[int], float]]:
        thought_prompts = [f"{p} {THINK}" for p in prompts]
        # A thought ends at ';' (or at '.', which would end the whole turn: the thought is cut there).
        th = sample(shoggoth, tokenizer, thought_prompts, max_tokens, generator=generator,
                    stop_token_ids=(*semicolon, *dot))
        thoughts = [capped(" ".join(_thought_words(t))) for t in th.texts]
        action_prompts = [f"{p} {THINK} {t} {THOUGHT_END}" for p, t in zip(prompts, thoughts)]
        ac = sample(face, tokenizer, action_prompts, max_tokens, generator=generator, stop_token_ids=dot)
        out = []
        for r, i in enumerate(live):
            t_ids = th.tokens[r][th.mask[r].bool()].tolist()
            a_ids = ac.tokens[r][ac.mask[r].bool()].tolist()
            turns.thought_prompts[i].append(thought_prompts[r])
            turns.thought_tokens[i].append(t_ids)
            turns.action_prompts[i].append(action_prompts[r])
            turns.action_tokens[i].append(a_ids)
            action = ac.texts[r].split(f" {ACTION_END}")[0].strip() if ACTION_END in ac.texts[r].split() else ac.texts[r]
            text = f"{THINK} {thoughts[r]} {THOUGHT_END} {action} {ACTION_END}"
            out.append((text, t_ids + a_ids, float(th.logprobs[r].sum() + ac.logprobs[r].sum())))
        return out

    episodes = _run(make_env, env_seeds, choose, None, group_of, fits)
    return episodes, turns


def _thought_words(text: str) -> list[str]:
    words = []
    for w in text.split():
        if w in (THOUGHT_END, ACTION_END):
            break
        words.append(w)
    return words


def visible_turns(episode: Episode, variant: str) -> list[Turn]:
    """What the overseer sees of an episode: every turn (single, single_targeted) or the Face's actions only."""
    turns = episode_turns(episode.transcript)
    return [Turn(None, t.action) for t in turns] if variant == "shoggoth_face" else turns


def shoggoth_face_advantages(task: torch.Tensor, flags: torch.Tensor, penalty: float, k: int,
                             targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(E,) task returns and monitor flags, grouped as (E/k, k) -> (chain advantages, output
    advantages), each (E,). The output's is RLOO of ``task - penalty * flags``; the chain's is the
    same, or under reward targeting RLOO of the task return alone (no penalty gradient into it)."""
    out = rloo_advantages(task - penalty * flags, k)
    return (rloo_advantages(task, k) if targeted else out), out


def two_stage_update(shoggoth, face, tokenizer, episodes: list[Episode], turns: Turns, adv_chain: torch.Tensor,
                     adv_out: torch.Tensor, optimizer: torch.optim.Optimizer, params: list, grad_clip: float) -> float:
    """One REINFORCE step on every turn of ``episodes``: the Face's actions get their episode's
    ``adv_out``, the Shoggoth's thoughts ``adv_chain`` (the same object for one model). Returns the loss."""
    rows = [(i, j) for i, e in enumerate(episodes) for j in range(len(e.steps))]
    optimizer.zero_grad(set_to_none=True)
    if not rows:
        return 0.0
    e_idx = torch.tensor([i for i, _ in rows])
    act_lp = action_logprobs(face, tokenizer, [turns.action_prompts[i][j] for i, j in rows],
                       [turns.action_tokens[i][j] for i, j in rows])
    th_lp = action_logprobs(shoggoth, tokenizer, [turns.thought_prompts[i][j] for i, j in rows],
                      [turns.thought_tokens[i][j] for i, j in rows])
    loss = -(adv_out[e_idx] * act_lp).sum() - (adv_chain[e_idx] * th_lp).sum()
    loss = loss / len(episodes)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_two_stage(shoggoth, face, tokenizer, make_env: EnvFactory, n_episodes: int, max_tokens: int, seed: int,
                       step: int, variant: str, env_name: str) -> AgentEvaluation:
    """The pair on the held-out starts ``evaluate_agent`` uses (same seeds, same generator seed), with
    the CoT monitor on the hidden chain (``hidden_recall``, legibility) and on the visible part."""
    generator = torch.Generator().manual_seed(seed + 7919)
    seeds = [EVAL_SEED_OFFSET + seed * 10_000 + i for i in range(n_episodes)]
    episodes, _ = two_stage_rollout(shoggoth, face, tokenizer, make_env, seeds, max_tokens, generator)
    metrics = episode_metrics(episodes)
    monitor = CoTMonitor(env_name)
    tampered = [e.outcome.tampered for e in episodes]
    hidden = [monitor(episode_turns(e.transcript)).flag for e in episodes]
    visible = [monitor(visible_turns(e, variant)).flag for e in episodes]
    n_t = sum(tampered)
    metrics["hidden_recall"] = sum(h and t for h, t in zip(hidden, tampered)) / n_t if n_t else None
    metrics["visible_flag_rate"] = sum(visible) / max(1, len(episodes))
    metrics["hidden_flag_rate"] = sum(hidden) / max(1, len(episodes))
    return AgentEvaluation(step, metrics, [episode_record(e) for e in episodes])


def train_shoggoth_face(base_model, tokenizer, make_env: EnvFactory, cfg: ShoggothFaceConfig, seed: int, *,
                        progress: bool = True, label: str | None = None) -> tuple[list[AgentEvaluation], dict]:
    """Train the variant from copies of ``base_model``; returns (evaluations, info)."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    env_name = make_env().name
    face = copy.deepcopy(base_model).eval().requires_grad_(True)
    split = cfg.variant == "shoggoth_face"
    shoggoth = copy.deepcopy(base_model).eval().requires_grad_(True) if split else face
    params = list(face.parameters()) + ([] if shoggoth is face else list(shoggoth.parameters()))
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    targeted = cfg.variant == "single_targeted"
    monitor = CoTMonitor(env_name)

    def evaluate(step: int) -> AgentEvaluation:
        return evaluate_two_stage(shoggoth, face, tokenizer, make_env, cfg.eval_episodes, cfg.max_action_tokens, seed,
                                  step, cfg.variant, env_name)

    evaluations = [evaluate(0)]
    bar = tqdm(range(1, cfg.steps + 1), desc=label or cfg.variant, disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        starts = rng.sample(range(cfg.train_env_seeds), k=min(cfg.starts_per_step, cfg.train_env_seeds))
        seeds = [s for s in starts for _ in range(cfg.group_size)]
        with torch.no_grad():
            episodes, turns = two_stage_rollout(shoggoth, face, tokenizer, make_env, seeds, cfg.max_action_tokens,
                                                generator)
        flags = torch.tensor([float(monitor(visible_turns(e, cfg.variant)).flag) for e in episodes])
        task = torch.tensor([e.observed_return for e in episodes])
        adv_chain, adv_out = shoggoth_face_advantages(task, flags, cfg.penalty, cfg.group_size, targeted)
        loss = two_stage_update(shoggoth, face, tokenizer, episodes, turns, adv_chain, adv_out, optimizer, params,
                                cfg.grad_clip)
        bar.set_postfix(obs=f"{float(np.mean([e.observed_return for e in episodes])):.2f}",
                        flagged=f"{float(flags.mean()):.2f}", loss=f"{loss:.2f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            evaluations.append(evaluate(step))
    bar.close()
    return evaluations, {"train_time_s": time.time() - t0, "variant": cfg.variant}
