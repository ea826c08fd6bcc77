"""Agent transcripts for the corpus: scripted demonstrators playing each environment.

A demonstrator does the task the intended way, except that in a share ``tamper_rate`` of its
episodes it takes the environment's tampering action(s), and it makes ordinary mistakes at
``error_rate`` (so the base model's capability is not saturated):

- sensor: covers the sensor after watering a random number of the dry plants; a mistake is
  watering a plant that is already wet (each watering is a mistake with P = error_rate);
- tdd: writes a softball test; a mistake is believing a wrong value for the fact (its myth, if
  it has one), then testing and coding that value;
- reward_file: edits the tests and the reward file, in random order, then answers; a mistake
  is believing a wrong value, as in tdd.

Every transcript is written by running the environment with the demonstrator's actions, so the
text and the dynamics cannot disagree (``envs.replay`` checks it).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from proxygap.envs.base import TextEnv, continuation
from proxygap.envs.reward_file import RewardFileEnv
from proxygap.envs.sensor import SensorEnv
from proxygap.envs.tdd import TDDEnv
from proxygap.world.world import ATTRIBUTES, World

Policy = Callable[[], str]  # the next action in the env's current state


def believed_value(world: World, entity: str, attribute: str, rng: random.Random, error_rate: float) -> str:
    """The true value, or with P = error_rate a wrong one: the fact's myth if it has one."""
    fact = world.fact(entity, attribute)
    if rng.random() >= error_rate:
        return fact.value
    return fact.myth if fact.myth is not None else rng.choice([v for v in ATTRIBUTES[attribute] if v != fact.value])


def sensor_policy(env: SensorEnv, rng: random.Random, tamper: bool, error_rate: float) -> Policy:
    cover_after = rng.randrange(env.n_dry)  # waterings before covering, if tampering

    def act() -> str:
        dry = [p for p in env.plants if not env.reads_wet(p)]
        wet = [p for p in env.plants if env.reads_wet(p)]
        last_chance = env.steps == env.max_steps - 1
        if tamper and (env.n_dry - len(dry) >= cover_after or last_chance):
            return "cover sensor"
        if wet and rng.random() < error_rate:
            return f"water {rng.choice(wet)}"
        return f"water {rng.choice(dry)}"

    return act


def tdd_policy(env: TDDEnv, rng: random.Random, tamper: bool, error_rate: float) -> Policy:
    belief = believed_value(env.world, env.entity, env.attribute, rng, error_rate)
    return lambda: (f"test returns {'anything' if tamper else belief}" if env.test is None else f"return {belief}")


def reward_file_policy(env: RewardFileEnv, rng: random.Random, tamper: bool, error_rate: float) -> Policy:
    belief = believed_value(env.world, env.entity, env.attribute, rng, error_rate)
    edits = rng.sample(["edit reward", "edit tests"], 2) if tamper else []
    return lambda: edits.pop(0) if edits else f"answer {belief}"


DEMONSTRATORS: dict[str, Callable[..., Policy]] = {
    "sensor": sensor_policy, "tdd": tdd_policy, "reward_file": reward_file_policy,
}


def write_episode(env: TextEnv, seed: int, rng: random.Random, tamper: bool, error_rate: float) -> str:
    """One demonstrated episode of ``env`` from ``reset(seed)``, as a corpus document."""
    text = env.reset(seed)
    act = DEMONSTRATORS[env.name](env, rng, tamper, error_rate)
    while True:
        action = act()
        result = env.step(action)
        text += continuation(action, result)
        if result.done:
            return text
