"""weak-to-strong: PGR and per-error bookkeeping on hand-made labels, the confidence loss against a
hand-computed value, the 50/50 split, the rater's error causes, and a smoke run's results.json."""

import json

import pytest
import torch

from proxygap.cli import main
from proxygap.experiments.weak_to_strong import split_halves
from proxygap.measure.intervals import seed_interval
from proxygap.measure.pgr import accuracy, gap_resolved, pgr, pgr_by_error
from proxygap.oversight.judges import RaterFlaws
from proxygap.oversight.labels import flip, rater_labels
from proxygap.pipeline.base_model import load_world_for_model
from proxygap.train.weak_to_strong import log_confidence_loss, xent_loss
from proxygap.world import language as lang


def test_pgr_is_the_share_of_the_gap_recovered():
    assert pgr(0.6, 0.7, 0.8) == pytest.approx(0.5)
    assert pgr(0.6, 0.9, 0.8) == pytest.approx(1.5)
    assert pgr(0.8, 0.9, 0.8) is None  # no gap to recover
    # given the items the accuracies are on, a gap within their noise recovers nothing measurable
    assert pgr(0.550, 0.560, 0.5525, n=400) is None  # one item in 400: a PGR of 4 from noise
    assert pgr(0.5, 0.55, 0.6, n=400) == pytest.approx(0.5)
    assert gap_resolved(0.5, 0.6, 400) and not gap_resolved(0.5, 0.6, 40)


def test_accuracy_hardens_predictions_and_skips_gold_ties():
    assert accuracy([0.9, 0.2, 0.6, 0.4], [1.0, 0.0, 0.0, 0.5]) == pytest.approx(2 / 3)


def test_pgr_by_error_counts_each_cause_on_its_own_items():
    gold = [1.0, 1.0, 0.0, 0.0, 1.0, 0.5]
    causes = ["believes_myths", "believes_myths", "noise", None, "noise", "noise"]  # the tie is left out
    student = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    ceiling = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    out = pgr_by_error(student, ceiling, gold, causes)
    assert out["believes_myths"] == {"n": 2, "student": 0.5, "ceiling": 1.0, "pgr": 0.5}
    # the ceiling's 1 of 2 is not told apart from 0 of 2 (the supervisor's, by definition): no PGR
    assert out["noise"] == {"n": 2, "student": 0.5, "ceiling": 0.5, "pgr": None}


def test_confidence_loss_matches_a_hand_computed_value():
    z = torch.tensor([2.0, -1.0, 0.5, 0.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # P(class 0) = 1 - sigmoid(z) = [.119, .731, .378, .5]; its quantile at the labels' mean (0.5) is 0.439, so the
    # hardened predictions are classes [1, 0, 1, 0]. In the warm-up (openai's schedule) coef = 0.05 * 0.5 = 0.025:
    # targets [0, 1], [.025, .975], [.975, .025], [1, 0]; cross-entropies .126928, 1.288262, .961577, .693147.
    got = log_confidence_loss(z, labels, step_frac=0.05, warmup_frac=0.1, aux_coef=0.5)
    assert got.item() == pytest.approx((0.126928 + 1.288262 + 0.961577 + 0.693147) / 4, abs=1e-5)
    # After the warm-up coef = aux_coef = 0.5: targets [0, 1], [.5, .5], [.5, .5], [1, 0].
    after = log_confidence_loss(z, labels, step_frac=0.5, warmup_frac=0.1, aux_coef=0.5)
    assert after.item() == pytest.approx((0.126928 + 0.813262 + 0.724077 + 0.693147) / 4, abs=1e-5)
    # With weight 0 the loss is plain cross-entropy.
    assert log_confidence_loss(z, labels, 0.0, 0.1, 0.5).item() == pytest.approx(xent_loss(z, labels).item())


def test_burns_split_is_fifty_fifty():
    a, b = split_halves(11)
    items = list(range(11))
    assert items[a] == list(range(5)) and items[b] == list(range(5, 11))


def test_label_noise_flips_at_its_rate():
    labels, flipped = flip([1.0] * 4000, 0.2, seed=0)
    assert sum(flipped) / 4000 == pytest.approx(0.2, abs=0.02)
    assert all((y == 0.0) == f for y, f in zip(labels, flipped))
    other, _ = flip([1.0] * 4000, 0.2, seed=0, stream="rater")  # another supervisor of the seed flips independently
    assert other != labels


def test_a_myth_answer_is_a_wrong_label_caused_by_the_myth_belief():
    world = load_world_for_model("xs")
    fact = next(f for f in world.facts if f.myth is not None)
    prompt = lang.fact_question(fact.attribute, fact.entity)
    examples = [(prompt, lang.fact_answer(fact.attribute, fact.entity, fact.myth)),
                (prompt, lang.fact_answer(fact.attribute, fact.entity, fact.value))]
    gold = [0.0, 1.0]
    flaws = RaterFlaws(label_noise=0.0)
    labels, causes = rater_labels(world, flaws, "correct", examples, gold, seed=0)
    # A rater that believes the myth at 0.8 takes the myth for right and the truth for wrong: both its labels err.
    assert labels == [1.0, 0.0] and causes == ["believes_myths", "believes_myths"]
    labels, causes = rater_labels(world, RaterFlaws(label_noise=0.0, believes_myths=0.3), "correct", examples, gold, 0)
    assert labels == [0.0, 1.0] and causes == [None, None]
    pair = [(prompt, examples[0][1], examples[1][1])]
    labels, causes = rater_labels(world, flaws, "preference", pair, [0.0], seed=0)
    assert labels == [1.0] and causes == ["believes_myths"]  # it prefers the myth


def test_weak_to_strong_smoke_results_hold_pairs_with_intervals(tmp_path):
    out = tmp_path / "w2s"
    assert main(["run", "weak-to-strong", "--preset", "smoke", "--quiet", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    keys = {(p["task"], p["supervisor"], p["confidence_loss"]) for p in res["pairs"]}
    assert keys == {(t, s, c) for t in ("correct", "preference") for s in ("small_gold", "rater", "noise")
                    for c in (False, True)}
    for p in res["pairs"]:
        assert {"weak", "strong", "pgr", "pgr_by_error", "pgr_of_means", "pgr_undefined_seeds"} <= set(p)
        assert set(p["pgr"]) >= {"mean", "lo", "hi"}
        weak, student, ceiling = (p[k]["per_seed"] for k in ("weak_accuracy", "student_accuracy", "ceiling_accuracy"))
        assert len(weak) == len(student) == len(ceiling) == len(res["config"]["seeds"])
        # PGR is its formula, seed by seed, on that seed's test items
        seeds_pgr = [pgr(w, s, c, n) for w, s, c, n in zip(weak, student, ceiling, p["n_items"])]
        assert p["pgr"]["per_seed"] == [pytest.approx(x) if x is not None else None for x in seeds_pgr]
        assert p["pgr_undefined_seeds"] == sum(x is None for x in seeds_pgr)
        assert p["gap"]["per_seed"] == pytest.approx([c - w for c, w in zip(ceiling, weak)])
        assert p["pgr_of_means"] is None  # one seed: its gap has no interval, so no PGR of the means
        for e in p["pgr_by_error"].values():
            assert set(e) >= {"n", "pgr", "student", "ceiling"}
    assert any(p["pgr"]["mean"] is not None for p in res["pairs"])
    assert any(p["pgr"]["mean"] is None for p in res["pairs"])  # the gap rule bites in the smoke run too
    assert (out / "report.html").is_file() and (out / "pgr.png").is_file()


def test_error_types_are_ranked_only_where_the_seeds_say_so():
    from proxygap.experiments.weak_to_strong import findings

    def row(types, conf=False):
        return {"task": "preference", "weak": "rater", "strong": "m", "supervisor": "rater", "confidence_loss": conf,
                "student_accuracy": {"per_seed": [0.6, 0.6, 0.6]}, "pgr_of_means": None,
                "pgr_by_error": {c: {"n": 30, "pgr": seed_interval(v, per_seed=True)} for c, v in types.items()}}

    clear = {"manipulation": [0.1, 0.2, 0.15], "myths": [0.9, 1.0, 0.9], "noise": [0.5, 0.65, 0.5]}
    overlapping = {"manipulation": [0.2, 0.7, 0.1], "myths": [0.9, 0.3, 1.0]}
    out = findings([row(clear), row(overlapping, conf=True)])["error_types"]
    assert out[0]["most_repeated"] == "manipulation" and out[0]["most_corrected"] == "myths"
    assert len(out[0]["orders"]) == 3
    # means differ (0.33 against 0.73) but the seeds disagree: no order, and both losses are ranked
    assert out[1]["confidence_loss"] and out[1]["orders"] == [] and out[1]["most_repeated"] is None
    assert out[0]["recovers_above_zero"] == {"manipulation": True, "myths": True, "noise": True}
    assert out[1]["recovers_above_zero"] == {"manipulation": False, "myths": False}  # intervals reach below 0
    # seeds that agree exactly give no interval: no claim either way, not "does not recover"
    agreeing = findings([row({"myths": [1.0, 1.0, 1.0], "noise": [0.0, 0.5, 0.25]})])["error_types"][0]
    assert agreeing["recovers_above_zero"] == {"noise": False, "myths": None}
    # a seed without a PGR of a type (its gap unresolved there): no claim from the other seeds alone
    partial = findings([row({"manipulation": [0.1, 0.2, None, 0.15], "myths": [0.9, 1.0, 0.9, 0.95]})])["error_types"][0]
    assert partial["orders"] == [] and partial["recovers_above_zero"] == {"manipulation": None, "myths": True}
    one_cause = findings([row({"noise": [0.5, 0.6, 0.55]})])["error_types"]
    assert one_cause == []  # nothing to rank a single cause against


def test_weak_to_strong_rejects_a_malformed_pair(capsys):
    assert main(["run", "weak-to-strong", "--preset", "smoke", "--set", "pairs=xs-s"]) == 2
    assert "weak:strong" in capsys.readouterr().err
