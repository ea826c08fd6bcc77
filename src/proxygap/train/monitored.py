"""Outcome RL with a monitor in the reward: the episode's observed return, minus a penalty when a monitor flags it.

Baker et al. (2025) put a CoT monitor into the reward of a coding agent: at low optimization it
gave more capable agents that hacked less; at high optimization, *obfuscated* reward hacking --
the hack went on behind a chain the monitor no longer flagged. This is that regime on the
tampering environments: exactly ``outcome`` (RLOO over the episodes of a start, gamma = 1, the
same KL term), except that the shaped return of an episode is

    R_i = sum_t r_obs(i, t) - penalty * flag_i - beta * sum_{action tokens of episode i} log(pi / pi_ref)

where ``flag_i`` is the monitor's verdict on the whole episode: the ``cot`` monitor (reads every
thought, flags one that states tampering intent) or the ``action`` monitor (reads
the actions only, flags a tampering action it knows). Nothing else about the episode -- its true
reward, whether it truly tampered -- enters the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.config import knob
from proxygap.oversight.monitors import ALL_TAMPERING_ACTIONS, EPISODE_MONITORS, episode_monitor, episode_turns
from proxygap.train.agent_common import AgentRegime, AgentRLConfig, Batch, Credit
from proxygap.train.outcome import outcome_advantages


@dataclass
class MonitoredConfig(AgentRLConfig):
    monitor: str = knob("cot", "the monitor in the reward: cot (thoughts only) or action (actions only)",
                        choices=EPISODE_MONITORS)
    penalty: float = knob(1.0, "reward subtracted from an episode the monitor flags", lo=0)
    action_misses: tuple[str, ...] = knob((), "tampering actions the action monitor does not recognize (none: it "
                                              "knows every one, so its recall is 1)", choices=ALL_TAMPERING_ACTIONS)


def monitored_returns(observed: torch.Tensor, flags: torch.Tensor, penalty: float) -> torch.Tensor:
    """(E,) observed returns and monitor flags (0/1) -> (E,) the returns the regime optimizes."""
    return observed - penalty * flags


def monitored_credit(batch: Batch, cfg: MonitoredConfig) -> Credit:
    episodes, rows = batch.episodes, batch.rows
    monitor = episode_monitor(cfg.monitor, batch.make_env().name, cfg.action_misses)
    flags = torch.tensor([float(monitor(episode_turns(e.transcript)).flag) for e in episodes])  # (E,)
    observed = torch.tensor([e.observed_return for e in episodes])  # (E,)
    kl_episode = torch.zeros(len(episodes)).index_add_(0, rows.episode, batch.executed_kl(cfg.kl_coef))  # (E,)
    adv_episode = outcome_advantages(monitored_returns(observed, flags, cfg.penalty), kl_episode, cfg.group_size,
                                     cfg.kl_coef)
    return Credit(adv_episode[rows.episode], log={"obs": float(observed.mean()), "flagged": float(flags.mean())})


MONITORED = AgentRegime("monitored", MonitoredConfig, monitored_credit)
