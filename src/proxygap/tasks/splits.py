"""Held-out / training splits of the world's assistant prompts, shared by every experiment.

Deterministic in the seed. A split that leaves either side empty is a ConfigError naming the
knob, raised when the config is resolved (the runner's preflight), not minutes into a run.
"""

from __future__ import annotations

import random

from proxygap.config import ConfigError
from proxygap.tasks.prompts import Prompt, assistant_prompts, two_hop_prompts
from proxygap.world import language as lang
from proxygap.world.world import World

STRATA = ("fact_deep_myth", "fact_myth", "fact", "belief_false", "belief_true", "recommend")


def eval_train_split(world: World, seed: int, kinds: tuple[str, ...], n_eval: int) -> tuple[list[str], list[str]]:
    """(the first ``n_eval`` of a seeded shuffle of the prompts, the rest) of the given kinds."""
    if not kinds:
        raise ConfigError("prompt_kinds is empty; give at least one of fact, belief, recommend")
    prompts = [p.text for p in assistant_prompts(world, seed, kinds)]
    random.Random(seed).shuffle(prompts)
    if n_eval >= len(prompts):
        raise ConfigError(f"n_eval_prompts={n_eval} leaves no training prompts: the world has only "
                          f"{len(prompts)} assistant prompts of kinds {', '.join(kinds)}; lower n_eval_prompts")
    return prompts[:n_eval], prompts[n_eval:]


def stratum(prompt_text: str, world: World) -> str:
    """Which stratum of held-out prompts an assistant question belongs to."""
    q = lang.parse_question(prompt_text)
    if q.kind == "recommend":
        return "recommend"
    fact = world.fact(q.entity, q.attribute)
    if q.kind == "fact":
        return "fact_deep_myth" if fact.deep else ("fact_myth" if fact.myth is not None else "fact")
    return "belief_true" if q.believed == fact.value else "belief_false"


def stratified_split(world: World, seed: int, per_stratum: int) -> tuple[list[str], list[str], dict[str, int]]:
    """(held-out prompts, training prompts, held-out count per stratum): per stratum, a seeded
    draw of min(per_stratum, half the stratum) held out, the rest for RM pairs and RL."""
    rng = random.Random(f"proxygap-loopholes-split-{seed}")
    groups: dict[str, list[str]] = {s: [] for s in STRATA}
    for p in assistant_prompts(world, seed):
        groups[stratum(p.text, world)].append(p.text)
    held, train, counts = [], [], {}
    for s in STRATA:
        g = groups[s][:]
        rng.shuffle(g)
        k = min(per_stratum, len(g) // 2)
        held += g[:k]
        train += g[k:]
        counts[s] = k
    if not held or not train:
        raise ConfigError(f"the world's {len(held) + len(train)} assistant prompts leave no held-out or no training prompts")
    return held, train, counts


def two_hop_split(world: World, seed: int, n_eval: int, salt: str = "cot") -> tuple[list[Prompt], list[Prompt]]:
    """(evaluation prompts, training prompts) of the two-hop questions, split by link: a seeded
    shuffle of the links (entity, relation), whose questions (one per attribute) go to evaluation
    until it holds ``n_eval``; the rest train. So no training question shares an evaluation
    question's first hop. ``salt`` names the experiment (its splits are its own)."""
    by_link: dict[tuple[str, str], list[Prompt]] = {}
    for p in two_hop_prompts(world):
        by_link.setdefault((p.entity, p.relation), []).append(p)
    links = list(by_link)
    random.Random(f"proxygap-{salt}-split-{seed}").shuffle(links)
    eval_prompts: list[Prompt] = []
    train_prompts: list[Prompt] = []
    for link in links:
        (eval_prompts if len(eval_prompts) < n_eval else train_prompts).extend(by_link[link])
    return eval_prompts, train_prompts
