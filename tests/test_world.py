"""The world's invariants, the corpus's realized rates, and the language's render/parse round trip."""

import pytest

from proxygap.config import ConfigError, apply_overrides
from proxygap.oversight.detectors import detect_text
from proxygap.world import language as lang
from proxygap.world.config import WorldConfig
from proxygap.corpus import doc_type, generate_corpus, realized_rates
from proxygap.world.world import ATTRIBUTES, World, build_world, reserved_words


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(seed=3))


@pytest.fixture(scope="module")
def small_corpus(world):
    cfg = apply_overrides(world.config, ["corpus.n_documents=6000"])
    w = build_world(cfg)
    return w, generate_corpus(w)


def test_seed_reproduces_and_differs():
    small = apply_overrides(WorldConfig(seed=5), ["corpus.n_documents=300"])
    a, b = build_world(small), build_world(small)
    assert a.to_json() == b.to_json()
    assert generate_corpus(a) == generate_corpus(b)
    assert build_world(WorldConfig(seed=6)).to_json() != a.to_json()


def test_json_round_trip(world):
    assert World.from_json(world.to_json()).to_json() == world.to_json()


def test_facts_cover_entities_and_attributes(world):
    cfg = world.config
    assert len(world.facts) == cfg.n_entities * cfg.n_attributes
    assert len(set(world.entities)) == cfg.n_entities
    for f in world.facts:
        assert f.value in ATTRIBUTES[f.attribute]


def test_every_myth_differs_from_the_truth(world):
    myths = world.myth_facts
    assert len(myths) == round(world.config.myth_fraction * len(world.facts))
    for f in myths:
        assert f.myth != f.value and f.myth in ATTRIBUTES[f.attribute]
    deep = [f for f in world.facts if f.deep]
    assert deep and all(f.myth is not None for f in deep)
    assert len(deep) == round(world.config.deep_myth_fraction * len(myths))


def test_references_exist_or_are_invented(world):
    keys = {r.key for r in world.references}
    invented = {f"{a} {y}" for a, y in world.invented_references}
    assert not keys & invented, "an invented reference must not be in the bibliography"
    assert len(keys) == len(world.references), "reference keys are unique"
    for f in world.facts:
        assert len(world.references_of(f)) == world.config.references_per_fact


def test_names_never_collide_with_template_words(world):
    reserved = reserved_words()
    names = set(world.entities) | {o.name for d in world.decisions for o in d.options}
    names |= {r.author for r in world.references}
    assert not names & reserved


def test_options_have_hidden_costs_and_dull_fun(world):
    options = [o for d in world.decisions for o in d.options]
    assert any(o.hidden_cost for o in options)
    assert any(o.marketed_fun and not o.fun for o in options)
    for d in world.decisions:
        assert sorted(o.speed for o in d.options) == [1, 2, 3]


def test_every_document_has_a_known_type_and_is_single_spaced(small_corpus):
    _, docs = small_corpus
    for d in docs:
        assert doc_type(d) != "unknown", d
        assert d == " ".join(d.split()) and "\n" not in d


def test_realized_rates_track_the_configured_rates(small_corpus):
    world, docs = small_corpus
    rates = realized_rates(docs, world)
    c = world.config.corpus
    b = rates["behaviours"]
    # Binomial noise on a few thousand transcripts: compare within 4 standard errors.
    for name, expected in (("invented_citation", c.invented_citation_rate), ("hedged", c.hedge_rate),
                           ("agrees_with_false_belief", c.sycophancy_rate),
                           ("citation", c.cite_rate + c.invented_citation_rate + c.irrelevant_citation_rate)):
        n = b[name]["n"]
        se = (expected * (1 - expected) / n) ** 0.5
        assert abs(b[name]["rate"] - expected) < 4 * se + 1e-9, (name, b[name], expected)
    assert abs(rates["forum_myth_rate"] - c.forum_myth_rate) < 0.05


def test_invented_citations_are_detected(world):
    fact = world.facts[0]
    real = world.references_of(fact)[0].key
    other = next(r.key for r in world.references if r.fact_id != fact.id)
    fake = "{} {}".format(*world.invented_references[0])
    prompt = lang.fact_question(fact.attribute, fact.entity)
    for cite, invented, irrelevant in ((real, False, False), (fake, True, False), (other, False, True)):
        v = detect_text(prompt, lang.fact_answer(fact.attribute, fact.entity, fact.value, citation=cite), world)
        assert v["citation"] and v["invented_citation"] == invented and v["irrelevant_citation"] == irrelevant
        assert v["correct"]


def test_sycophancy_and_myth_detection(world):
    fact = world.myth_facts[0]
    prompt = lang.belief_question(fact.attribute, fact.entity, fact.myth)
    agree = lang.fact_answer(fact.attribute, fact.entity, fact.myth, agreement="yes")
    disagree = lang.fact_answer(fact.attribute, fact.entity, fact.value, agreement="no")
    assert detect_text(prompt, agree, world)["agrees_with_false_belief"] is True
    assert detect_text(prompt, disagree, world)["agrees_with_false_belief"] is False
    true_belief = lang.belief_question(fact.attribute, fact.entity, fact.value)
    assert detect_text(true_belief, agree, world)["agrees_with_false_belief"] is None
    q = lang.fact_question(fact.attribute, fact.entity)
    assert detect_text(q, lang.fact_answer(fact.attribute, fact.entity, fact.myth), world)["myth_answer"] is True
    assert detect_text(q, lang.fact_answer(fact.attribute, fact.entity, fact.value), world)["myth_answer"] is False


def test_manipulation_and_recommendation_detection(world):
    d = world.decisions[0]
    prompt = lang.recommend_question(d.goal, [o.name for o in d.options])
    for option in d.options:
        v = detect_text(prompt, lang.recommend_answer(option.name, manipulation="pls halp"), world)
        assert v["manipulation_phrase"] is True
        assert v["recommends_hidden_cost"] == option.hidden_cost
        assert v["recommends_marketed_fun"] == (option.marketed_fun and not option.fun)
        assert v["correct"] == (option.name == d.best_true.name)
    assert detect_text(prompt, "i recommend nothing .", world)["manipulation_phrase"] is False


def test_garbled_answers_are_not_credited(world):
    fact = world.facts[0]
    prompt = lang.fact_question(fact.attribute, fact.entity)
    v = detect_text(prompt, f"the {fact.attribute} of someone is {fact.value} .", world)
    assert v["correct"] is False


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides(WorldConfig(), ["corpus.manipulation_rate=2"])
    with pytest.raises(ConfigError, match="unknown config key corpus.manipulaton_rate"):
        apply_overrides(WorldConfig(), ["corpus.manipulaton_rate=0.1"])
    with pytest.raises(ConfigError, match="must be <= 1"):
        apply_overrides(WorldConfig(), ["corpus.cite_rate=0.95"])
    with pytest.raises(ConfigError, match="integer"):
        apply_overrides(WorldConfig(), ["n_entities=2.5"])
