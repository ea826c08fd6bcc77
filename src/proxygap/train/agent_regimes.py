"""Every agent RL regime by name; each is trained by ``agent_common.train_agent``.

A regime's idea -- which reward an action is credited with, against which baseline -- is in
its own file (``outcome``, ``process``, ``mona``, ``decoupled``, ``expert_iteration``, ``monitored``), with its config class.
"""

from __future__ import annotations

from proxygap.train.agent_common import AgentRegime
from proxygap.train.decoupled import DECOUPLED
from proxygap.train.expert_iteration import EXPERT_ITERATION
from proxygap.train.mona import MONA
from proxygap.train.monitored import MONITORED
from proxygap.train.outcome import OUTCOME
from proxygap.train.process import PROCESS

AGENT_REGIMES: dict[str, AgentRegime] = {r.name: r for r in (OUTCOME, PROCESS, MONA, DECOUPLED, EXPERT_ITERATION,
                                                                MONITORED)}
