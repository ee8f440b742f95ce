"""Whether a run may start, decided before anything is written: the plan is for this cluster
(and, for a new run, for the nodes it has now, whose blocking checks pass again), and the
journal holds no other plan's unfinished run.

Pure over the plan, the journal's state and what the cluster showed; each refusal is one
error saying what to do instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from migrate import preflight, reconcile
from migrate.errors import BadInput, PlanClusterMismatch, PlanStale, PreflightBlocked, RunConflict
from migrate.journal import NodeState, RunState, RunStatus
from migrate.model import ClusterIdentity, Inventory, NodeInfo
from migrate.plan import Plan, Severity
from migrate.ports import Cluster


def verify_plan(plan: Plan, cluster: Cluster, *, strict: bool = True) -> None:
    """The plan is for this cluster; ``strict`` (a new run): and for the nodes it has now."""
    same_cluster(plan, cluster.identity())
    if strict:
        same_nodes(plan, cluster.nodes())


def same_cluster(plan: Plan, identity: ClusterIdentity) -> None:
    if identity.fingerprint != plan.cluster.fingerprint:
        raise PlanClusterMismatch(
            f"plan {plan.id} is for another cluster (plan: {plan.cluster.server}, "
            f"kube-system {plan.cluster.kube_system_uid[:8]}; this: {identity.server}, "
            f"kube-system {identity.kube_system_uid[:8]})"
        )


def same_nodes(plan: Plan, nodes: Sequence[NodeInfo]) -> None:
    live = {(n.name, n.uid) for n in nodes}
    planned = set(plan.cluster.nodes)
    if live != planned:
        added = sorted(n for n, _ in live - planned)
        removed = sorted(n for n, _ in planned - live)
        parts = []
        if added:
            parts.append(f"added or replaced: {', '.join(added)}")
        if removed:
            parts.append(f"removed or replaced: {', '.join(removed)}")
        raise PlanStale(f"plan {plan.id} is stale: nodes changed since it was made ({'; '.join(parts)}); plan again")


def recheck(plan: Plan, inv: Inventory) -> None:
    """The findings in the file are the cluster as it was at plan time (and a file edited
    and summed again may have lost one): before a new run touches a node, run the plan's
    checks again on the live inventory and refuse on any blocking finding."""
    blocking = [f for f in preflight.recheck(plan, inv) if f.severity is Severity.BLOCKING]
    if blocking:
        found = "; ".join(f"{f.check}: {f.message}" for f in blocking)
        raise PreflightBlocked(
            f"blocking preflight checks fail on the cluster now that plan {plan.id} does not record (the "
            f"cluster changed since the plan was made, or its file was edited): {found}; fix that and plan "
            "again, nothing was changed",
            checks=sorted({f.check for f in blocking}),
        )


def check_journal(plan: Plan, state: RunState) -> None:
    """The journal is this cluster's, and holds this plan's run."""
    if state.fingerprint != plan.cluster.fingerprint:
        raise PlanClusterMismatch("the checkpoint journal belongs to another cluster")
    if state.plan_id != plan.id:
        counts = Counter(r.state.value for r in state.nodes.values())
        where = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        under_way = sorted(
            n for n, r in state.nodes.items() if r.state in (NodeState.IN_PROGRESS, NodeState.ROLLING_BACK)
        )
        busy = f"; under way: {', '.join(under_way)}" if under_way else ""
        raise RunConflict(
            f"this cluster's journal holds an unfinished run of plan {state.plan_id} ({state.status.value}: "
            f"{where}{busy}), not of plan {plan.id}; finish it first with that plan's file: "
            f"'cni-migrate resume PLANFILE' (to go on) or 'cni-migrate rollback PLANFILE' (to undo it), "
            "then apply this plan"
        )


def admit(plan: Plan, existing: RunState | None, resume: bool) -> RunState | None:
    """Whether this run may start: raises if not; returns the run to continue, or None for
    a new one (any finished or rolled-back run is archived)."""
    if existing is not None and existing.plan_id != plan.id:
        if not existing.finished:
            check_journal(plan, existing)
        existing = None
    if existing is not None:
        check_journal(plan, existing)
        if existing.status is RunStatus.ROLLED_BACK and not resume:
            existing = None
    if existing is None:
        if resume:
            raise BadInput(f"no interrupted run of plan {plan.id} to resume; use 'cni-migrate apply'")
        return None
    if existing.status is not RunStatus.COMPLETED and not resume:
        raise RunConflict(
            f"plan {plan.id} has an unfinished run ({existing.status.value}); "
            "continue it with 'cni-migrate resume' or undo it with 'cni-migrate rollback'"
        )
    return existing


def rollback_journal(
    plan: Plan, state: RunState | None, live: Mapping[str, reconcile.LiveNode], *, named: bool = False
) -> RunState:
    """The run to roll back: this plan's, or a new record when there is none (or only
    another plan's finished one) but nodes of this plan carry the migration label, or the
    operator ``named`` nodes (whose CNI configuration is then read)."""
    if state is not None and (state.plan_id == plan.id or not state.finished):
        check_journal(plan, state)
        return state
    labelled = [n.name for n in plan.nodes if reconcile.present(plan, live, n.name) and live[n.name].labelled]
    if not labelled and not named:
        raise BadInput(
            f"plan {plan.id} was never applied to this cluster and none of its nodes carries the migration "
            "label: nothing to roll back"
        )
    return RunState.new(plan).with_status(RunStatus.INTERRUPTED)
