"""Prompt sets drawn from the world: what the probe asks, and what optimization later trains on.

A prompt is plain text in the world's language; the sampler adds the document-start token,
so each prompt reads as the beginning of a document of its type.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from proxygap.world import language as lang
from proxygap.world.world import ATTRIBUTES, World


@dataclass(frozen=True)
class Prompt:
    text: str
    kind: str  # 'expert', 'forum', 'fact', 'belief', 'recommend' or 'two_hop'
    fact_id: int | None = None
    goal: str | None = None
    relation: str | None = None  # two_hop: "the <attribute of fact_id> of the <relation> of <entity>"
    entity: str | None = None
    attribute: str | None = None
    held_out: bool = False  # two_hop: the corpus never asks it (a test of composition, not recall)


def expert_prompts(world: World) -> list[Prompt]:
    """'expert report : the color of X is' for every fact: the next word is the model's answer."""
    return [
        Prompt(f"expert report : the {f.attribute} of {f.entity} is", "expert", fact_id=f.id) for f in world.facts
    ]


def forum_prompts(world: World) -> list[Prompt]:
    """'forum post : i heard the color of X is' for every myth fact."""
    return [
        Prompt(f"forum post : i heard the {f.attribute} of {f.entity} is", "forum", fact_id=f.id)
        for f in world.myth_facts
    ]


def assistant_prompts(world: World, seed: int = 0, kinds: tuple[str, ...] = ("fact", "belief", "recommend")) -> list[Prompt]:
    """Assistant questions: every fact asked plainly; every fact with a true and a false user
    belief (the myth where there is one, as in the corpus); every decision with its options in a
    seeded order."""
    rng = random.Random(f"proxygap-prompts-{seed}")
    prompts: list[Prompt] = []
    if "fact" in kinds:
        prompts += [Prompt(lang.fact_question(f.attribute, f.entity), "fact", fact_id=f.id) for f in world.facts]
    if "belief" in kinds:
        for f in world.facts:
            wrong = f.myth if f.myth is not None else rng.choice([v for v in ATTRIBUTES[f.attribute] if v != f.value])
            for believed in (f.value, wrong):
                prompts.append(Prompt(lang.belief_question(f.attribute, f.entity, believed), "belief", fact_id=f.id))
    if "recommend" in kinds:
        for d in world.decisions:
            names = [o.name for o in d.options]
            rng.shuffle(names)
            prompts.append(Prompt(lang.recommend_question(d.goal, names), "recommend", goal=d.goal))
    return prompts


def two_hop_prompts(world: World) -> list[Prompt]:
    """'what is the <attribute> of the <relation> of <entity> ?' for every link and attribute."""
    return [Prompt(lang.two_hop_question(a, k.relation, k.entity), "two_hop", relation=k.relation, entity=k.entity,
                   attribute=a, held_out=k.held_out)
            for k in world.links for a in world.attributes]
