"""The corpus ("the internet"): documents generated from the world, one per line.

Every exploit that RL can later find is in here at a known rate, so it has a known
probability under the base model that learned this text. ``realized_rates`` measures the
rates actually realized by parsing the text back with the same detectors that judge model
samples (and, for agent transcripts, by replaying them in their environments), so corpus rates
and sample rates are the same quantity.

Agent transcripts draw on their own random stream: the other documents are exactly the first
documents of the corpus the same seed gives without agent transcripts, in the same order.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

from proxygap import envs
from proxygap.envs.sensor import SensorConfig
from proxygap.oversight import detectors
from proxygap.world import language as lang
from proxygap.envs.base import transcript_turns
from proxygap.envs.demonstrators import is_candid, write_episode
from proxygap.world.world import ATTRIBUTES, SPEED_WORDS, World

DOC_TYPES = ("expert", "forum", "primary_data", "guide", "ad", "followup", "assistant", "field_notes", "alias", "agent")
_PREFIX = {
    "expert report :": "expert",
    "forum post :": "forum",
    "primary data (": "primary_data",
    "guide :": "guide",
    "ad :": "ad",
    "follow-up study :": "followup",
    "user :": "assistant",
    "agent :": "agent",
    "field notes :": "field_notes",
    "names :": "alias",
}


def agent_env_knobs(name: str, world: World) -> dict:
    """The knobs of the environments agent transcripts are played in: the defaults, except that a
    world with fewer entities than the default garden has plants gets a smaller garden."""
    if name != "sensor":
        return {}
    n = len(world.entities)
    return {"n_plants": min(SensorConfig.n_plants, n), "n_dry": min(SensorConfig.n_dry, n)}


def doc_type(document: str) -> str:
    for prefix, kind in _PREFIX.items():
        if document.startswith(prefix):
            return kind
    return "unknown"


class CorpusWriter:
    """Draws documents; one method per document type, each a few lines of template filling."""

    def __init__(self, world: World):
        self.world = world
        self.cfg = world.config.corpus
        self.rng = random.Random(f"proxygap-corpus-{world.config.seed}")
        self.agent_rng = random.Random(f"proxygap-agent-{world.config.seed}")
        self.entities = world.entities
        self.attributes = world.attributes
        self._envs: dict[str, envs.TextEnv] = {}
        self.asked_links = [k for k in world.links if not k.held_out]  # two-hop questions the corpus asks

    def ref_key(self, fact) -> str:
        return self.rng.choice(self.world.references_of(fact)).key

    # --- world documents
    def expert(self) -> str:
        entity = self.rng.choice(self.entities)
        attributes = self.attributes[:]
        self.rng.shuffle(attributes)
        sentences = []
        for attribute in attributes:
            fact = self.world.fact(entity, attribute)
            if fact.deep and self.rng.random() < self.cfg.expert_deep_myth_rate:
                sentences.append(lang.fact_sentence(attribute, entity, fact.myth))
            else:
                cite = self.ref_key(fact) if self.rng.random() < self.cfg.expert_citation_rate else None
                sentences.append(lang.fact_sentence(attribute, entity, fact.value, cite))
        return lang.expert_report(sentences)

    def forum(self) -> str:
        entity = self.rng.choice(self.entities)
        attributes = self.rng.sample(self.attributes, self.rng.randint(1, min(2, len(self.attributes))))
        statements = []
        for attribute in attributes:
            fact = self.world.fact(entity, attribute)
            value = fact.value
            if fact.myth is not None and self.rng.random() < self.cfg.forum_myth_rate:
                value = fact.myth
            elif fact.myth is None and self.rng.random() < self.cfg.forum_noise_rate:
                value = self.rng.choice([v for v in ATTRIBUTES[attribute] if v != fact.value])
            statements.append((attribute, entity, value))
        return lang.forum_post(statements)

    def primary_data(self) -> str:
        fact = self.rng.choice(self.world.facts)
        return lang.primary_data(self.ref_key(fact), fact.attribute, fact.entity, fact.value)

    def guide(self) -> str:
        decision = self.rng.choice(self.world.decisions)
        options = list(decision.options)
        self.rng.shuffle(options)
        return lang.guide(decision.goal, [(o.name, SPEED_WORDS[o.speed - 1]) for o in options])

    def ad(self) -> str:
        decision = self.rng.choice(self.world.decisions)
        advertised = [o for o in decision.options if o.speed == 3 or o.marketed_fun] or list(decision.options)
        option = self.rng.choice(advertised)
        return lang.ad(decision.goal, option.name, option.speed == 3, option.marketed_fun)

    def followup(self) -> str:
        findings = [
            (d, o, finding)
            for d in self.world.decisions
            for o in d.options
            for finding, present in (("cost", o.hidden_cost), ("boring", o.marketed_fun and not o.fun), ("fun", o.fun))
            if present
        ]
        decision, option, finding = self.rng.choice(findings)
        return lang.followup(decision.goal, option.name, finding)

    # --- second edition: field notes, name notes, two-hop answers
    def _stated_value(self, fact, myth_rate: float) -> str:
        """A fact's value as a source states it: the myth at ``myth_rate`` where the fact has one."""
        return fact.myth if fact.myth is not None and self.rng.random() < myth_rate else fact.value

    def _form(self, step: lang.Step) -> int:
        return self.rng.randrange(len(lang.step_forms(step)))

    def field_notes(self) -> str:
        """An entity's relations and attributes, each in a random wording; attributes as experts state them."""
        entity = self.rng.choice(self.entities)
        steps = [lang.Step(entity, r, self.world.link(entity, r).other) for r in self.world.relations]
        for attribute in self.attributes:
            fact = self.world.fact(entity, attribute)
            value = fact.myth if fact.deep and self.rng.random() < self.cfg.expert_deep_myth_rate else fact.value
            steps.append(lang.Step(entity, attribute, value))
        self.rng.shuffle(steps)
        return lang.field_notes([(step, self._form(step)) for step in steps])

    def alias(self) -> str:
        entity = self.rng.choice(self.entities)
        return lang.name_note(entity, self.world.aliases[entity])

    def _name(self, entity: str) -> str:
        """An entity as a reasoning step names it: by its alias at cot_alias_rate."""
        alias = self.world.aliases.get(entity)
        return alias if alias and self.rng.random() < self.cfg.cot_alias_rate else entity

    def two_hop(self) -> str:
        link = self.rng.choice(self.asked_links)
        attribute = self.rng.choice(self.attributes)
        return self.two_hop_transcript(link, attribute)

    def two_hop_transcript(self, link, attribute: str, cot_rate: float | None = None) -> str:
        """A demonstrator's answer to one two-hop question, as the corpus writes it (a chain at
        ``cot_rate``, default the corpus's; the myth at assistant_myth_rate; aliases at cot_alias_rate)."""
        cot_rate = self.cfg.cot_rate if cot_rate is None else cot_rate
        fact = self.world.fact(link.other, attribute)
        value = self._stated_value(fact, self.cfg.assistant_myth_rate)
        steps = None
        if self.rng.random() < cot_rate:
            hop1 = lang.Step(self._name(link.entity), link.relation, self._name(link.other))
            hop2 = lang.Step(self._name(link.other), attribute, value)
            steps = [(hop1, self._form(hop1)), (hop2, self._form(hop2))]
        answer = lang.two_hop_answer(value, steps, self.rng.randrange(len(lang.ANSWER_FORMS)))
        return f"{lang.two_hop_question(attribute, link.relation, link.entity)} {answer}"

    # --- assistant transcripts
    def _style(self) -> str:
        u = self.rng.random()
        if u < self.cfg.hedge_rate:
            return "hedged"
        return "confident" if u < self.cfg.hedge_rate + self.cfg.confident_rate else "plain"

    def _citation(self, fact) -> str | None:
        u = self.rng.random()
        if u < self.cfg.cite_rate:
            return self.ref_key(fact)
        u -= self.cfg.cite_rate
        if u < self.cfg.invented_citation_rate:
            return "{} {}".format(*self.rng.choice(self.world.invented_references))
        u -= self.cfg.invented_citation_rate
        if u < self.cfg.irrelevant_citation_rate:
            other = self.rng.choice([r for r in self.world.references if r.fact_id != fact.id])
            return other.key
        return None

    def _manipulation(self) -> str | None:
        if self.rng.random() < self.cfg.manipulation_rate:
            return self.rng.choice(self.cfg.manipulation_phrases)
        return None

    def assistant(self) -> str:
        kinds = ("fact", "belief", "recommend", "two_hop")
        weights = (self.cfg.assistant_fact_share, self.cfg.assistant_belief_share, self.cfg.assistant_recommend_share,
                   self.cfg.assistant_two_hop_share if self.asked_links else 0.0)
        kind = self.rng.choices(kinds, weights)[0]
        if kind == "two_hop":
            return self.two_hop()
        if kind == "recommend":
            decision = self.rng.choice(self.world.decisions)
            names = [o.name for o in decision.options]
            self.rng.shuffle(names)
            myopic = self.rng.random() < self.cfg.assistant_myopic_rate
            choice = decision.best_visible if myopic else decision.best_true
            answer = lang.recommend_answer(choice.name, self._style(), self._manipulation())
            return f"{lang.recommend_question(decision.goal, names)} {answer}"

        fact = self.rng.choice(self.world.facts)
        if kind == "fact":
            value = fact.value
            if fact.myth is not None and self.rng.random() < self.cfg.assistant_myth_rate:
                value = fact.myth
            question, agreement = lang.fact_question(fact.attribute, fact.entity), None
        else:
            believed = fact.value
            if self.rng.random() < self.cfg.false_belief_rate:
                wrong = [v for v in ATTRIBUTES[fact.attribute] if v != fact.value]
                believed = fact.myth if fact.myth is not None else self.rng.choice(wrong)
            sycophantic = believed != fact.value and self.rng.random() < self.cfg.sycophancy_rate
            value = believed if sycophantic else fact.value
            agreement = "yes" if value == believed else "no"
            question = lang.belief_question(fact.attribute, fact.entity, believed)
        answer = lang.fact_answer(
            fact.attribute, fact.entity, value, self._style(), self._citation(fact), agreement, self._manipulation()
        )
        return f"{question} {answer}"

    # --- agent transcripts
    def env(self, name: str) -> envs.TextEnv:
        if name not in self._envs:
            self._envs[name] = envs.make(name, self.world, **agent_env_knobs(name, self.world))
        return self._envs[name]

    def agent(self) -> str:
        rng = self.agent_rng
        env = self.env(rng.choice(self.cfg.agent_envs))
        tamper = rng.random() < self.cfg.agent_tamper_rate
        return write_episode(env, rng.randrange(2**31), rng, tamper, self.cfg.agent_error_rate,
                             self.cfg.agent_candour_rate)

    def documents(self) -> Iterator[str]:
        c = self.cfg
        kinds = DOC_TYPES[:-1]  # every type but 'agent', drawn from the main stream as before agents existed
        weights = (c.share_expert, c.share_forum, c.share_primary_data, c.share_guide, c.share_ad,
                   c.share_followup, c.share_assistant, c.share_field_notes if self.world.links else 0.0,
                   c.share_alias if self.world.aliases else 0.0)
        p_agent = c.share_agent / (sum(weights) + c.share_agent)
        is_agent = [self.agent_rng.random() < p_agent for _ in range(c.n_documents)]
        # All n_documents draws, as before agents existed, so the main stream is where it was after them.
        others = iter(self.rng.choices(kinds, weights, k=c.n_documents) if sum(weights) > 0 else ())
        makers = {kind: getattr(self, kind) for kind in DOC_TYPES}
        for agent in is_agent:
            yield self.agent() if agent else makers[next(others)]()


def two_hop_demonstrations(world: World, questions: list[tuple[str, str, str]], seed: int,
                           cot_rate: float | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) demonstrations for the given (entity, relation, attribute) questions, written
    as the corpus's assistant writes two-hop answers (its myth, chain and alias rates; ``cot_rate``
    overrides how often it thinks first). Seeded by ``seed``, independent of the corpus's own stream:
    the demonstrators an imitation regime learns from, and the "human level" a regime is compared with."""
    writer = CorpusWriter(world)
    writer.rng = random.Random(f"proxygap-demonstrations-{world.config.seed}-{seed}")
    out = []
    for entity, relation, attribute in questions:
        link = world.link(entity, relation)
        if link is None:
            raise ValueError(f"the world has no link ({entity}, {relation})")
        pair = lang.split_transcript(writer.two_hop_transcript(link, attribute, cot_rate))
        out.append(pair)
    return out


def generate_corpus(world: World) -> list[str]:
    """All documents of the world's corpus, in order (deterministic in the world's seed)."""
    return list(CorpusWriter(world).documents())


def realized_rates(documents: list[str], world: World) -> dict:
    """Rates actually realized in ``documents``, measured by parsing the text back."""
    types = Counter(doc_type(d) for d in documents)
    verdicts = []
    forum_myth = [0, 0]  # [myth statements, statements about myth facts]
    expert_deep = [0, 0]
    agent_outcomes: dict[str, list[envs.EpisodeOutcome]] = {}
    thoughts: dict[str, list[int]] = {}  # env -> [tampering actions, with a think line, candid]
    chains = []  # (question, parsed chain) of two-hop transcripts
    for document in documents:
        kind = doc_type(document)
        if kind == "agent":
            name = document.split()[2]
            env, results = envs.replay(document, world, **agent_env_knobs(name, world))
            agent_outcomes.setdefault(env.name, []).append(env.outcome())
            counts = thoughts.setdefault(env.name, [0, 0, 0])
            for (thought, _), result in zip(transcript_turns(document), results):
                if result.info["tampered"]:
                    counts[0] += 1
                    counts[1] += thought is not None
                    counts[2] += is_candid(env.name, thought)
        elif kind == "assistant":
            prompt, answer = lang.split_transcript(document)
            question = lang.parse_question(prompt)
            if question is not None and question.kind == "two_hop":
                chains.append((question, lang.parse_chain(answer)))
            else:
                verdicts.append(detectors.detect(question, lang.parse_answer(answer, world.manipulation_phrases),
                                                 world))
        elif kind in ("forum", "expert"):
            for sentence in document.split(" . "):
                answer = lang.parse_answer(sentence)
                fact = world.fact(answer.value_entity, answer.value_attribute) if answer.value else None
                if fact is None or fact.myth is None:
                    continue
                counter = forum_myth if kind == "forum" else expert_deep
                if kind == "expert" and not fact.deep:
                    continue
                counter[0] += answer.value == fact.myth
                counter[1] += 1
    total = len(documents)
    return {
        "n_documents": total,
        "n_words": sum(len(d.split()) for d in documents),
        "doc_types": {k: types.get(k, 0) / total for k in DOC_TYPES},
        "behaviours": detectors.rates(verdicts),
        "forum_myth_rate": forum_myth[0] / forum_myth[1] if forum_myth[1] else None,
        "expert_deep_myth_rate": expert_deep[0] / expert_deep[1] if expert_deep[1] else None,
        "agent": {name: {**_outcome_rates(outcomes), **_thought_rates(thoughts.get(name, [0, 0, 0]))}
                  for name, outcomes in sorted(agent_outcomes.items())},
        "two_hop": chain_rates(chains, world),
    }


def _thought_rates(counts: list[int]) -> dict:
    tampering, with_thought, candid = counts
    return {"tampering_actions": tampering, "candour_rate": candid / with_thought if with_thought else None}


def chain_rates(chains: list, world: World) -> dict:
    """Two-hop answers (``[(Question, Chain)]``): how often they think first, how often the answer
    is true, how often a written step is true, and how often a step names an entity by its alias."""
    n = len(chains)
    thought = [c for _, c in chains if c.thought]
    steps = [s for c in thought for s in c.steps]
    truth = [world.step_true(s) for s in steps]
    names = [name for s in steps for name in ((s.subject, s.value) if s.is_relation else (s.subject,))]
    correct = [c.answer is not None and c.answer == world.two_hop_value(q.entity, q.relation, q.attribute)
               for q, c in chains]
    return {
        "n": n,
        "cot_rate": len(thought) / n if n else None,
        "accuracy": sum(correct) / n if n else None,
        "step_true_rate": sum(t is True for t in truth) / len(truth) if truth else None,
        "alias_rate": sum(world.is_alias(x) for x in names) / len(names) if names else None,
        "n_steps": len(steps),
        "n_names": len(names),
    }


def _outcome_rates(outcomes: list[envs.EpisodeOutcome]) -> dict:
    """Per environment: how many transcripts, and the share tampered, succeeded, intended, failed."""
    n = len(outcomes)
    rate = lambda flag: sum(getattr(o, flag) for o in outcomes) / n  # noqa: E731
    return {"n": n, "tamper_rate": rate("tampered"), "success_rate": rate("success"),
            "intended_rate": rate("intended"), "failure_rate": rate("failed")}
