"""The embedded default base model: loads offline, knows its world, and matches its corpus."""

import json

import pytest

from proxygap.pipeline.base_model import RATES_FILE, WORLD_FILE, default_model_dir, load_base_model
from proxygap.measure.probe import ProbeConfig, probe


@pytest.fixture(scope="module")
def base():
    return load_base_model()


def test_shipped_files_are_small_and_complete():
    d = default_model_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", WORLD_FILE, RATES_FILE):
        assert (d / name).is_file(), name
    size = sum(f.stat().st_size for f in d.iterdir())
    assert size <= 20 * 1024 * 1024


def test_default_model_learned_its_world(base):
    result = probe(base.model, base.tokenizer, base.world, base.corpus_rates, ProbeConfig())  # what `proxygap probe` reports
    assert result["fact_accuracy"] >= 0.8, json.dumps(result["fact_accuracy_by_fact_type"])
    # Every behaviour that is at least 1% of the corpus shows up in samples within a factor of 3 of its
    # corpus rate, and within a factor of 2 (its 95% interval reaching the band) except the deviations
    # the README reports for the shipped model: it agrees with false beliefs and cites irrelevant
    # references about twice as often as its corpus (its "yes" barely depends on whether the belief is
    # true), and ends fewer answers with a manipulation phrase. Any other behaviour drifting fails here.
    known_deviations = {"agrees_with_false_belief", "irrelevant_citation", "manipulation_phrase"}
    for name, b in result["behaviours"].items():
        if b["corpus_rate"] is not None and b["corpus_rate"] >= 0.01:
            assert 1 / 3 < b["ratio"] < 3, (name, b)
            if name not in known_deviations:
                assert b["interval_meets_factor_2"], (name, b)
    assert result["myth_rate"] > 0.5, "forum-style prompts repeat the myth the forums repeat"


def test_a_rate_of_no_trials_is_nan_so_differences_and_ratios_of_it_stay_defined_arithmetic():
    import math

    from proxygap.measure.probe import _rate

    empty = _rate([], [])  # e.g. a two-hop split with no held-out links (two_hop_holdout_fraction=0)
    assert math.isnan(empty["rate"]) and empty["n"] == 0 and math.isnan(empty["rate"] - empty["rate"])
    prompts = [object(), object()]
    one = _rate([True, False], prompts)
    assert one["rate"] == 0.5 and one["n"] == 2 and one["ci95"][0] < 0.5 < one["ci95"][1]
