"""A node that dies under its own swap or validation (issue 28, item 3), on every backend.

The machine stops inside its step (the simulation: its Ready condition flips; the
real control plane: its status patched NotReady, kwok told to leave it so, and the node
agent running nothing on it). The run must stop with ``NodeLost`` naming the node, touch
no other node, attempt no put-back on the dead machine, and leave a journal that resume
finishes once the node is back; resume while it is still down waits, then stops again.
"""

from __future__ import annotations

import pytest

from migrate.errors import NodeLost, ValidationFailed
from migrate.journal import NodeState, RunStatus, StepStatus
from migrate.model import Cni
from migrate.steps.liveness import NODE_READY

# Short on purpose: a dead node's waits end at these, and the test waits for them.
SHORT = {"agent_timeout": 8.0, "probe_timeout": 8.0}


class DiesMidStep:
    """The cluster, but ``victim``'s machine stops inside its ``step``: right after its
    Cilium agent is deleted (swap-cni: the new agent never comes), or as its first
    validation probe is asked for (validate)."""

    def __init__(self, backend, victim: str, step: str) -> None:
        self._backend, self._victim, self._step = backend, victim, step
        self.stopped = False

    def __getattr__(self, name: str):
        return getattr(self._backend.cluster, name)

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._backend.stop_node(self._victim)

    def delete_pod(self, pod) -> None:
        self._backend.cluster.delete_pod(pod)
        if self._step == "swap-cni" and pod.node == self._victim and pod.name.startswith("cilium-"):
            self._stop()

    def probe_many(self, node: str, checks, timeout: float):
        if self._step == "validate" and node == self._victim:
            self._stop()
        return self._backend.cluster.probe_many(node, checks, timeout)


def dying(backend, plan, victim: str, step: str, **kw):
    """An executor whose run stops ``victim``'s machine in the middle of its ``step``."""
    ex = backend.executor(plan, **{**SHORT, **kw})
    ex.cluster = DiesMidStep(backend, victim, step)
    return ex


def stopped_for(backend, plan, victim: str, step: str) -> NodeLost:
    with pytest.raises(NodeLost) as stopped:
        dying(backend, plan, victim, step).apply()
    return stopped.value


def assert_stopped_at(backend, victim: str, step: str) -> None:
    """The journal: resumable, the victim under way with ``step`` stopped by its loss, and
    no put-back tried on it."""
    state = backend.store().load()
    assert state.status is RunStatus.INTERRUPTED
    record = state.nodes[victim]
    assert record.state is NodeState.IN_PROGRESS
    stopped = record.steps[f"{victim}/{step}"]
    assert (stopped.status, stopped.detail.get("check")) == (StepStatus.INTERRUPTED, NODE_READY)
    assert not [sid for sid in record.steps if "/rollback/" in sid]


@pytest.mark.parametrize("step", ["swap-cni", "validate"])
def test_a_node_dying_in_its_step_stops_the_run_touching_no_other_node(backend, step):
    plan = backend.plan(max_unavailable=1)
    canary, victim = plan.waves[0].nodes[0].name, plan.waves[1].nodes[0].name
    later = [n.name for w in plan.waves[2:] for n in w.nodes]
    before = backend.node_view()

    lost = stopped_for(backend, plan, victim, step)

    assert lost.exit_code == 7
    assert f"{victim} went NotReady during {step}" in lost.message
    assert_stopped_at(backend, victim, step)
    state = backend.store().load()
    view = backend.node_view()
    assert state.nodes[canary].state is NodeState.MIGRATED and view[canary] == (Cni.CILIUM, False, "true")
    # The wave after the victim's never started: every later node as it was before the run.
    assert {name: state.nodes[name].state for name in later} == dict.fromkeys(later, NodeState.PENDING)
    assert {name: view[name] for name in later} == {name: before[name] for name in later}
    # The victim is left as it died: cordoned, labelled, nothing put back on a dead machine.
    assert view[victim][1:] == (True, "true")


def test_resume_waits_for_the_lost_node_and_stops_again_while_it_is_down(backend):
    plan = backend.plan(max_unavailable=1)
    victim = plan.waves[1].nodes[0].name
    stopped_for(backend, plan, victim, "swap-cni")
    view = backend.node_view()

    with pytest.raises(NodeLost) as again:
        backend.executor(plan, **SHORT).apply(resume=True)

    assert "still NotReady after 8s" in again.value.message
    assert any(e.kind == "wait" and e.node == victim and "NotReady" in e.message for e in backend.events)
    assert_stopped_at(backend, victim, "swap-cni")
    assert backend.node_view() == view


def test_resume_after_the_node_died_in_its_swap_and_came_back_migrates_every_node(backend):
    plan = backend.plan(max_unavailable=1)
    victim = plan.waves[1].nodes[0].name
    stopped_for(backend, plan, victim, "swap-cni")

    backend.start_node(victim)
    state = backend.executor(plan).apply(resume=True)

    assert state.status is RunStatus.COMPLETED
    assert {r.state for r in state.nodes.values()} == {NodeState.MIGRATED}
    assert set(backend.node_view().values()) == {(Cni.CILIUM, False, "true")}
    # The cluster was asked, not the journal: the node's CNI as it came back is reported.
    back = [e for e in backend.events if e.kind == "node-back" and e.node == victim]
    assert len(back) == 1 and "Ready again after it was lost in swap-cni" in back[0].message
    assert state.nodes[victim].attempt == 1  # the same pass, finished: not started over


def test_rollback_of_a_node_that_died_in_its_validation_puts_it_back_once_it_returns(backend):
    plan = backend.plan(max_unavailable=1)
    canary, victim = plan.waves[0].nodes[0].name, plan.waves[1].nodes[0].name
    stopped_for(backend, plan, victim, "validate")
    assert backend.store().load().nodes[victim].succeeded(f"{victim}/swap-cni")

    backend.start_node(victim)
    state = backend.executor(plan).rollback()

    assert state.status is RunStatus.ROLLED_BACK
    assert {state.nodes[n].state for n in (canary, victim)} == {NodeState.ROLLED_BACK}
    assert set(backend.node_view().values()) == {(Cni.CALICO, False, None)}


def test_a_node_lost_in_its_validation_that_comes_back_on_calico_is_put_back_not_validated(backend):
    plan = backend.plan(max_unavailable=1)
    victim = plan.waves[1].nodes[0].name
    stopped_for(backend, plan, victim, "validate")
    backend.restore_calico_by_hand(victim)  # its swap lost with the machine (a disk restored)

    backend.start_node(victim)
    with pytest.raises(ValidationFailed, match=f"{victim} failed: cni: it came back from NotReady on calico"):
        backend.executor(plan).apply(resume=True)

    state = backend.store().load()
    assert state.nodes[victim].state is NodeState.FAILED
    assert state.nodes[victim].steps[f"{victim}/validate"].detail["observed"] == "calico"
    assert backend.node_view()[victim] == (Cni.CALICO, False, None)
