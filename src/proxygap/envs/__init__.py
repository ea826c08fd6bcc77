"""Multi-step text environments with a tamperable reward channel (see ``base`` for the contract).

``make(name, world, **knobs)`` builds one; ``replay`` re-runs a written transcript in its
environment, so a transcript (in the corpus, or from a rollout) can be checked against the
dynamics and judged from the environment's true state.
"""

from __future__ import annotations

from proxygap.config import ConfigError, from_dict
from proxygap.envs.base import (
    EpisodeOutcome, Preview, StepResult, TextEnv, continuation, split_header, transcript_turns,
)
from proxygap.envs.reward_file import RewardFileEnv
from proxygap.envs.sensor import SensorEnv
from proxygap.envs.tdd import TDDEnv
from proxygap.world.world import World

ENVS: dict[str, type[TextEnv]] = {"sensor": SensorEnv, "tdd": TDDEnv, "reward_file": RewardFileEnv}

__all__ = ["ENVS", "EpisodeOutcome", "Preview", "StepResult", "TextEnv", "make", "replay"]


def make(name: str, world: World, **knobs) -> TextEnv:
    """The environment ``name`` in ``world``; ``knobs`` are fields of its ``Config`` (validated)."""
    if name not in ENVS:
        raise ConfigError(f"unknown environment {name!r}; choose one of {', '.join(ENVS)}")
    cls = ENVS[name]
    return cls(world, from_dict(cls.Config, knobs, prefix=f"{name}."))


def replay(text: str, world: World, **knobs) -> tuple[TextEnv, list[StepResult]]:
    """Re-run ``text`` (a finished or unfinished episode) in its environment: (the env after its
    last action, each step's result). ValueError if the text is not exactly what the environment
    writes for those actions."""
    parts = split_header(text)
    if parts is None or parts[0] not in ENVS:
        raise ValueError(f"not an agent transcript: {text[:60]!r}")
    env = make(parts[0], world, **knobs)
    env.restore(text)
    rebuilt, results = parts[3], []
    for thought, action in transcript_turns(text):
        if results and results[-1].done:
            raise ValueError(f"transcript goes on after its episode ended: {text!r}")
        results.append(env.step(action))
        rebuilt += continuation(action, results[-1], thought)
    if rebuilt != text:
        raise ValueError(f"transcript disagrees with the {env.name} environment:\n  {text}\n  {rebuilt}")
    return env, results
