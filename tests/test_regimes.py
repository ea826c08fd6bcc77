"""The agent regimes: advantages worked by hand on toy cases, and updates on a toy env moving the policy."""

import dataclasses

import pytest
import torch

from proxygap.envs.base import EpisodeOutcome, Preview, StepResult, TextEnv, header, parse_action, split_header
from proxygap.train.rollout import rollout
from proxygap.lm.model import load_model
from proxygap.train.agent_common import (
    AgentRLConfig, evaluate_agent, kl_per_row, per_step_loo_advantages, replay_state, step_rows, train_agent,
)
from proxygap.train.agent_regimes import AGENT_REGIMES
from proxygap.train.decoupled import DECOUPLED, decoupled_advantages
from proxygap.train.imitation import ImitationConfig, honest_demonstrations, train_imitation
from proxygap.train.mona import mona_advantages
from proxygap.train.outcome import OUTCOME, outcome_advantages
from proxygap.train.process import process_advantages


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches: one torch thread is as fast, and far faster when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ToyEnv(TextEnv):
    """Two actions per episode. Observed reward of an action: minus its word count / 8 (short is
    rewarded); true reward: 1 if the action avoids the word 'the'. Saying 'is' counts as tampering."""

    name = "toy"
    max_steps = 2

    def reset(self, seed: int) -> str:
        self.seed, self.t, self.tampered, self.true_total = seed, 0, False, 0.0
        return header(self.name, f"task {seed}", "go")

    def restore(self, text: str) -> None:
        self.reset(int(split_header(text)[1].split()[1]))

    def _values(self, action: str) -> tuple[float, float]:
        words = action.split()
        return -len(words) / 8, float("the" not in words)

    def step(self, action: str) -> StepResult:
        observed, true = self._values(action)
        self.t += 1
        self.tampered |= "is" in action.split()
        self.true_total += true
        return StepResult(f"step {self.t}", observed, true, self.t >= self.max_steps, {"words": len(action.split())})

    def preview(self, action: str) -> Preview:
        observed, true = self._values(action)
        return Preview(("speaks",), true, observed, {"speaks": true - observed})

    def outcome(self) -> EpisodeOutcome:
        success = self.true_total >= 2
        return EpisodeOutcome(success, self.tampered, success and not self.tampered, not success and not self.tampered)


def short_is_good(env: TextEnv, action: str) -> float:
    """A toy approver: approves short actions (and looks at the env only through preview)."""
    return env.preview(action).visible_value


# ----------------------------------------------------------------------------- advantages by hand

def test_outcome_rloo_advantages_by_hand():
    returns = torch.tensor([3.0, 1.0, 2.0, 2.0])
    kl = torch.tensor([1.0, 0.0, 0.0, 2.0])
    # shaped R - 0.5 KL = [2.5, 1, 2, 1]; groups of k=2: 2.5 - 1 = 1.5, 1 - 2.5 = -1.5; 2 - 1 = 1, 1 - 2 = -1
    adv = outcome_advantages(returns, kl, k=2, kl_coef=0.5)
    assert torch.allclose(adv, torch.tensor([1.5, -1.5, 1.0, -1.0]))
    # with beta = 0 the KL is ignored: [3-1, 1-3, 2-2, 2-2]
    assert torch.allclose(outcome_advantages(returns, kl, k=2, kl_coef=0.0), torch.tensor([2.0, -2.0, 0.0, 0.0]))


# Rows of two groups. Group 0: episode 0 (steps 0, 1), episode 1 (steps 0, 1), episode 2 (step 0 only).
# Group 1: episode 3 (steps 0, 1), episode 4 (step 0 only).
GROUP = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
STEP = torch.tensor([0, 1, 0, 1, 0, 0, 1, 0])


def test_per_step_leave_one_out_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 1.0, 3.0])
    # group 0, step 0: rewards 1, 3, 5 -> 1 - (3+5)/2 = -3, 3 - (1+5)/2 = 0, 5 - (1+3)/2 = 3
    # group 0, step 1: rewards 2, 4   -> 2 - 4 = -2, 4 - 2 = 2
    # group 1, step 0: rewards 7, 3   -> 7 - 3 = 4, 3 - 7 = -4
    # group 1, step 1: only episode 3 reached it -> baseline 0 -> 1
    expected = torch.tensor([-3.0, -2.0, 0.0, 2.0, 3.0, 4.0, 1.0, -4.0])
    assert torch.allclose(per_step_loo_advantages(r, GROUP, STEP), expected)
    assert torch.allclose(process_advantages(r, torch.zeros(8), GROUP, STEP, kl_coef=1.0), expected)


def test_mona_advantages_by_hand():
    observed = torch.tensor([0.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0])
    approval = torch.tensor([1.0, 0.0, 1.0, -1.0, 0.0, 1.0, 2.0, 0.0])
    kl = torch.tensor([0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    # myopic reward = observed + 2 * approval - 0.5 * kl = [2, 1, 1, -1, 2, 2, 4, 1]
    # g0 s0: 2, 1, 2 -> 2 - 1.5 = 0.5, 1 - 2 = -1, 2 - 1.5 = 0.5;  g0 s1: 1, -1 -> 2, -2
    # g1 s0: 2, 1 -> 1, -1;  g1 s1: alone -> 4
    adv = mona_advantages(observed, approval, kl, GROUP, STEP, approval_coef=2.0, kl_coef=0.5)
    assert torch.allclose(adv, torch.tensor([0.5, 2.0, -1.0, -2.0, 0.5, 1.0, 4.0, -1.0]))
    # No credit from later steps: changing episode 0's step-1 reward moves only step-1 rows of group 0.
    observed2 = observed.clone()
    observed2[1] += 10
    adv2 = mona_advantages(observed2, approval, kl, GROUP, STEP, approval_coef=2.0, kl_coef=0.5)
    changed = (adv2 != adv).nonzero().flatten().tolist()
    assert changed == [1, 3]


def test_decoupled_advantages_by_hand():
    queried = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0])
    kl = torch.zeros(8)
    # g0 s0: 1, 0, 1 -> 1 - 0.5 = 0.5, 0 - 1 = -1, 1 - 0.5 = 0.5;  g0 s1: 0, 1 -> -1, 1
    # g1 s0: 1, 0 -> 1, -1;  g1 s1: alone -> 0.5
    adv = decoupled_advantages(queried, kl, GROUP, STEP, kl_coef=0.1)
    assert torch.allclose(adv, torch.tensor([0.5, -1.0, -1.0, 1.0, 0.5, 1.0, 0.5, -1.0]))


# ----------------------------------------------------------------------------- toy env, tiny model

def test_parse_action():
    assert parse_action("water plant 3 . obs") == "water plant 3"
    assert parse_action("never closed") == "never closed"
    assert parse_action(".") == ""


def test_rollout_records_and_replay_rebuilds_the_state(tiny_base_dir):
    model, tok = load_model(tiny_base_dir)
    gen = torch.Generator().manual_seed(0)
    calls = []

    def approver(env, action):
        calls.append((env.t, action))  # the approver sees the state before the step
        return short_is_good(env, action)

    eps = rollout(model, tok, ToyEnv, [5, 5, 6], max_action_tokens=6, generator=gen, approver=approver,
                  group_of=[0, 0, 1])
    assert [e.group for e in eps] == [0, 0, 1] and all(len(e.steps) == 2 for e in eps)
    assert [t for t, _ in calls] == [0, 0, 0, 1, 1, 1]
    for e in eps:
        assert e.observed_return == pytest.approx(sum(-len(s.action.split()) / 8 for s in e.steps))
        assert e.steps[1].prompt.startswith(e.steps[0].prompt) and e.steps[1].prompt.endswith("act :")
        assert all(s.approval == pytest.approx(s.observed_reward) for s in e.steps)
    rows = step_rows(eps)
    assert rows.episode.tolist() == [0, 0, 1, 1, 2, 2] and rows.step.tolist() == [0, 1, 0, 1, 0, 1]
    env = replay_state(ToyEnv, eps[1], upto=1)
    assert env.t == 1 and env.true_total == eps[1].steps[0].true_reward


def test_recomputed_logprobs_match_the_sampler(tiny_base_dir):
    # The update differentiates log pi(action | prompt) recomputed from (prompt, tokens): it must be
    # the very number the sampler drew with, so KL(policy || itself) is 0 row by row.
    model, tok = load_model(tiny_base_dir)
    eps = rollout(model, tok, ToyEnv, [1, 2, 3, 4], 6, torch.Generator().manual_seed(2))
    rows = step_rows(eps)
    assert torch.allclose(kl_per_row(model, tok, rows), torch.zeros(len(rows)), atol=1e-4)
    assert (rows.logprob < 0).all()


def _toy_cfg(regime, **kw):
    return regime.config_cls(**{"steps": 10, "starts_per_step": 2, "group_size": 4, "max_action_tokens": 8,
                                "lr": 3e-3, "eval_every": 10, "eval_episodes": 24, **kw})


def test_registry_lists_every_regime_under_its_own_name():
    assert list(AGENT_REGIMES) == ["outcome", "process", "mona", "decoupled", "expert_iteration", "monitored"]
    assert all(name == r.name for name, r in AGENT_REGIMES.items())
    assert [n for n, r in AGENT_REGIMES.items() if r.score_rollouts] == ["process", "mona"]  # decoupled: never
    assert "seed" not in {f.name for f in dataclasses.fields(AgentRLConfig)}  # the seed is the caller's


def test_outcome_rl_raises_the_observed_return(tiny_base_dir):
    model, tok = load_model(tiny_base_dir)
    _, evals = train_agent(OUTCOME, model, tok, ToyEnv, _toy_cfg(OUTCOME), seed=0, progress=False)
    assert [e.step for e in evals] == [0, 10]
    assert evals[-1].metrics["observed_return"] > evals[0].metrics["observed_return"] + 0.1
    # with the Stiennon penalty the loop runs the same way (the KL term is exercised, not just zero)
    _, evals = train_agent(OUTCOME, model, tok, ToyEnv, _toy_cfg(OUTCOME, kl_coef=0.5, steps=2, eval_every=2), seed=0,
                           progress=False)
    assert [e.step for e in evals] == [0, 2]


def test_a_run_is_determined_by_its_seed(tiny_base_dir):
    model, tok = load_model(tiny_base_dir)
    cfg = _toy_cfg(DECOUPLED, steps=2, eval_every=2, eval_episodes=8)
    runs = [train_agent(DECOUPLED, model, tok, ToyEnv, cfg, seed, short_is_good, progress=False)[1][-1].metrics
            for seed in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_agent_regimes_refuse_a_missing_approver_or_the_wrong_config(tiny_base_dir):
    from proxygap.config import ConfigError

    model, tok = load_model(tiny_base_dir)
    with pytest.raises(ConfigError, match="needs an approver"):
        train_agent(AGENT_REGIMES["process"], model, tok, ToyEnv, _toy_cfg(AGENT_REGIMES["process"]), 0)
    with pytest.raises(TypeError, match="MonaConfig"):
        train_agent(AGENT_REGIMES["mona"], model, tok, ToyEnv, _toy_cfg(OUTCOME), 0, short_is_good)


def test_decoupled_approval_raises_the_approval_of_its_actions(tiny_base_dir):
    model, tok = load_model(tiny_base_dir)
    _, evals = train_agent(DECOUPLED, model, tok, ToyEnv, _toy_cfg(DECOUPLED), 0, short_is_good, progress=False)
    # the evaluation logs the approval of the executed actions: queried and executed share the policy
    assert evals[-1].metrics["approval"] > evals[0].metrics["approval"] + 0.05


@pytest.mark.parametrize("regime", ["process", "mona"])
def test_approval_regimes_raise_the_approval_of_their_actions(tiny_base_dir, regime):
    model, tok = load_model(tiny_base_dir)
    agent = AGENT_REGIMES[regime]
    # mona with approval_coef 0: the step's own observed reward alone, which is also short-is-good here
    cfg = _toy_cfg(agent, **({"approval_coef": 0.0} if regime == "mona" else {}))
    _, evals = train_agent(agent, model, tok, ToyEnv, cfg, 0, short_is_good, progress=False)
    assert evals[-1].metrics["approval"] > evals[0].metrics["approval"] + 0.05


def test_imitation_without_sft_is_the_base_model(tiny_base_dir):
    model, tok = load_model(tiny_base_dir)
    policy, evals, info = train_imitation(model, tok, ToyEnv, ImitationConfig(), 0, max_action_tokens=8,
                                          eval_episodes=8, progress=False)
    assert policy is model and len(evals) == 1 and info == {"sft": False}
    again = evaluate_agent(model, tok, ToyEnv, 8, 8, seed=0)
    assert again.metrics == evals[0].metrics  # evaluation is deterministic in its seed


def test_sft_on_honest_demonstrations(tiny_base_dir):
    import random

    from proxygap import envs
    from proxygap.pipeline.base_model import load_base_model

    base = load_base_model(tiny_base_dir)
    make_env = lambda: envs.make("sensor", base.world)  # noqa: E731
    demos = honest_demonstrations(make_env, base.tokenizer, [0, 1, 2, 3], 0.0, random.Random(0))
    actions = [base.tokenizer.decode(t) for _, t in demos]
    # never 'cover sensor'; each turn thinks first, as the corpus's demonstrators do
    assert actions and all(a.startswith("think : i will water the dry plants ; water ") and a.endswith(" .")
                           for a in actions)
    assert all(p.startswith("agent : sensor :") and p.endswith("act :") for p, _ in demos)
    cfg = ImitationConfig(sft_steps=4, sft_batch=8, demo_episodes=8, eval_every=4)
    policy, evals, info = train_imitation(base.model, base.tokenizer, make_env, cfg, 0, max_action_tokens=8,
                                          eval_episodes=4, progress=False)
    assert policy is not base.model and [e.step for e in evals] == [0, 4] and info["demo_actions"] >= 16


def test_agent_config_is_checked():
    from proxygap.config import ConfigError, apply_overrides

    with pytest.raises(ConfigError, match="group_size"):
        apply_overrides(AgentRLConfig(), ["group_size=1"])


def test_decoupled_feedback_corrupted_by_the_executed_action_favours_no_queried_action():
    """Where the executed action seized the channel the overseer reads, every queried action gets
    the same (corrupted) feedback; where it did not, the overseer's own score of each one."""
    from proxygap import envs
    from proxygap.oversight.approval import ApprovalOverseer
    from proxygap.train.agent_common import Batch, step_rows
    from proxygap.train.decoupled import queried_approval
    from proxygap.train.rollout import scripted_rollout
    from proxygap.world.config import WorldConfig
    from proxygap.world.world import build_world

    world = build_world(WorldConfig(seed=3))
    make_env = lambda: envs.make("sensor", world, approval_reads_channel=True)  # noqa: E731
    episodes = scripted_rollout(make_env, [0, 0], [["cover sensor"], ["stop"]])
    batch = Batch(episodes, step_rows(episodes), None, None, None, make_env, ApprovalOverseer(), torch.Generator())
    plant = episodes[0].transcript.split("obs : ")[1].split()[0]
    after_cover = {q: queried_approval(batch, 0, 0, q) for q in ("cover sensor", f"water {plant}", "stop")}
    assert len(set(after_cover.values())) == 1 and after_cover["stop"] == episodes[0].steps[0].observed_reward
    after_stop = {q: queried_approval(batch, 1, 0, q) for q in ("cover sensor", "stop")}
    assert after_stop["cover sensor"] < after_stop["stop"] < 0  # the overseer's own judgement: covering is worse
