"""The cluster is the truth: before apply, resume, rollback and finalize act they read the
live nodes, and the journal gives way where it disagrees (see migrate/reconcile.py)."""

from __future__ import annotations

import pytest

from migrate import output, reconcile
from migrate.errors import BadInput, Interrupted
from migrate.finalize import Finalizer
from migrate.journal import NodeState, RunStatus
from migrate.model import Cni


def finalizer(backend, plan, ex) -> Finalizer:
    return Finalizer(plan, backend.cluster, ex.store, ex.lock, ex.emit, agent_timeout=60)


def test_finalize_refuses_while_an_excluded_node_runs_calico_and_removes_nothing(backend):
    excluded = "worker-2"
    plan = backend.plan(exclude_nodes=(excluded,))
    ex = backend.executor(plan)
    assert ex.apply().status is RunStatus.COMPLETED
    backend.set_cilium_config("enable-policy", "default")
    with pytest.raises(
        BadInput, match=f"every node on Cilium; not yet: {excluded} .*excluded from the plan.*nothing was changed"
    ):
        finalizer(backend, plan, ex).run(remove_calico=True)
    assert backend.cluster.inventory().calico_install == "operator"
    assert backend.cni(excluded) is Cni.CALICO
    assert ex.store.load().finalize == {}


def test_a_migrated_node_put_back_on_calico_by_hand_is_migrated_again_and_finalize_waits(backend):
    plan = backend.plan()
    ex = backend.executor(plan)
    ex.apply()
    again = plan.nodes[-1].name
    backend.restore_calico_by_hand(again)
    with pytest.raises(BadInput, match=f"not yet: {again} \\(calico"):
        finalizer(backend, plan, ex).run(remove_calico=False)
    backend.events.clear()
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    assert backend.cni(again) is Cni.CILIUM
    reconciled = [e for e in backend.events if e.kind == "reconciled"]
    assert [e.node for e in reconciled] == [again] and "migrating it again" in reconciled[0].message
    drained = {e.node for e in backend.events if e.kind == "step-started" and e.step == "drain"}
    assert drained == {again}, "only the node the cluster disagrees on is moved again"


def test_a_cordon_set_by_hand_after_the_plan_is_kept(backend):
    plan = backend.plan()
    held = plan.nodes[-1].name
    backend.cluster.set_unschedulable(held, True)
    assert backend.executor(plan).apply().status is RunStatus.COMPLETED
    view = backend.node_view()
    assert view[held] == (Cni.CILIUM, True, "true")
    assert all(not unschedulable for name, (_, unschedulable, _) in view.items() if name != held)


def test_a_node_removed_mid_run_is_reported_and_resume_and_rollback_still_work(backend):
    plan = backend.plan()
    first, pending = plan.nodes[0].name, plan.nodes[-1].name
    stop, emit = backend.stopping_after("uncordon")
    ex = backend.executor(plan, stop=stop)
    ex.emit = emit
    with pytest.raises(Interrupted):
        ex.apply()
    assert backend.store().load().nodes[first].state is NodeState.MIGRATED
    backend.remove_node(pending)
    # status, before anything acts: the live node list beside the journal.
    record = output.status_record(
        plan, backend.store().load(), output.LiveView(nodes=reconcile.live_map(backend.cluster.nodes()))
    )
    seen = {n["name"]: n for n in record["nodes"]}
    assert (seen[pending]["live"], seen[pending]["drift"]) == ({"present": False}, "gone from the cluster")
    assert seen[first]["live"]["cni"] == "cilium" and seen[first]["drift"] == ""
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert state.nodes[pending].state is NodeState.GONE
    backend.remove_node(first)
    backend.events.clear()
    state = backend.executor(plan).rollback()
    assert state.status is RunStatus.ROLLED_BACK
    assert {n: v for n, v in backend.node_view().items()} == {
        n.name: (Cni.CALICO, False, None) for n in plan.nodes if n.name not in (first, pending)
    }
    assert state.nodes[first].state is NodeState.GONE
    assert any(e.node == first and "gone from the cluster" in e.message for e in backend.events)


def test_rollback_without_a_journal_puts_back_every_labelled_node(backend):
    """The journal is lost (another machine, a wiped home): the migration label on the
    nodes is enough to know what to put back."""
    plan = backend.plan()
    backend.executor(plan).apply()
    backend.store().path.unlink()
    one = plan.nodes[0].name
    state = backend.executor(plan).rollback([one])
    assert state.nodes[one].state is NodeState.ROLLED_BACK
    assert backend.node_view()[one] == (Cni.CALICO, False, None)
    state = backend.executor(plan).rollback()
    assert state.status is RunStatus.ROLLED_BACK
    assert set(backend.node_view().values()) == {(Cni.CALICO, False, None)}


def test_rollback_of_a_plan_never_applied_says_so_and_changes_nothing(backend):
    plan = backend.plan()
    before = backend.snapshot()
    with pytest.raises(BadInput, match="nothing to roll back"):
        backend.executor(plan).rollback()
    assert backend.snapshot() == before


def test_a_plan_applied_after_another_plan_finished_skips_nodes_already_on_cilium(backend):
    first = backend.plan(max_unavailable=1)
    backend.executor(first).apply()
    second = backend.plan(max_unavailable=1, canary=0)
    assert backend.executor(second).apply().status is RunStatus.COMPLETED
    pods = backend.snapshot()["pods"]
    backend.events.clear()
    state = backend.executor(first).apply()
    assert state.status is RunStatus.COMPLETED
    assert all(r.state is NodeState.MIGRATED for r in state.nodes.values())
    assert not [e for e in backend.events if e.kind == "step-started"], "nothing is drained or swapped again"
    assert backend.snapshot()["pods"] == pods


def test_rollback_puts_back_every_node_it_touched_whatever_else_changed(backend):
    """Nodes added since the plan, and a node outside the plan gone NotReady, are not a
    reason to refuse putting the run's nodes back (in the simulation; a kwok node's
    heartbeat would mark it Ready again)."""
    plan = backend.plan(exclude_nodes=("worker-2",))
    assert backend.executor(plan).apply().status is RunStatus.COMPLETED
    backend.add_node("worker-9")
    if backend.name == "simulated":
        world = backend.cluster.world()
        world["nodes"]["worker-2"]["ready"] = False
        backend.cluster.update(nodes=world["nodes"])
    state = backend.executor(plan).rollback()
    assert state.status is RunStatus.ROLLED_BACK
    view = backend.node_view()
    assert {view[n.name] for n in plan.nodes} == {(Cni.CALICO, False, None)}
    assert backend.cni("worker-2") is Cni.CALICO
