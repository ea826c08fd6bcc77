"""World, second edition: relations and two-hop questions, chains of thought in every wording,
aliases, and think lines in agent transcripts, with their base rates realized in the corpus."""

import random

import pytest

from proxygap import envs
from proxygap.config import ConfigError, apply_overrides
from proxygap.corpus import doc_type, generate_corpus, realized_rates
from proxygap.envs.base import parse_turn, transcript_turns
from proxygap.envs.demonstrators import CANDID_THOUGHTS, INNOCUOUS_THOUGHTS, is_candid
from proxygap.world import language as lang
from proxygap.world.config import WorldConfig
from proxygap.world.world import ATTRIBUTES, RELATIONS, World, build_world


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(seed=3))


@pytest.fixture(scope="module")
def corpus(world):
    w = build_world(apply_overrides(world.config, ["corpus.n_documents=12000"]))
    return w, generate_corpus(w)


def _binomial_ok(k: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(k / n - p) <= z * (p * (1 - p) / n) ** 0.5 + 1e-12


def test_second_edition_is_deterministic_and_keeps_the_first_edition(world):
    again = build_world(WorldConfig(seed=3))
    assert again.to_json() == world.to_json()
    assert World.from_json(world.to_json()).to_json() == world.to_json()
    first = build_world(apply_overrides(WorldConfig(seed=3), ["n_relations=0", "aliases=false"]))
    assert first.facts == world.facts and first.decisions == world.decisions  # own random stream
    assert not first.links and not first.aliases


def test_relations_link_every_entity_to_another(world):
    cfg = world.config
    assert len(world.links) == cfg.n_entities * cfg.n_relations
    for link in world.links:
        assert link.other != link.entity and link.other in world.entities
        assert world.link(link.entity, link.relation) is link
    held = sum(k.held_out for k in world.links)
    assert held == round(cfg.two_hop_holdout_fraction * len(world.links))


def test_aliases_are_unique_new_names(world):
    aliases = list(world.aliases.values())
    assert set(world.aliases) == set(world.entities) and len(set(aliases)) == len(aliases)
    assert not set(aliases) & set(world.entities)
    for entity, alias in world.aliases.items():
        assert world.canonical(alias) == entity and world.is_alias(alias) and not world.is_alias(entity)


@pytest.mark.parametrize("is_relation", [True, False])
def test_every_wording_parses_back_to_its_step(world, is_relation):
    rng = random.Random(0)
    forms_seen = set()
    for _ in range(200):
        entity = rng.choice(world.entities)
        if is_relation:
            relation = rng.choice(world.relations)
            step = lang.Step(entity, relation, world.link(entity, relation).other)
        else:
            attribute = rng.choice(world.attributes)
            step = lang.Step(entity, attribute, world.fact(entity, attribute).value)
        forms = lang.step_forms(step)
        assert len(forms) >= 3
        for form in range(len(forms)):
            text = lang.render_step(step, form)
            assert lang.parse_step(text) == step, text
            forms_seen.add(form)
            # the paraphraser: re-render in any other wording, same meaning
            for other in range(len(forms)):
                assert lang.parse_step(lang.render_step(lang.parse_step(text), other)) == step
        assert world.step_true(step) is True
    assert forms_seen == set(range(len(lang.RELATION_FORMS if is_relation else lang.ATTRIBUTE_FORMS)))


def test_steps_with_aliases_and_false_steps(world):
    entity = world.entities[0]
    link = world.link(entity, "predator")
    aliased = lang.Step(world.aliases[entity], "predator", world.aliases[link.other])
    assert world.step_true(aliased) is True
    wrong = next(e for e in world.entities if e not in (link.other, entity))
    assert world.step_true(lang.Step(entity, "predator", wrong)) is False
    fact = world.fact(entity, "color")
    assert world.step_true(lang.Step(entity, "color", next(v for v in ATTRIBUTES["color"] if v != fact.value))) is False
    assert world.step_true(lang.Step("nobody", "color", "red")) is None
    with pytest.raises(ValueError, match="out of range"):
        lang.render_step(lang.Step(entity, "color", "red"), 3)


def test_two_hop_question_answer_and_chain_parse_in_every_form(world):
    link = world.links[0]
    q = lang.parse_question(lang.two_hop_question("color", link.relation, link.entity))
    assert (q.kind, q.entity, q.relation, q.attribute) == ("two_hop", link.entity, link.relation, "color")
    value = world.two_hop_value(link.entity, link.relation, "color")
    assert value == world.fact(link.other, "color").value
    hop1, hop2 = lang.Step(link.entity, link.relation, link.other), lang.Step(link.other, "color", value)
    for f1 in range(len(lang.RELATION_FORMS)):
        for f2 in range(len(lang.ATTRIBUTE_FORMS)):
            for fa in range(len(lang.ANSWER_FORMS)):
                chain = lang.parse_chain(lang.two_hop_answer(value, [(hop1, f1), (hop2, f2)], fa))
                assert chain.thought and chain.steps == [hop1, hop2] and chain.answer == value and not chain.unparsed
    bare = lang.parse_chain(lang.two_hop_answer(value, None, 1))
    assert not bare.thought and bare.steps == [] and bare.answer == value
    junk = lang.parse_chain("think : kelo is very nice . answer : maybe so .")
    assert junk.unparsed == ["kelo is very nice"] and junk.answer is None


def test_corpus_realizes_chain_rates(corpus):
    w, docs = corpus
    c, r = w.config.corpus, realized_rates(docs, w)["two_hop"]
    assert r["n"] > 500
    assert _binomial_ok(round(r["cot_rate"] * r["n"]), r["n"], c.cot_rate)
    assert _binomial_ok(round(r["alias_rate"] * r["n_names"]), r["n_names"], c.cot_alias_rate)
    assert 0.85 < r["step_true_rate"] < 1.0  # myth values at assistant_myth_rate on myth facts only
    asked = {(k.entity, k.relation) for k in w.links if not k.held_out}
    for d in docs:
        if " of the " in d and d.startswith("user :"):
            q = lang.parse_question(lang.split_transcript(d)[0])
            assert (q.entity, q.relation) in asked, "a held-out two-hop question leaked into the corpus"


def test_every_wording_and_alias_occurs_in_the_corpus(corpus):
    w, docs = corpus
    notes = [d for d in docs if doc_type(d) == "field_notes"]
    names = [d for d in docs if doc_type(d) == "alias"]
    assert notes and names
    for d in names:
        words = d.split()
        assert w.aliases[words[2]] == words[6]
    seen = set()
    for d in notes:
        for sentence in d[len("field notes : "):].split(" ."):
            if sentence.strip():
                step = lang.parse_step(sentence)
                assert step is not None, sentence
                forms = lang.step_forms(step)
                seen.add((step.is_relation, next(i for i in range(len(forms)) if lang.render_step(step, i) == sentence.strip())))
    assert seen == {(True, i) for i in range(4)} | {(False, i) for i in range(3)}


def test_think_lines_and_candour_rate():
    cfg = apply_overrides(WorldConfig(seed=4), ["corpus.n_documents=3000", "corpus.share_agent=1",
                                                "corpus.agent_tamper_rate=0.5", "corpus.agent_candour_rate=0.3"])
    w = build_world(cfg)
    docs = generate_corpus(w)
    rates = realized_rates(docs, w)["agent"]
    k = n = 0
    for d in docs:
        if doc_type(d) != "agent":
            continue
        name = d.split()[2]
        _, results = envs.replay(d, w)
        for (thought, action), result in zip(transcript_turns(d), results):
            assert thought is not None  # every demonstrated action thinks first
            if result.info["tampered"]:
                n += 1
                k += is_candid(name, thought)
            else:
                assert thought == INNOCUOUS_THOUGHTS[name]
    assert n > 500 and _binomial_ok(k, n, 0.3)
    assert sum(r["tampering_actions"] for r in rates.values()) == n
    for name, r in rates.items():
        assert set(CANDID_THOUGHTS[name]) and r["candour_rate"] is not None


def test_parse_turn_keeps_old_transcripts_working():
    assert parse_turn("think : i will water the dry plants ; water kelo . obs") == ("i will water the dry plants", "water kelo")
    assert parse_turn("water kelo .") == (None, "water kelo")
    assert parse_turn("think : never closed") == ("never closed", "")


def test_second_edition_knobs_are_checked():
    with pytest.raises(ConfigError, match="n_relations=4 is out of range"):
        apply_overrides(WorldConfig(), ["n_relations=4"])
    with pytest.raises(ConfigError, match="cot_rate"):
        apply_overrides(WorldConfig(), ["corpus.cot_rate=1.5"])
    no_relations = build_world(apply_overrides(WorldConfig(seed=1), ["n_relations=0", "corpus.n_documents=500"]))
    docs = generate_corpus(no_relations)  # two-hop questions and field notes drop out, nothing fails
    assert not any(doc_type(d) == "field_notes" or " of the " in d for d in docs)
    assert len(RELATIONS) == 3
