"""What the operator asked of one run, fixed before it starts, and the gates' contract.

``RunConfig`` is frozen: the executor reads it and never changes it, so the options a run
had are the ones it was built with. Gates are the operator's say between waves and nodes
(window end, guided prompts); ``migrate.cli`` builds them, the wave loop asks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrate import traffic
from migrate.journal import RunState
from migrate.plan import NodePlan, Wave
from migrate.ports import HookCaller, no_hooks


@dataclass(frozen=True)
class GateAnswer:
    """What a gate decided, short of stopping (which it does by raising ``Interrupted``):
    nodes to leave out of this run, or the number of an earlier wave to roll back."""

    skip: tuple[str, ...] = ()
    rollback_wave: int | None = None


CONTINUE = GateAnswer()

Answer = GateAnswer | None
# Called before each wave with (wave, state); raises Interrupted to stop at this boundary.
WaveGate = Callable[[Wave, RunState], Answer]
# Called before each node of a wave is cordoned; same contract.
NodeGate = Callable[[Wave, NodePlan, RunState], Answer]


@dataclass(frozen=True)
class RunConfig:
    """What the operator asked of one run, fixed before it starts: the executor reads it and
    never changes it, so the options a run had are the ones it was built with."""

    # Called before each wave / each node of a wave (see ``WaveGate``, ``NodeGate``).
    wave_gate: WaveGate | None = None
    node_gate: NodeGate | None = None
    pause_after_canary: bool = False
    soak_seconds: float = 0.0
    agent_timeout: float = 300.0
    probe_timeout: float = 60.0
    probe_retry_gap: float = 5.0
    hooks: HookCaller = no_hooks
    # apply --install-cilium: installs Cilium with the plan's migration values (Helm on a real
    # cluster); None: Cilium must already run in migration mode.
    cilium_installer: Callable[[dict[str, Any]], str] | None = None
    # apply --traffic-watch: probers on every node for the run; a node whose window saw more
    # than max_probe_failures failed requests fails its validation.
    traffic_watch: bool = False
    max_probe_failures: int = traffic.DEFAULT_MAX_FAILURES
    traffic_start_timeout: float = 120.0
