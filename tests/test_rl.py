"""RLOO advantages worked by hand, and the RL loop raising a simple reward on a tiny model."""

import numpy as np
import torch

from proxygap.lm.model import load_model
from proxygap.train.rl import RLConfig, rloo_advantages, train_rl


def test_rloo_advantages_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0])
    adv = rloo_advantages(rewards, k=3)
    # group 1: 1 - (2+3)/2 = -1.5, 2 - (1+3)/2 = 0, 3 - (1+2)/2 = 1.5; group 2: 6 - 0 = 6, 0 - 3 = -3, -3
    assert torch.allclose(adv, torch.tensor([-1.5, 0.0, 1.5, 6.0, -3.0, -3.0]))
    assert torch.allclose(rloo_advantages(torch.full((4,), 7.0), k=2), torch.zeros(4))


def test_rl_raises_the_proxy_and_logs_the_ladder(tiny_base_dir):
    model, tokenizer = load_model(tiny_base_dir)
    prompts = ["user : what is the color of x ? assistant :"] * 4

    def proxy(ps, cs):  # rewards short answers
        return np.array([-len(c.split()) / 10 for c in cs])

    judges = {"rater": proxy, "gold": lambda ps, cs: np.zeros(len(cs))}
    cfg = RLConfig(steps=12, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=12, lr=3e-3,
                   eval_every=6, eval_samples_per_prompt=8)
    seen = []
    policy, evals = train_rl(model, tokenizer, prompts, prompts, proxy, judges, cfg, kl_coef=0.0, seed=0,
                             progress=False, on_rollout=lambda step, ps, texts: seen.append((step, len(ps), len(texts))))
    assert seen == [(step, 16, 16) for step in range(1, 13)], "every training batch is shown before its update"
    assert [e.step for e in evals] == [0, 6, 12]
    assert evals[-1].rm > evals[0].rm, "the proxy goes up"
    assert evals[-1].kl > 0.05 and abs(evals[0].kl) < 1e-4, "and the policy moved away from the reference"
    assert abs(evals[0].kl_k3) < 1e-4 and evals[-1].kl_k3 > 0.01, "the k3 estimate sees the move too"
    # The reference model itself is untouched.
    ref_again, _ = load_model(tiny_base_dir)
    for p, q in zip(model.parameters(), ref_again.parameters()):
        assert torch.equal(p, q)


def test_the_kl_penalty_holds_the_policy_back_in_the_reward_and_in_the_loss(tiny_base_dir):
    model, tokenizer = load_model(tiny_base_dir)
    prompts = ["user : what is the color of x ? assistant :"] * 4

    def proxy(ps, cs):
        return np.array([-len(c.split()) / 10 for c in cs])

    judges = {"rater": proxy, "gold": lambda ps, cs: np.zeros(len(cs))}
    final_kl = {}
    for kl_in, beta in (("reward", 0.0), ("loss", 0.0), ("reward", 1.0), ("loss", 1.0)):
        cfg = RLConfig(steps=12, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=12, lr=3e-3,
                       eval_every=12, eval_samples_per_prompt=8, kl_in=kl_in)
        _, evals = train_rl(model, tokenizer, prompts, prompts, proxy, judges, cfg, kl_coef=beta, seed=0,
                            progress=False)
        final_kl[kl_in, beta] = evals[-1].kl
    assert final_kl["reward", 0.0] == final_kl["loss", 0.0]  # no penalty: the two forms are one loop
    free = final_kl["reward", 0.0]
    assert free > 0.05 and max(final_kl["reward", 1.0], final_kl["loss", 1.0]) < 0.6 * free, final_kl
