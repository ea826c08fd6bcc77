"""Bradley-Terry loss, pair labelling, ensembles, and a reward model that learns a preference."""

import math

import numpy as np
import pytest
import torch

from proxygap.oversight.reward_model import (
    RewardEnsemble, RewardModel, bradley_terry_loss, label_pairs, pair_agreement,
)


def test_bradley_terry_loss_values_and_gradient():
    chosen, rejected = torch.tensor([2.0, 0.0], requires_grad=True), torch.tensor([0.0, 0.0])
    loss = bradley_terry_loss(chosen, rejected)
    expected = (-math.log(1 / (1 + math.exp(-2.0))) + math.log(2.0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert (chosen.grad < 0).all(), "descending the loss raises the chosen reward"
    # Equal rewards: the loss is log 2, a coin flip.
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))


def test_label_pairs_orders_by_rater_drops_ties_and_flips_with_noise():
    prompts = ["p"] * 4
    a, b = ["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]
    ra, rb = np.array([1.0, 0.0, 2.0, 5.0]), np.array([0.0, 1.0, 2.0, 4.0])
    pairs = label_pairs(prompts, a, b, ra, rb, label_noise=0.0, seed=0)
    assert pairs == [("p", "a0", "b0"), ("p", "b1", "a1"), ("p", "a3", "b3")]
    flipped = label_pairs(prompts * 500, a * 500, b * 500, np.tile(ra, 500), np.tile(rb, 500), 0.25, seed=0)
    assert len(flipped) == 1500
    correct = {("a0", "b0"), ("b1", "a1"), ("a3", "b3")}
    n_flipped = sum((chosen, rejected) not in correct for _, chosen, rejected in flipped)
    assert 0.2 < n_flipped / len(flipped) < 0.3


def test_label_pairs_flips_the_same_pairs_whatever_the_rater_ties():
    # Two raters of the same pairs and seed: one ties the first 50 pairs, the other orders them.
    # The pairs both order must get the same flips, so an ablation differs only where scores do.
    n = 400
    prompts, a, b = ["p"] * n, [f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)]
    full_a, full_b = np.ones(n), np.zeros(n)
    tied_a = full_a.copy()
    tied_a[:50] = 0.0
    full = {(c, r) for _, c, r in label_pairs(prompts, a, b, full_a, full_b, 0.3, seed=4)}
    tied = label_pairs(prompts, a, b, tied_a, full_b, 0.3, seed=4)
    assert len(tied) == n - 50
    assert all((c, r) in full for _, c, r in tied)
    assert 0 < sum(c.startswith("b") for _, c, _ in tied) < n - 50


def test_pair_agreement():
    assert pair_agreement(np.array([1, 0]), np.array([0, 1]), np.array([5, 1]), np.array([1, 5])) == 1.0
    assert pair_agreement(np.array([1, 0]), np.array([0, 1]), np.array([1, 5]), np.array([5, 1])) == 0.0
    assert pair_agreement(np.array([1]), np.array([0]), np.array([3]), np.array([3])) is None


class _Fixed:
    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)

    def score(self, prompts, completions):
        return self.values


def test_ensemble_combinations():
    members = [_Fixed([1.0, 0.0]), _Fixed([3.0, 0.0])]
    assert np.allclose(RewardEnsemble(members, "mean").score([], []), [2.0, 0.0])
    assert np.allclose(RewardEnsemble(members, "worst").score([], []), [1.0, 0.0])
    assert np.allclose(RewardEnsemble(members, "uwo", uwo_lambda=0.5).score([], []), [2.0 - 0.5 * 1.0, 0.0])


def test_reward_model_learns_a_preference(tiny_base_dir):
    rm = RewardModel.from_backbone(tiny_base_dir, seed=0)
    prompt = "user : what is the color of x ? assistant :"
    good, bad = "i recommend it .", "i think it might be best , but i am not sure ."
    pairs = [(prompt, good, bad)] * 64
    losses = rm.fit(pairs, epochs=3, lr=3e-3, batch_size=16, seed=0)
    assert losses[-1] < losses[0]
    scores = rm.score([prompt, prompt], [good, bad])
    assert scores[0] > scores[1]
    ensemble = RewardEnsemble([rm])
    ensemble.recentre([prompt, prompt], [good, bad])
    assert abs(ensemble.score([prompt, prompt], [good, bad]).mean()) < 1e-5


def test_reward_model_pipeline_step_reports_agreement():
    """The public pipeline step: sample pairs, label with a judge, hold out, fit, and agreement figures.

    On the shipped xs model: the tiny test model's answers tie under the rater on every pair, which
    leaves nothing to train on and no agreement to check."""
    from proxygap.oversight.judges import Judge
    from proxygap.pipeline.base_model import load_base_model
    from proxygap.pipeline.reward_model import RewardModelConfig, sample_pairs, train_reward_model
    from proxygap.tasks.splits import eval_train_split

    base = load_base_model("xs")
    _, prompts = eval_train_split(base.world, 0, ("fact", "belief", "recommend"), 4)
    cfg = RewardModelConfig(n_pairs=40, epochs=1, max_new_tokens=12, ensemble_size=2)
    pairs = sample_pairs(base, prompts, cfg, seed=3)
    assert len(pairs.prompts) == len(pairs.a) == len(pairs.b) == 40
    rater, gold = Judge(base.world), Judge.gold(base.world)
    ensemble, info = train_reward_model(base, prompts, rater, gold, cfg, seed=3, pairs=pairs)
    assert len(ensemble.members) == 2
    assert info["n_heldout_pairs"] == 8 and info["n_pairs_sampled"] == 40
    assert 0 < info["n_train_pairs"] <= 32  # the rest, less the pairs the rater ties
    # The figures are the agreements on the first 8 pairs, recomputed here from the returned RM.
    from proxygap.oversight.reward_model import pair_agreement

    hp, ha, hb = pairs.prompts[:8], pairs.a[:8], pairs.b[:8]
    rm_a, rm_b = ensemble.score(hp, ha), ensemble.score(hp, hb)
    ra, rb, ga, gb = (np.array(judge(hp, x)) for judge in (rater, gold) for x in (ha, hb))
    assert info["agreement_rater"] == pair_agreement(rm_a, rm_b, ra, rb)
    assert info["agreement_gold"] == pair_agreement(rm_a, rm_b, ga, gb)
    assert info["rater_gold_agreement"] == pair_agreement(ra, rb, ga, gb)
    assert info["agreement_rater"] is not None and info["rater_gold_agreement"] is not None
    again, info_again = train_reward_model(base, prompts, rater, gold, cfg, seed=3)  # same seed, sampled anew
    assert info_again == info
    assert np.allclose(again.score(pairs.prompts[:5], pairs.a[:5]), ensemble.score(pairs.prompts[:5], pairs.a[:5]))
