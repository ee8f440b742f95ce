"""End-to-end scenarios of the engine against a cluster backend (see conftest.backend)."""

from __future__ import annotations

import pytest

from migrate.errors import (
    Interrupted,
    LockHeld,
    PlanClusterMismatch,
    PlanStale,
    RunConflict,
    StepFailed,
    ValidationFailed,
)
from migrate.journal import NodeState, RunStatus
from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import StepKind
from migrate.ports import StopFlag
from migrate.steps import StepContext, registry


def node_view(cluster):
    return {n.name: (n.cni, n.unschedulable, n.labels.get(MIGRATION_LABEL)) for n in cluster.nodes()}


def replicas_ok(cluster):
    inv = cluster.inventory()
    for pdb in inv.pdbs:
        assert pdb.current_healthy >= pdb.desired_healthy, pdb


def test_full_migration_ends_with_every_node_on_cilium_and_schedulable(backend):
    plan = backend.plan(max_unavailable=2)
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    assert {r.state for r in state.nodes.values()} == {NodeState.MIGRATED}
    assert set(node_view(backend.cluster).values()) == {(Cni.CILIUM, False, "true")}
    replicas_ok(backend.cluster)


def test_planning_again_after_a_full_run_has_nothing_to_do_and_says_why(backend):
    backend.executor(backend.plan()).apply()
    again = backend.plan()
    assert again.nodes == ()
    assert {reason for _, reason in again.excluded} == {"already migrated to Cilium"}


def test_applying_a_completed_plan_again_changes_nothing(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    before = len(backend.cluster.world()["actions"])
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    assert len(backend.cluster.world()["actions"]) == before


@pytest.mark.parametrize("kind", [StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI, StepKind.UNCORDON])
def test_running_a_step_twice_changes_nothing_the_second_time(backend, kind):
    plan = backend.plan()
    node = plan.nodes[0]
    ctx = StepContext(
        cluster=backend.cluster,
        options=plan.options,
        clock=backend.clock,
        stop=StopFlag(),
        emit=backend.events.append,
        plan_id=plan.id,
    )
    steps = registry()
    for k in (StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI, StepKind.UNCORDON):
        steps[k](ctx, node)
        if k is kind:
            break
    world_before = backend.cluster.world()
    steps[kind](ctx, node)
    world_after = backend.cluster.world()
    changed = [a for a in world_after["actions"][len(world_before["actions"]) :] if a["changed"]]
    assert changed == []
    assert world_after["pods"] == world_before["pods"]


def test_failed_validation_rolls_the_node_back_and_stops_the_run(backend):
    plan = backend.plan(max_unavailable=2)
    victim = plan.waves[1].nodes[0].name
    backend.cluster.update(failValidation={victim: ["connectivity"]})
    with pytest.raises(ValidationFailed, match=f"{victim}.*connectivity"):
        backend.executor(plan).apply()
    view = node_view(backend.cluster)
    assert view[victim] == (Cni.CALICO, False, None)
    state = backend.store().load()
    assert state.nodes[victim].state is NodeState.FAILED
    assert "connectivity" in state.nodes[victim].message
    # The canary stays migrated; the failed node's wave peer was never started and is free again.
    assert view[plan.waves[0].nodes[0].name][0] is Cni.CILIUM
    for peer in plan.waves[1].nodes[1:]:
        assert view[peer.name] == (Cni.CALICO, False, None)
        assert state.nodes[peer.name].state is NodeState.PENDING
    replicas_ok(backend.cluster)


def test_resume_after_a_fixed_validation_failure_completes(backend):
    plan = backend.plan()
    victim = plan.waves[0].nodes[0].name
    backend.cluster.update(failValidation={victim: ["*"]})
    with pytest.raises(ValidationFailed):
        backend.executor(plan).apply()
    backend.cluster.update(failValidation={})
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert state.nodes[victim].attempt == 2


def test_manual_rollback_of_one_node_then_of_all(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    one = plan.nodes[1].name
    state = backend.executor(plan).rollback([one])
    assert state.nodes[one].state is NodeState.ROLLED_BACK
    view = node_view(backend.cluster)
    assert view[one] == (Cni.CALICO, False, None)
    assert sum(1 for v in view.values() if v[0] is Cni.CILIUM) == len(view) - 1
    state = backend.executor(plan).rollback()
    assert state.status is RunStatus.ROLLED_BACK
    assert set(node_view(backend.cluster).values()) == {(Cni.CALICO, False, None)}
    replicas_ok(backend.cluster)


def test_rollback_runs_in_reverse_plan_order(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    backend.events.clear()
    backend.executor(plan).rollback()
    order = [e.node for e in backend.events if e.kind == "step-started"]
    order = list(dict.fromkeys(order))
    assert order == [n.name for n in reversed(plan.nodes)]


def test_a_pdb_allowing_no_disruption_fails_the_drain_naming_it_and_uncordons(backend):
    plan = backend.plan(drain_timeout_seconds=30)
    world = backend.cluster.world()
    world["pdbs"].append({"namespace": "shop", "name": "frozen", "selector": {"app": "api"}, "maxUnavailable": "0"})
    backend.cluster.update(pdbs=world["pdbs"])
    with pytest.raises(StepFailed, match="shop/frozen") as info:
        backend.executor(plan).apply()
    assert "timed out after 30s" in info.value.message
    assert not any(unschedulable for _, unschedulable, _ in node_view(backend.cluster).values())
    assert backend.clock.t >= 30


def test_stop_request_interrupts_at_a_step_boundary_and_resume_finishes(backend):
    plan = backend.plan()
    stop = StopFlag()

    def stop_after_first_drain(event):
        if event.kind == "step-finished" and event.step == "drain":
            stop.set("test asked to stop")

    ex = backend.executor(plan, stop=stop)
    ex.emit = lambda e: (backend.events.append(e), stop_after_first_drain(e))
    with pytest.raises(Interrupted):
        ex.apply()
    assert backend.store().load().status is RunStatus.INTERRUPTED
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED


def test_apply_on_an_interrupted_run_points_to_resume(backend):
    plan = backend.plan()
    stop = StopFlag()
    stop.set("stop at once")
    with pytest.raises(Interrupted):
        backend.executor(plan, stop=stop).apply()
    with pytest.raises(RunConflict, match="resume"):
        backend.executor(plan).apply()


def test_a_second_executor_is_refused_while_the_first_holds_the_lock(backend):
    plan = backend.plan()
    first = backend.executor(plan)
    with first.lock.hold(), pytest.raises(LockHeld):
        backend.executor(plan).apply()


def test_plan_for_another_cluster_is_refused_before_any_write(backend, tmp_path):
    from migrate.backends import simworld
    from migrate.backends.simulated import SimStore

    other = SimStore(tmp_path / "other").create("scenario", simworld.default_world("scenario", seed=99))
    plan = backend.plan()
    actions = len(other.world()["actions"])
    backend.cluster = other
    with pytest.raises(PlanClusterMismatch):
        backend.executor(plan).apply()
    assert len(other.world()["actions"]) == actions


def test_plan_made_before_a_node_was_added_is_stale(backend):
    plan = backend.plan()
    world = backend.cluster.world()
    extra = dict(world["nodes"]["worker-1"], uid="new-node-uid", index=99)
    world["nodes"]["worker-9"] = extra
    backend.cluster.update(nodes=world["nodes"])
    with pytest.raises(PlanStale, match="worker-9"):
        backend.executor(plan).apply()


def test_an_unfinished_run_of_another_plan_blocks_a_new_plan(backend):
    first = backend.plan()
    stop = StopFlag()
    stop.set("stop")
    with pytest.raises(Interrupted):
        backend.executor(first, stop=stop).apply()
    second = backend.plan(max_unavailable=3)
    with pytest.raises(RunConflict, match=first.id):
        backend.executor(second).apply()


def test_an_injected_429_on_eviction_is_retried_and_the_run_completes(backend):
    backend.cluster.update(faults=[{"op": "evict", "nth": 2, "error": "429"}])
    state = backend.executor(backend.plan()).apply()
    assert state.status is RunStatus.COMPLETED
