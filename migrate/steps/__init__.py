"""Steps: one module per step kind, each an idempotent function ``run(ctx, node) -> message``.

Every step first looks at the cluster's actual state and does only what is still missing,
so a step that was started but not recorded as finished is safe to run again on resume.
A step returns a short message ("cordoned", "already cordoned") or raises a MigrateError;
the executor records either outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from migrate.errors import Interrupted
from migrate.plan import Handoff, NodePlan, PlanOptions, StepKind
from migrate.ports import Clock, Cluster, EventSink, HookCaller, StopFlag, no_hooks
from migrate.traffic import TrafficWatch


@dataclass(frozen=True)
class StepContext:
    cluster: Cluster
    options: PlanOptions
    clock: Clock
    stop: StopFlag
    emit: EventSink
    plan_id: str
    agent_timeout: float = 300.0
    probe_timeout: float = 60.0
    probe_retry_gap: float = 5.0  # seconds between attempts of a failing validation check
    hooks: HookCaller = no_hooks
    # apply --traffic-watch: the probers' evidence, checked at the end of each validation
    traffic: TrafficWatch | None = None
    # Deployments (namespace/name) a drain surges wherever it finds their pods: those the
    # plan lists for any node (a surged pod moves, and may be found by a later wave's drain)
    surges: frozenset[str] = frozenset()
    # Deployments (namespace/name) whose pods a drain hands off from their UDP Services
    # wherever it finds them: those the plan lists for any node (steps/handoff.merged)
    handoffs: Mapping[str, Handoff] = field(default_factory=dict)
    # when a node's step last started (RFC 3339, from the journal), "" if never
    started: Callable[[str, StepKind], str] = lambda node, kind: ""
    # the plan's wave of a node (for what its hooks are told), None when not known
    wave_of: Callable[[str], int | None] = lambda node: None

    def check_stop(self, node: str) -> None:
        if self.stop.is_set():
            raise Interrupted(f"stopped during {node}: {self.stop.reason}", node=node)


StepFn = Callable[[StepContext, NodePlan], str]


def registry() -> dict[StepKind, StepFn]:
    from migrate.steps import cordon, drain, restore_cni, swap_cni, uncordon, validate

    return {
        StepKind.CORDON: cordon.run,
        StepKind.DRAIN: drain.run,
        StepKind.SWAP_CNI: swap_cni.run,
        StepKind.VALIDATE: validate.run,
        StepKind.UNCORDON: uncordon.run,
        StepKind.RESTORE_CNI: restore_cni.run,
    }
