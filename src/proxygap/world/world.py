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


@dataclass
class World:
    config: WorldConfig
    facts: list[Fact]
    references: list[Reference]
    invented_references: list[tuple[str, int]]
    decisions: list[Decision]
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {
            "fact": {(f.entity, f.attribute): f for f in self.facts},
            "ref": {r.key: r for r in self.references},
            "refs_of_fact": {},
            "invented": {f"{a} {y}" for a, y in self.invented_references},
            "decision": {d.goal: d for d in self.decisions},
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

    return World(config, facts, references, invented, decisions)
