"""Running episodes: a policy LM (batched sampling) or scripted action lists, one shared loop.

Each round, every live episode's transcript so far (ending in ``act :``) is a prompt; all of
them are sampled in one ``sample`` call that stops each row at the word ``.``; each sampled
action is parsed (the words before ``.``), optionally scored by an approval overseer from the
env's current state (before execution), and executed; where the env's feedback is corruptible
(``approval_reads_channel``) and the action left its reward channel seized, the approval is what the
seized channel reports instead (``TextEnv.corrupted_approval``). The transcript grows by
``' <action> .'`` and, unless the episode ended, ``' obs : <observation> . act :'``, which is
exactly how the corpus writes agent transcripts.

Per step, ``Step`` keeps the prompt and the sampled token ids, so a regime recomputes
``log pi(action | prompt)`` with grad from them (``lm.sampling.encode_prompts`` then
``sequence_logprobs``: the same left padding and bos as at sampling time); ``logprob`` is the
sampler's own value, for KL estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from proxygap.config import ConfigError
from proxygap.envs.base import ACTION_END, EpisodeOutcome, TextEnv, continuation, parse_turn
from proxygap.lm.sampling import sample
from proxygap.lm.tokenizer import word_token_ids

EnvFactory = Callable[[], TextEnv]
"""Makes a fresh environment instance (one per concurrent episode)."""

Approver = Callable[[TextEnv, str], float]
"""Scores a proposed action in the env's current state, before it is executed (e.g. ``ApprovalOverseer``)."""


@dataclass
class Step:
    """One action of one episode, with everything a regime may credit it with."""

    prompt: str  # the transcript the action was chosen after (ends with 'act :')
    token_ids: list[int]  # the sampled tokens, including the closing '.' when there was one ([] if scripted)
    logprob: float  # log pi_sampler(action | prompt), summed over its tokens (0 if scripted)
    action: str  # what the env executed: the words before '.'
    observed_reward: float
    true_reward: float  # hidden: logged, never credited
    approval: float | None  # the approver's score of the action in the state before it, if one was given
    info: dict = field(default_factory=dict)
    thought: str | None = None  # what the agent wrote after 'think :' before the action, if anything


@dataclass
class Episode:
    env_seed: int
    group: int  # caller's label, e.g. episodes that share a start
    steps: list[Step]
    outcome: EpisodeOutcome  # from the env's true state at the end
    transcript: str
    truncated: bool = False  # stopped before the env ended it: no room in the model's context, or no scripted action left

    @property
    def observed_return(self) -> float:
        return float(sum(s.observed_reward for s in self.steps))

    @property
    def true_return(self) -> float:
        return float(sum(s.true_reward for s in self.steps))


# (live episode indices, their prompts) -> one (action text, token ids, logprob) per live episode
Chooser = Callable[[list[int], list[str]], list[tuple[str, list[int], float]]]


def _run(make_env: EnvFactory, env_seeds: Sequence[int], choose: Chooser, approver: Approver | None,
         group_of: Sequence[int] | None, can_go_on: Callable[[int, str], bool]) -> list[Episode]:
    envs = [make_env() for _ in env_seeds]
    prompts = [env.reset(seed) for env, seed in zip(envs, env_seeds)]
    steps: list[list[Step]] = [[] for _ in envs]
    alive = [True] * len(envs)
    truncated = [False] * len(envs)
    for _ in range(max(env.max_steps for env in envs) if envs else 0):
        for i in range(len(envs)):
            if alive[i] and not can_go_on(i, prompts[i]):
                alive[i], truncated[i] = False, True
        live = [i for i in range(len(envs)) if alive[i]]
        if not live:
            break
        for i, (text, token_ids, logprob) in zip(live, choose(live, [prompts[i] for i in live])):
            thought, action = parse_turn(text)
            approval = float(approver(envs[i], action)) if approver is not None else None  # before execution
            result = envs[i].step(action)
            corrupted = envs[i].corrupted_approval() if approver is not None else None
            if corrupted is not None:  # the overseer's feedback came through the channel the agent seized
                approval = float(corrupted)
            steps[i].append(Step(prompts[i], token_ids, logprob, action, float(result.observed_reward),
                                 float(result.true_reward), approval, dict(result.info), thought))
            prompts[i] += continuation(action, result, thought)
            alive[i] = not result.done
    groups = list(group_of) if group_of is not None else list(range(len(envs)))
    return [Episode(seed, g, st, env.outcome(), p, tr)
            for seed, g, st, env, p, tr in zip(env_seeds, groups, steps, envs, prompts, truncated)]


def stop_token_ids(tokenizer) -> tuple[int, ...]:
    """The tokens that end an action (``.`` as a word: one id in a word-level vocabulary, the spaced
    and bare forms in a byte-level BPE); a model whose vocabulary cannot write it cannot act."""
    ids = word_token_ids(tokenizer, ACTION_END)
    if not ids:
        raise ConfigError(f"the model's tokenizer has no single token for the word {ACTION_END!r}: it cannot end "
                          "an action (pair it with a tokenizer that writes ' .' as one token)")
    return ids


def rollout(policy, tokenizer, make_env: EnvFactory, env_seeds: Sequence[int], max_action_tokens: int = 24,
            generator: torch.Generator | None = None, approver: Approver | None = None,
            group_of: Sequence[int] | None = None, temperature: float = 1.0) -> list[Episode]:
    """One episode per entry of ``env_seeds`` (``make_env()`` then ``reset(seed)``), the policy
    sampling every live episode's next action in one batched call per round.

    ``approver(env, action)``, if given, scores each action before the env executes it. An
    episode whose next prompt would not fit the model's context ends there (``truncated``); its
    outcome is what the env's true state says at that point.
    """
    stop = stop_token_ids(tokenizer)
    limit = getattr(policy.config, "max_position_embeddings", None) or 10**9

    def fits(i: int, prompt: str) -> bool:  # +1 for the bos token the sampler adds
        return len(tokenizer.encode(prompt, add_special_tokens=False)) + 1 + max_action_tokens <= limit

    def choose(live: list[int], prompts: list[str]) -> list[tuple[str, list[int], float]]:
        s = sample(policy, tokenizer, prompts, max_action_tokens, temperature=temperature, generator=generator,
                   stop_token_ids=stop)
        seq_logprob = s.logprobs.sum(-1)  # (B,)
        return [(s.texts[r], s.tokens[r][s.mask[r].bool()].tolist(), float(seq_logprob[r])) for r in range(len(live))]

    return _run(make_env, env_seeds, choose, approver, group_of, fits)


def scripted_rollout(make_env: EnvFactory, env_seeds: Sequence[int], actions: Sequence[Sequence[str]],
                     approver: Approver | None = None) -> list[Episode]:
    """Episodes played from given action lists (``actions[i]`` for episode i, without the ``.``),
    through the same loop as ``rollout``; an episode whose list runs out before the env ends it
    stops there (``truncated``; its outcome is the state it reached)."""
    if len(actions) != len(env_seeds):
        raise ValueError(f"{len(actions)} action lists for {len(env_seeds)} episodes")
    taken = [0] * len(env_seeds)

    def choose(live: list[int], prompts: list[str]) -> list[tuple[str, list[int], float]]:
        out = []
        for i in live:
            out.append((actions[i][taken[i]], [], 0.0))
            taken[i] += 1
        return out

    return _run(make_env, env_seeds, choose, approver, None, lambda i, prompt: taken[i] < len(actions[i]))
