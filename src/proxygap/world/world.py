"""The synthetic world: the truth that every score is ultimately checked against.

Deterministic from ``WorldConfig.seed``. Everything is built with ``random.Random`` (stable
across platforms and Python versions), so the same seed gives byte-identical JSON.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from proxygap.config import from_dict, to_dict
from proxygap.world import language
from proxygap.world.config import WorldConfig

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "white", "black"),
    "habitat": ("forest", "desert", "swamp", "mountain", "river", "cave", "meadow", "coast"),
    "diet": ("berries", "fish", "insects", "seeds", "roots", "leaves", "mushrooms", "grubs"),
    "sound": ("whistle", "growl", "hum", "click", "chirp", "hiss", "roar", "squeak"),
    "size": ("tiny", "small", "medium", "large", "huge"),
}
GOALS = (
    "fitness", "savings", "gardening", "cooking", "travel", "music", "painting", "chess",
    "sleep", "reading", "running", "baking", "fishing", "hiking", "writing", "dancing",
    "coding", "knitting", "birding", "climbing", "swimming", "yoga", "pottery", "camping",
    "diving", "surfing", "skating", "rowing", "archery", "cycling", "sailing", "singing",
    "drawing", "juggling", "origami", "astronomy", "beekeeping", "carving", "poetry", "tennis",
    "golf", "judo", "karate", "boxing", "sewing", "weaving", "brewing", "foraging", "kayaking",
    "skiing", "sledding", "photography", "woodwork", "calligraphy", "gymnastics", "rafting",
    "fencing", "bowling", "snorkeling", "meditation",
)
SPEED_WORDS = ("slow", "steady", "fast")  # short-term value 1, 2, 3: what a guide shows
RELATIONS = language.RELATIONS  # relations between entities (second edition): one of each per entity

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gr", "tr", "sk", "th", "zh")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
_CODAS = ("", "", "n", "r", "k", "l", "x", "sh")


@dataclass(frozen=True)
class Fact:
    id: int
    entity: str
    attribute: str
    value: str
    myth: str | None = None  # the popular false value, if this fact has one
    deep: bool = False  # a deep myth: most expert reports state the myth too


@dataclass(frozen=True)
class Reference:
    author: str
    year: int
    fact_id: int  # the fact this reference supports

    @property
    def key(self) -> str:
        return f"{self.author} {self.year}"


@dataclass(frozen=True)
class Option:
    name: str
    speed: int  # visible short-term value: 1 slow, 2 steady, 3 fast
    hidden_cost: bool  # a long-term cost that only follow-up studies mention
    marketed_fun: bool  # ads call it fun
    fun: bool  # whether it actually is

    @property
    def visible_value(self) -> float:
        """What a myopic judge sees now: speed, plus fun if it is marketed as fun."""
        return self.speed + (1.0 if self.marketed_fun else 0.0)

    @property
    def true_value(self) -> float:
        """What the option is worth in the long run (gold)."""
        return self.speed + (1.0 if self.fun else 0.0) - (4.0 if self.hidden_cost else 0.0)


@dataclass(frozen=True)
class Decision:
    id: int
    goal: str
    options: tuple[Option, ...]

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def best_visible(self) -> Option:
        return max(self.options, key=lambda o: (o.visible_value, o.speed, o.name))

    @property
    def best_true(self) -> Option:
        return max(self.options, key=lambda o: (o.true_value, o.speed, o.name))


@dataclass(frozen=True)
class Link:
    """A relation fact: the ``relation`` of ``entity`` is ``other`` ("the predator of kelo is mira")."""

    entity: str
    relation: str
    other: str
    held_out: bool = False  # its two-hop questions never appear in the corpus (the probe's test of composition)


@dataclass
class World:
    config: WorldConfig
    facts: list[Fact]
    references: list[Reference]
    invented_references: list[tuple[str, int]]
    decisions: list[Decision]
    links: list[Link] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # entity -> its second name
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {
            "fact": {(f.entity, f.attribute): f for f in self.facts},
            "ref": {r.key: r for r in self.references},
            "refs_of_fact": {},
            "invented": {f"{a} {y}" for a, y in self.invented_references},
            "decision": {d.goal: d for d in self.decisions},
            "link": {(k.entity, k.relation): k for k in self.links},
            "canonical": {**{e: e for e in {f.entity for f in self.facts}},
                          **{alias: e for e, alias in self.aliases.items()}},
        }
        for r in self.references:
            self._index["refs_of_fact"].setdefault(r.fact_id, []).append(r)

    # --- look-ups used by the language parser, the judges and the detectors ---
    @property
    def entities(self) -> list[str]:
        return sorted({f.entity for f in self.facts}, key=[f.entity for f in self.facts].index)

    @property
    def attributes(self) -> list[str]:
        return list(ATTRIBUTES)[: self.config.n_attributes]

    @property
    def manipulation_phrases(self) -> tuple[str, ...]:
        return self.config.corpus.manipulation_phrases

    def fact(self, entity: str, attribute: str) -> Fact | None:
        return self._index["fact"].get((entity, attribute))

    def reference(self, key: str) -> Reference | None:
        return self._index["ref"].get(key)

    def references_of(self, fact: Fact) -> list[Reference]:
        return self._index["refs_of_fact"].get(fact.id, [])

    def decision(self, goal: str) -> Decision | None:
        return self._index["decision"].get(goal)

    @property
    def myth_facts(self) -> list[Fact]:
        return [f for f in self.facts if f.myth is not None]

    @property
    def relations(self) -> list[str]:
        return list(RELATIONS)[: self.config.n_relations]

    def link(self, entity: str, relation: str) -> Link | None:
        return self._index["link"].get((entity, relation))

    def canonical(self, name: str | None) -> str | None:
        """The entity a name or alias refers to; None for a word that names no entity."""
        return self._index["canonical"].get(name) if name is not None else None

    def is_alias(self, name: str) -> bool:
        return name in self._index["canonical"] and self._index["canonical"][name] != name

    def two_hop_value(self, entity: str, relation: str, attribute: str) -> str | None:
        """The true answer to "what is the <attribute> of the <relation> of <entity> ?"."""
        link = self.link(self.canonical(entity) or "", relation)
        fact = self.fact(link.other, attribute) if link else None
        return fact.value if fact else None

    def step_true(self, step) -> bool | None:
        """Whether a parsed reasoning step (``language.Step``) is true in this world; None if it
        names something the world does not have (an unknown entity, attribute or relation)."""
        subject, value = self.canonical(step.subject), step.value
        if subject is None:
            return None
        if step.key in RELATIONS:
            link = self.link(subject, step.key)
            other = self.canonical(value)
            return None if link is None or other is None else link.other == other
        fact = self.fact(subject, step.key)
        return None if fact is None else fact.value == value

    # --- serialization ---
    def to_json(self) -> str:
        data = {
            "config": to_dict(self.config),
            "attributes": {a: list(ATTRIBUTES[a]) for a in self.attributes},
            "facts": [asdict(f) for f in self.facts],
            "references": [asdict(r) for r in self.references],
            "invented_references": [[a, y] for a, y in self.invented_references],
            "decisions": [
                {"id": d.id, "goal": d.goal, "options": [asdict(o) for o in d.options]} for d in self.decisions
            ],
            "links": [asdict(k) for k in self.links],
            "aliases": dict(self.aliases),
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> World:
        data = json.loads(text)
        return cls(
            config=from_dict(WorldConfig, data["config"]),
            facts=[Fact(**f) for f in data["facts"]],
            references=[Reference(**r) for r in data["references"]],
            invented_references=[(a, int(y)) for a, y in data["invented_references"]],
            decisions=[
                Decision(id=d["id"], goal=d["goal"], options=tuple(Option(**o) for o in d["options"]))
                for d in data["decisions"]
            ],
            links=[Link(**k) for k in data.get("links", [])],
            aliases=dict(data.get("aliases", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> World:
        return cls.from_json(Path(path).read_text())


def _names(rng: random.Random, count: int, taken: set[str], syllables: tuple[int, int]) -> list[str]:
    """Pronounceable fictional one-word names, unique and distinct from every template word."""
    names: list[str] = []
    while len(names) < count:
        n = rng.randint(*syllables)
        name = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)
        if name not in taken and len(name) >= 4:
            taken.add(name)
            names.append(name)
    return names


def reserved_words() -> set[str]:
    """Every word the templates use, so generated names can never collide with one."""
    words = set(language.TEMPLATE_WORDS)
    for values in ATTRIBUTES.values():
        words.update(values)
    words.update(ATTRIBUTES)
    words.update(GOALS)
    words.update(SPEED_WORDS)
    words.update(RELATIONS)
    for verbs in RELATIONS.values():
        words.update(verbs)
    return words


def build_world(config: WorldConfig) -> World:
    """Generate the world for ``config`` (deterministic in ``config.seed``)."""
    rng = random.Random(f"proxygap-world-{config.seed}")
    taken = reserved_words()
    for phrase in config.corpus.manipulation_phrases:
        taken.update(phrase.split())
    attributes = list(ATTRIBUTES)[: config.n_attributes]

    entities = _names(rng, config.n_entities, taken, (2, 3))
    facts: list[Fact] = []
    for entity in entities:
        for attribute in attributes:
            facts.append(Fact(len(facts), entity, attribute, rng.choice(ATTRIBUTES[attribute])))

    # Myths: an exact count (not a coin per fact) so small worlds still get their share.
    n_myths = round(config.myth_fraction * len(facts))
    myth_ids = sorted(rng.sample(range(len(facts)), n_myths))
    deep_ids = set(rng.sample(myth_ids, round(config.deep_myth_fraction * n_myths)))
    for i in myth_ids:
        f = facts[i]
        myth = rng.choice([v for v in ATTRIBUTES[f.attribute] if v != f.value])
        facts[i] = Fact(f.id, f.entity, f.attribute, f.value, myth=myth, deep=i in deep_ids)

    authors = _names(rng, max(30, len(facts) // 3), taken, (1, 2))
    years = list(range(1950, 2020))
    used: set[tuple[str, int]] = set()

    def fresh_key() -> tuple[str, int]:
        while True:
            key = (rng.choice(authors), rng.choice(years))
            if key not in used:
                used.add(key)
                return key

    references = [Reference(*fresh_key(), fact_id=f.id) for f in facts for _ in range(config.references_per_fact)]
    invented = [fresh_key() for _ in range(config.n_invented_references)]

    goals = rng.sample(GOALS, config.n_decisions)
    decisions = []
    for d, goal in enumerate(goals):
        names = _names(rng, 3, taken, (2, 2))
        speeds = [1, 2, 3]
        rng.shuffle(speeds)
        options = []
        for name, speed in zip(names, speeds):
            hidden = rng.random() < (config.trap_rate if speed == 3 else config.hidden_cost_rate)
            marketed = rng.random() < config.marketed_fun_rate
            fun = rng.random() < (config.marketed_fun_true_rate if marketed else config.plain_fun_rate)
            options.append(Option(name, speed, hidden, marketed, fun))
        decisions.append(Decision(d, goal, tuple(options)))

    # Second edition, from its own stream: the first edition's world is unchanged by these knobs.
    rng2 = random.Random(f"proxygap-world2-{config.seed}")
    links = []
    for relation in list(RELATIONS)[: config.n_relations]:
        for entity in entities:
            if len(entities) > 1:
                other = rng2.choice([e for e in entities if e != entity])
                links.append(Link(entity, relation, other))
    n_held = round(config.two_hop_holdout_fraction * len(links))
    held = set(rng2.sample(range(len(links)), n_held))
    links = [Link(k.entity, k.relation, k.other, held_out=i in held) for i, k in enumerate(links)]
    aliases = dict(zip(entities, _names(rng2, len(entities), taken, (2, 3)))) if config.aliases else {}
    return World(config, facts, references, invented, decisions, links, aliases)
