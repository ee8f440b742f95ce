"""What the rooms of one apply or rollback share while it holds the lock: the plan and its
configuration, the cluster, the journal (``GroupCommit``), and the one way events leave.

A ``Run`` is made when the journal is opened and lives as long as the command; the wave
loop, the node pipelines, the step runner and the cluster-level steps each get it instead of
reaching into the executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrate.executor.commit import GroupCommit
from migrate.executor.config import RunConfig
from migrate.journal import NodeState, RunState, RunStatus
from migrate.plan import NodePlan, Plan, StepKind, Wave, step_id
from migrate.ports import Clock, Cluster, Event, HookContext, StopFlag


@dataclass(frozen=True)
class Run:
    plan: Plan
    config: RunConfig
    cluster: Cluster
    clock: Clock
    stop: StopFlag
    journal: GroupCommit
    # The one way events leave the executor: the sinks see one event at a time, also when
    # the nodes of a wave report from their threads.
    report: Callable[[Event], None]

    @property
    def state(self) -> RunState:
        return self.journal.state

    def commit(self, change: Callable[[RunState], RunState]) -> RunState:
        return self.journal.commit(change)

    def set_status(self, status: RunStatus) -> RunState:
        return self.commit(lambda s: s.with_status(status))

    def node_state(self, name: str, state: NodeState, *, message: str = "", reason: str | None = None) -> None:
        self.commit(lambda s: s.with_node_state(name, state, self.now(), message=message, reason=reason))

    def now(self) -> str:
        return self.clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")

    def hook(self, point: str, **context: Any) -> list[str]:
        """Run the operator's hooks of ``point`` (``HookContext``'s fields as keywords)."""
        return self.config.hooks(HookContext(point, self.plan.id, **context))

    def wave_of(self, node: NodePlan) -> Wave:
        return next(w for w in self.plan.waves if node in w.nodes)

    def started_at(self, node: str, kind: StepKind) -> str:
        """When a node's forward step last started (RFC 3339), "" if never."""
        record = self.state.nodes[node].steps.get(step_id(node, kind))
        return record.started_at if record is not None else ""
