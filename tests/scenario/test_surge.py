"""Surge before evict on both backends (migrate/surge.py, migrate/steps/surge.py): a
single-replica Deployment under a budget that allows no disruption is migrated without
being evicted, its replicas end where they began, and a surge cut short is put back by
the next run, forward or backward. On the real control plane the ReplicaSet controller,
the scheduler and the disruption controller decide; kill -9 itself: tests/cli/test_surge_kill.py."""

from __future__ import annotations

import pytest

from migrate.errors import Interrupted, StepFailed
from migrate.journal import NodeState, RunStatus
from migrate.model import SurgeRecord
from migrate.ports import HookContext

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
