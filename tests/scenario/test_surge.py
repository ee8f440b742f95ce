"""Surge before evict on both backends (migrate/surge.py, migrate/steps/surge.py): a
single-replica Deployment under a budget that allows no disruption is migrated without
being evicted, its replicas end where they began, and a surge cut short is put back by
the next run, forward or backward. On the real control plane the ReplicaSet controller,
the scheduler and the disruption controller decide; kill -9 itself: tests/cli/test_surge_kill.py."""

from __future__ import annotations

import threading

import pytest

from migrate.errors import Interrupted, NotFound, StepFailed, SurgeUnreadable
from migrate.journal import NodeState, RunStatus
from migrate.model import SURGE_ANNOTATION, SurgeRecord
from migrate.ports import HookContext
from migrate.steps.surge import put_back

FROZEN = {"namespace": "shop", "name": "thumbnailer-frozen", "selector": {"app": "thumbnailer"}, "maxUnavailable": "0"}
KEY = "shop/thumbnailer"


def host_of(backend) -> str:
    pods = [p for p in backend.cluster.inventory().pods if p.labels.get("app") == "thumbnailer" and not p.deleting]
    assert len(pods) == 1, pods
    assert pods[0].node
    return pods[0].node


def thumbnailer(backend):
    return backend.cluster.deployment("shop", "thumbnailer")


def evictions_of(backend, pod_name: str, pod_uid: str) -> list[str]:
    """The writes that evicted this pod (the simulation logs evictions by UID, the proxy by path)."""
    return [w for w in backend.writes() if ("evict" in w and (pod_uid in w or f"/pods/{pod_name}/" in w))]


def test_a_single_replica_under_a_frozen_budget_surges_instead_of_blocking(backend):
    backend.add_pdb(FROZEN)
    backend.wait_settled()
    backend.record_writes()
    plan = backend.plan()
    assert plan.blocking == ()
    host = host_of(backend)
    assert {n.name: n.surge for n in plan.nodes if n.surge} == {host: (KEY,)}
    old = next(p for p in backend.cluster.pods_on_node(host) if p.labels.get("app") == "thumbnailer")

    state = backend.executor(plan).apply()

    assert state.status is RunStatus.COMPLETED
    after = thumbnailer(backend)
    assert (after.replicas, after.surge) == (1, None)
    assert evictions_of(backend, old.name, old.uid) == [], "the surged pod was evicted, not retired"
    said = [e.message for e in backend.events if e.kind == "surge"]
    assert said and f"surge {KEY}: 1 -> 2 replicas before evicting from {host}" in said[0]
    drained = [e for e in backend.events if e.kind == "step-finished" and e.step == "drain" and e.node == host]
    assert f"{KEY} surged (1+1; 1 retired)" in drained[0].message
    backend.wait_settled()
    assert host_of(backend) != host


@pytest.mark.parametrize("whose", ["this plan's", "another plan's"])
def test_a_surge_a_killed_run_left_ends_at_the_original_count(backend, whose):
    plan = backend.plan()
    host = host_of(backend)
    # What a run killed just after its surge scaled up leaves: two replicas, the record on it.
    before = thumbnailer(backend)
    owner = plan.id if whose == "this plan's" else "0123456789ab"
    backend.cluster.scale_deployment(before, 2, SurgeRecord(1, 1, host, owner))
    assert thumbnailer(backend).surge is not None

    state = backend.executor(plan).apply()

    assert state.status is RunStatus.COMPLETED
    # Put back before any node, this plan's too: its node's drain may come waves after
    # another node's drain finds the surged replacement.
    said = [e.message for e in backend.events if e.kind == "surge"]
    assert said[0].startswith(f"put back {KEY} to 1 replica(s): a surge for {host} (plan {owner})"), said
    after = thumbnailer(backend)
    assert (after.replicas, after.surge) == (1, None)


def test_rollback_puts_back_a_surge_cut_short(backend):
    plan = backend.plan()
    stop, emit = backend.stopping_after("uncordon")
    ex = backend.executor(plan, stop=stop)
    ex.emit = emit
    with pytest.raises(Interrupted):  # after the canary
        ex.apply()
    host = host_of(backend)
    backend.cluster.scale_deployment(thumbnailer(backend), 2, SurgeRecord(1, 1, host, plan.id))

    state = backend.executor(plan).rollback()

    assert state.status is RunStatus.ROLLED_BACK
    after = thumbnailer(backend)
    assert (after.replicas, after.surge) == (1, None)


def test_a_replacement_that_cannot_start_fails_the_drain_and_leaves_the_workload_as_it_was(backend):
    plan = backend.plan(drain_timeout_seconds=5)
    host = host_of(backend)
    old = next(p for p in backend.cluster.pods_on_node(host) if p.labels.get("app") == "thumbnailer")

    def no_room(context: HookContext) -> list[str]:
        # Just before the host's steps (the plan's capacity check has passed): every other
        # worker cordoned by hand, so a replacement has nowhere to go.
        if context.point == "pre-node" and context.node == host:
            for n in backend.cluster.nodes():
                if n.name != host and not n.control_plane:
                    backend.cluster.set_unschedulable(n.name, True)
        return []

    with pytest.raises(StepFailed, match=f"{KEY}'s replacements were not Ready in time"):
        backend.executor(plan, hooks=no_room).apply()

    after = thumbnailer(backend)
    assert (after.replicas, after.surge) == (1, None)
    assert [p.uid for p in backend.cluster.pods_on_node(host) if p.labels.get("app") == "thumbnailer"] == [old.uid]
    state = backend.store().load()
    assert state is not None and state.nodes[host].state is NodeState.FAILED


GARBLED = '{"original": 1, "extra": 1, "node": '  # a record cut short by a hand edit


def test_an_unreadable_surge_record_refuses_apply_resume_and_rollback_before_any_write(backend):
    backend.record_writes()
    plan = backend.plan()  # made now: on the real cluster it binds the recording proxy
    stop, emit = backend.stopping_after("uncordon")
    ex = backend.executor(plan, stop=stop)
    ex.emit = emit
    with pytest.raises(Interrupted):  # after the canary: a run to resume and to roll back
        ex.apply()
    host = host_of(backend)
    before = thumbnailer(backend)
    backend.cluster.scale_deployment(before, 2, SurgeRecord(1, 1, host, "0123456789ab"))
    backend.edit_deployment("shop", "thumbnailer", annotations={SURGE_ANNOTATION: GARBLED})
    journal = backend.store().load()
    written = len(backend.writes())

    seen = backend.cluster.surged_deployments()
    assert [(d.key, d.replicas, d.surge, d.unreadable_surge) for d in seen] == [(KEY, 2, None, GARBLED)]
    for attempt in ("apply", "resume", "rollback"):
        ex = backend.executor(plan)
        with pytest.raises(SurgeUnreadable) as refused:
            ex.rollback() if attempt == "rollback" else ex.apply(resume=attempt == "resume")
        assert refused.value.exit_code == 2
        assert "\n" not in refused.value.message
        assert refused.value.message.startswith(
            f"Deployment {KEY} carries a surge record cni-migrate cannot read ({SURGE_ANNOTATION}: "
        ), attempt
        assert (
            f"kubectl -n shop scale deployment/thumbnailer --replicas=N && "
            f"kubectl -n shop annotate deployment/thumbnailer {SURGE_ANNOTATION}-" in refused.value.message
        )
    assert backend.writes()[written:] == []
    assert backend.store().load() == journal
    after = thumbnailer(backend)
    assert (after.replicas, after.surge, after.unreadable_surge) == (2, None, GARBLED)

    # The operator does what the line says; the run then goes on.
    backend.edit_deployment("shop", "thumbnailer", annotations={SURGE_ANNOTATION: None}, replicas=1)
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    after = thumbnailer(backend)
    assert (after.replicas, after.surge, after.unreadable_surge) == (1, None, None)


def test_a_surge_record_garbled_during_the_run_fails_the_drain_and_is_left_as_it_is(backend):
    plan = backend.plan()
    host = host_of(backend)

    def garble(context: HookContext) -> list[str]:
        # After the run's checks, before the host's drain reads the Deployment.
        if context.point == "pre-node" and context.node == host:
            backend.edit_deployment("shop", "thumbnailer", annotations={SURGE_ANNOTATION: GARBLED})
        return []

    with pytest.raises(StepFailed, match=f"cannot drain {host}: Deployment {KEY} carries a surge record"):
        backend.executor(plan, hooks=garble).apply()

    after = thumbnailer(backend)
    assert (after.replicas, after.unreadable_surge) == (1, GARBLED), "a new surge would have overwritten it"
    state = backend.store().load()
    assert state is not None and state.nodes[host].state is NodeState.FAILED


def during_the_surge(backend, ex, act) -> None:
    """Run ``act`` once, in the drain, just after the surge has scaled the Deployment up."""
    acted = []

    def emit(event) -> None:
        backend.events.append(event)
        if event.kind == "surge" and "replicas before evicting" in event.message and not acted:
            acted.append(event)
            act()

    ex.emit = emit


def test_a_deployment_deleted_during_its_surge_stays_deleted_and_the_drain_goes_on(backend):
    plan = backend.plan()
    host = host_of(backend)
    ex = backend.executor(plan)
    during_the_surge(backend, ex, lambda: backend.delete_deployment("shop", "thumbnailer"))

    state = ex.apply()

    assert state.status is RunStatus.COMPLETED
    with pytest.raises(NotFound):
        thumbnailer(backend)  # a scale is a patch: nothing brought it back
    said = f"{KEY} was deleted during its surge for {host}: nothing to put back"
    assert any(e.kind == "surge" and said in e.message for e in backend.events)
    drained = [e for e in backend.events if e.kind == "step-finished" and e.step == "drain" and e.node == host]
    assert said in drained[0].message


def test_a_deployment_scaled_by_someone_during_its_surge_keeps_their_count(backend):
    plan = backend.plan()
    host = host_of(backend)
    old = next(p for p in backend.cluster.pods_on_node(host) if p.labels.get("app") == "thumbnailer")
    ex = backend.executor(plan)
    during_the_surge(backend, ex, lambda: backend.edit_deployment("shop", "thumbnailer", replicas=3))

    state = ex.apply()

    assert state.status is RunStatus.COMPLETED
    after = thumbnailer(backend)
    assert (after.replicas, after.surge, after.unreadable_surge) == (3, None, None)
    said = f"{KEY}: scaled to 3 by someone else during its surge for {host} (from 1+1): kept at 3"
    assert any(e.kind == "surge" and said in e.message for e in backend.events)
    backend.wait_settled()
    assert old.uid not in {p.uid for p in backend.cluster.inventory().pods}, "its pod was left on the drained node"


def test_a_surge_a_killed_run_left_keeps_a_count_someone_set_since(backend):
    plan = backend.plan()
    host = host_of(backend)
    backend.cluster.scale_deployment(thumbnailer(backend), 2, SurgeRecord(1, 1, host, plan.id))
    backend.edit_deployment("shop", "thumbnailer", replicas=3)

    state = backend.executor(plan).apply()

    assert state.status is RunStatus.COMPLETED
    after = thumbnailer(backend)
    assert (after.replicas, after.surge) == (3, None)
    said = [e.message for e in backend.events if e.kind == "surge"]
    assert said[0].startswith(f"kept {KEY} at 3 replica(s), set by someone else, its record removed"), said


def test_a_wait_for_a_deployment_ends_on_its_change_and_says_when_it_is_gone(backend):
    host = host_of(backend)
    held = SurgeRecord(1, 1, host, "0123456789ab")
    d = backend.cluster.scale_deployment(thumbnailer(backend), 2, held)
    released = lambda now: now.surge != held  # noqa: E731 - the predicate _wait_turn passes

    unchanged = backend.cluster.wait_deployment(d, released, 0.5)
    assert (unchanged.replicas, unchanged.surge) == (2, held), "as last seen once the time is up"
    other = threading.Thread(target=lambda: put_back(backend.cluster, thumbnailer(backend)))
    other.start()  # another node's surge ends while this one waits
    back = backend.cluster.wait_deployment(d, released, 60)
    other.join()
    assert (back.replicas, back.surge) == (1, None)
    backend.delete_deployment("shop", "thumbnailer")
    with pytest.raises(NotFound):
        backend.cluster.wait_deployment(back, released, 60)


def test_a_drain_lists_its_node_pods_once_for_the_surge_and_its_evictions(backend):
    if backend.name != "simulated":
        pytest.skip("the real cluster's requests include the Lease renewals of another thread: no exact count")
    plan = backend.plan()
    host = host_of(backend)
    backend.inject("list-pods", 10**9, "500")  # never fires; the simulation then keeps the count of lists
    ex = backend.executor(plan)
    counts: dict[str, int] = {}

    def emit(event) -> None:
        backend.events.append(event)
        if event.step == "drain" and event.node == host and event.kind in ("step-started", "step-finished"):
            counts[event.kind] = backend.cluster.world()["counters"]["op"].get("list-pods", 0)

    ex.emit = emit
    assert ex.apply().status is RunStatus.COMPLETED

    # The node's pods once (the surge and the eviction loop share it), its replacements
    # Ready once, the node's pods again in the eviction loop, and the retired pod gone once.
    assert counts["step-finished"] - counts["step-started"] == 4
