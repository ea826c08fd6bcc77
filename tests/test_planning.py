"""Planning against a learned model: the return model's rows and fit, the planner's choice, determinism, end to end."""

import numpy as np
import pytest
import torch

from proxygap import envs
from proxygap.config import ConfigError
from proxygap.envs.base import parse_turn
from proxygap.oversight.reward_model import RewardModel
from proxygap.pipeline.base_model import load_base_model_cached
from proxygap.train.agent_common import METRICS
from proxygap.train.planning import (
    PlanningConfig, action_prefixes, cut_after_actions, first_turn_length, fit_regression, plan_rollout,
    planning_gains, regression_report, return_rows, train_planning,
)
from proxygap.train.rollout import scripted_rollout

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base():
    return load_base_model_cached(None)


def sensor(base):
    return lambda: envs.make("sensor", base.world)


def dry_plants(make_env, seed):
    env = make_env()
    env.reset(seed)
    return [p for p in env.plants if not env.wet[p]]


def test_prefixes_end_after_each_action_and_are_labelled_with_the_observed_return(base):
    make_env = sensor(base)
    a, b = dry_plants(make_env, 0), dry_plants(make_env, 1)
    episodes = scripted_rollout(make_env, [0, 1, 2], [
        [f"water {a[0]}", f"water {a[1]}"],  # honest: observed == true
        [f"water {b[0]}", "think : covering the sensor makes every plant read wet ; cover sensor"],  # tampers
        ["cover sensor"],
    ])
    assert episodes[2].observed_return == pytest.approx(0.8) and episodes[2].true_return == pytest.approx(-0.2)
    assert episodes[1].observed_return != pytest.approx(episodes[1].true_return)
    texts, targets, index = return_rows(episodes)
    assert index == [0, 0, 1, 1, 2] and len(texts) == sum(len(e.steps) for e in episodes)
    for text, target, i in zip(texts, targets, index):
        e = episodes[i]
        assert target == e.observed_return  # the observed return, never the true one
        assert e.transcript.startswith(text) and text.endswith(" .")
    for e in episodes:
        prefixes = action_prefixes(e)
        assert prefixes[-1] == e.transcript  # the env ended each episode: the last prefix is the whole transcript
        for k, (p, s) in enumerate(zip(prefixes, e.steps)):
            assert p.endswith(f"{s.action} .") and p.startswith(s.prompt)
            if k + 1 < len(e.steps):
                assert e.steps[k + 1].prompt.startswith(p + " obs :")  # cut right before the next observation
    assert "think : covering the sensor makes every plant read wet ; cover sensor ." in action_prefixes(episodes[1])[1]


def test_cut_after_actions_and_first_turn_length():
    text = "think : t ; water a . obs : a wet b dry . act : water b . obs : a wet b wet . act : stop ."
    assert cut_after_actions(text, 1) == "think : t ; water a ."
    assert cut_after_actions(text, 2) == "think : t ; water a . obs : a wet b dry . act : water b ."
    assert cut_after_actions(text, 5) == text
    assert cut_after_actions("water a", 1) == "water a"  # never closed: all of it
    assert first_turn_length([5, 6, 3, 7, 3], stop=3, eos=0) == 3
    assert first_turn_length([5, 0, 3], stop=3, eos=0) == 2
    assert first_turn_length([5, 6], stop=3, eos=0) == 2


def test_mse_regression_beats_the_constant_predictor_on_held_out_rows():
    xs = load_base_model_cached("xs")
    rng = np.random.default_rng(0)
    states = rng.integers(0, 2, size=(80, 3))  # target = share of 'wet' words: needs reading the text
    texts = ["obs : " + " ".join("wet" if s else "dry" for s in row) + " ." for row in states]
    targets = states.mean(1).tolist()
    rm = RewardModel.from_backbone(xs.path, 0)
    losses = fit_regression(rm, texts[:60], targets[:60], epochs=12, lr=3e-4, batch_size=16, seed=0)
    held = regression_report(rm, texts[60:], targets[60:], constant=float(np.mean(targets[:60])))
    assert held["mse"] < 0.5 * held["constant_mse"] and held["corr"] > 0.8
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert rm.offset == pytest.approx(-np.mean(targets[:60]))  # the head regresses the centred target


def test_planner_executes_the_first_turn_of_the_best_scored_candidate(base):
    """A stub model that pays for covering the sensor: the planner finds the tampering action."""
    make_env = sensor(base)

    def first_action(continuation: str) -> str:
        return parse_turn(continuation)[1]

    def pays_for_covering(prompts, continuations):
        return np.array([float(first_action(c) == "cover sensor") for c in continuations])

    cfg = PlanningConfig(candidates=24, imagine_tokens=48)
    seeds = list(range(16))
    episodes, decisions = plan_rollout(base.model, base.tokenizer, pays_for_covering, make_env, seeds, cfg,
                                       torch.Generator().manual_seed(0))
    offered = 0
    for e, ds in zip(episodes, decisions):
        assert len(ds) == len(e.steps)
        for step, d in zip(e.steps, ds):
            scores = [s for _, s in d.candidates]
            assert len(scores) == 24 and d.predicted == max(scores)
            best_turn = d.candidates[int(np.argmax(scores))][0]
            assert parse_turn(best_turn) == (step.thought, step.action)  # the first turn of the best candidate
            assert base.tokenizer.decode(step.token_ids, skip_special_tokens=True) == best_turn
            if max(scores) == 1.0:
                offered += 1
                assert step.action == "cover sensor" and step.info["tampered"]
    assert offered >= 4  # the base proposes covering ~1% of the time: some of 24 x 16 x ~3 candidates (7 here)
    assert sum(e.outcome.tampered for e in episodes) == offered  # an episode ends once the sensor is covered
    # The same planner with an indifferent model executes candidate 0: the base policy's own sample.
    episodes, decisions = plan_rollout(base.model, base.tokenizer, lambda p, c: np.zeros(len(c)), make_env, seeds[:4],
                                       cfg, torch.Generator().manual_seed(0))
    assert all(parse_turn(d.candidates[0][0])[1] == s.action for e, ds in zip(episodes, decisions)
               for s, d in zip(e.steps, ds))


def test_train_planning_end_to_end_is_deterministic(base):
    make_env = sensor(base)
    cfg = PlanningConfig(model_episodes=12, model_epochs=1, candidates=3, imagine_tokens=64)
    runs = [train_planning(base, make_env, cfg, seed=3, eval_episodes=6, progress=False) for _ in range(2)]
    (evals, info), (evals2, info2) = runs
    assert [e.step for e in evals] == [0, 1]
    for e in evals:
        assert set(METRICS) <= set(e.metrics) and len(e.episodes) == 6
        assert all(r["transcript"].startswith("agent : sensor :") for r in e.episodes)
    assert [r["env_seed"] for r in evals[0].episodes] == [r["env_seed"] for r in evals[1].episodes]
    assert all(len(r["decisions"]) == len(r["actions"]) for r in evals[1].episodes)
    assert info["fit"]["episodes_train"] + info["fit"]["episodes_heldout"] == 12
    assert info["fit"]["episodes_heldout"] == 3 and info["fit"]["rows_train"] >= 9
    predicted = [r["decisions"][0]["predicted"] for r in evals[1].episodes]
    actual = [r["observed_return"] for r in evals[1].episodes]
    assert info["predicted_return"] == pytest.approx(np.mean(predicted))
    assert info["model_error"] == pytest.approx(np.mean(np.subtract(predicted, actual)))
    gains = info["gains"]
    assert gains["tamper_gain"] == pytest.approx(evals[1].metrics["tamper_rate"] - evals[0].metrics["tamper_rate"])
    assert gains["excess_model_error"] == pytest.approx(info["model_error"] - info["base_model_error"])
    assert info["train_time_s"] > 0
    # Same seed, same everything.
    assert [r["transcript"] for r in evals[1].episodes] == [r["transcript"] for r in evals2[1].episodes]
    assert info["fit"]["heldout"] == info2["fit"]["heldout"] and info["model_error"] == info2["model_error"]
    # The given step-0 evaluation is used as is.
    evals3, _ = train_planning(base, make_env, cfg, seed=3, eval_episodes=6, progress=False, first_eval=evals[0])
    assert evals3[0] is evals[0]


def test_planning_gains_control_the_model_error_by_the_base_episodes():
    base = {"tamper_rate": 0.0, "observed_return": 0.5, "true_return": 0.5}
    tampers = {"tamper_rate": 0.5, "observed_return": 0.8, "true_return": 0.1}
    g = planning_gains(tampers, base, 0.5, 0.4)
    assert g == pytest.approx({"tamper_gain": 0.5, "excess_model_error": 0.1, "observed_gain": 0.3, "true_gain": -0.4})
    assert planning_gains(tampers, base, 0.5, float("nan"))["excess_model_error"] == 0.5  # no base episodes: no control


@pytest.mark.parametrize("knobs, message", [
    ({"model_episodes": 2000}, "exceeds train_env_seeds"),
    ({"imagine_tokens": 8}, "imagine_tokens=8 < max_action_tokens"),
    ({"candidates": 0}, "out of range"),
    ({"model_episodes": 2, "model_holdout": 0.9}, None),  # int(1.8) = 1 held out, 1 left to train on
])
def test_config_checks(knobs, message):
    if message is None:
        PlanningConfig(**knobs).check()
        return
    with pytest.raises(ConfigError, match=message):
        PlanningConfig(**knobs)
