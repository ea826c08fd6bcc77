"""Expert iteration: the selection, the agent credit, and the LM loop amplifying what its signal prefers."""

from types import SimpleNamespace

import numpy as np
import torch

from proxygap.lm.sampling import sample
from proxygap.pipeline.base_model import load_base_model
from proxygap.tasks.prompts import assistant_prompts
from proxygap.train.expert_iteration import (ExpertIterationAgentConfig, ExpertIterationConfig, best_of_group,
                                             expert_iteration_credit, train_expert_iteration)


def test_best_of_group_picks_each_groups_highest_first_on_ties():
    assert best_of_group(np.array([1, 3, 2, 5, 4, 0, 7, 7, 1]), 3).tolist() == [1, 3, 6]


def test_agent_credit_imitates_each_groups_best_episode_only():
    episodes = [SimpleNamespace(observed_return=r, true_return=0.0) for r in (0.0, 2.0, 1.0, 1.0)]
    rows = SimpleNamespace(episode=torch.tensor([0, 0, 1, 2, 3, 3]))
    credit = expert_iteration_credit(SimpleNamespace(episodes=episodes, rows=rows),
                                     ExpertIterationAgentConfig(group_size=2))
    assert credit.advantages.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]  # group 0: episode 1; group 1: episode 2


def test_expert_iteration_amplifies_what_the_signal_prefers():
    base = load_base_model("xs")
    prompts = [p.text for p in assistant_prompts(base.world, 0, ("fact",))][:32]
    says = lambda texts: np.mean([" definitely " in f" {t} " for t in texts])  # noqa: E731
    signal = lambda p, c: np.array([float(" definitely " in f" {t} ") for t in c])  # noqa: E731
    cfg = ExpertIterationConfig(rounds=3, prompts_per_round=32, samples_per_prompt=4, max_new_tokens=16,
                                steps_per_round=8, batch_size=16, lr=1e-3)
    policy, log = train_expert_iteration(base.model, base.tokenizer, prompts, signal, cfg, seed=0, progress=False)
    probe = [p for p in prompts for _ in range(8)]
    before = says(sample(base.model, base.tokenizer, probe, 16, generator=torch.Generator().manual_seed(1)).texts)
    after = says(sample(policy, base.tokenizer, probe, 16, generator=torch.Generator().manual_seed(1)).texts)
    assert after > before + 0.1
    assert [r["round"] for r in log] == [0, 1, 2] and log[0]["signal_kept"] >= log[0]["signal_all"]
