"""Resume after a kill in the middle of a parallel wave.

A kill while one node of a parallel wave is being put back (ROLLING_BACK) and its wave
peer is mid-pipeline (drained and swapped, validation under way). On resume the executor
finishes the put-back and lets the peer finish, validated, as it would have; it once
treated every IN_PROGRESS peer as 'never started': it uncordoned the swapped, never-validated
peer and marked it PENDING, which also wiped its step records, so 'rollback' (everything the
run touched) no longer knew it.
"""

from __future__ import annotations

import shutil
import threading

import pytest

from migrate.errors import ValidationFailed
from migrate.journal import NodeState
from migrate.model import Cni
from migrate.plan import StepKind


class Snapshotting:
    """A store that copies journal + world at the first save where ``victim`` is rolling
    back: exactly what a SIGKILL right after that checkpoint leaves behind."""

    def __init__(self, inner, files, victim, reached):
        self.inner, self.files, self.victim, self.reached = inner, files, victim, reached
        self.copies = None

    def load(self):
        return self.inner.load()

    def archive(self):
        self.inner.archive()

    def save(self, state):
        self.inner.save(state)
        if self.copies is None and state.nodes[self.victim].state is NodeState.ROLLING_BACK:
            self.copies = {p: (p.read_bytes() if p.is_file() else None) for p in self.files()}
            self.reached.set()


@pytest.mark.parametrize("backend", ["simulated"], indirect=True)
def test_resume_after_kill_mid_put_back_keeps_the_peer_under_way(backend):
    plan = backend.plan(max_unavailable=2)
    victim, peer = (n.name for n in plan.waves[1].nodes[:2])
    backend.fail_validation(victim, "connectivity")
    reached = threading.Event()
    runs = backend.tmp / "runs"
    world = backend.cluster.path

    def files():
        return [world, *sorted(runs.iterdir())]

    ex = backend.executor(plan)
    ex.store = Snapshotting(ex.store, files, victim, reached)
    validate = ex._steps[StepKind.VALIDATE]

    peer_swapped = threading.Event()

    def slow_validate(ctx, node):
        if node.name == peer:
            peer_swapped.set()  # its swap-cni is recorded as done
            assert reached.wait(30)  # the peer validates only after its neighbour failed
        elif node.name == victim:
            # The neighbour fails only once the peer has swapped (its drain may take longer,
            # e.g. when it surges): the kill below must find the peer swapped and under way.
            assert peer_swapped.wait(30)
        return validate(ctx, node)

    ex._steps[StepKind.VALIDATE] = slow_validate
    with pytest.raises(ValidationFailed):
        ex.apply()
    copies = ex.store.copies
    assert copies is not None
    # "kill": put the journal and the cluster back to that instant
    for p in list(runs.iterdir()):
        p.unlink() if p.is_file() else shutil.rmtree(p)
    for p, data in copies.items():
        if data is not None:
            p.write_bytes(data)
    killed = backend.store().load()
    assert killed.nodes[victim].state is NodeState.ROLLING_BACK
    assert killed.nodes[peer].state is NodeState.IN_PROGRESS
    assert killed.nodes[peer].succeeded(f"{peer}/swap-cni")
    assert backend.cni(peer) is Cni.CILIUM

    backend.clear_failures()
    with pytest.raises(ValidationFailed):
        backend.executor(plan).apply(resume=True)
    state = backend.store().load()
    view = backend.node_view()
    # The peer was swapped and never validated. After resume it must not be back in
    # service unvalidated and forgotten by the journal.
    problems = []
    if view[peer][0] is Cni.CILIUM and not view[peer][1] and state.nodes[peer].state is not NodeState.MIGRATED:
        problems.append(f"{peer} is on Cilium, schedulable, unvalidated, journal says {state.nodes[peer].state}")
    if view[peer][0] is Cni.CILIUM and peer not in state.touched:
        problems.append(f"{peer} is on Cilium but not in state.touched: 'rollback' would leave it there")
    assert not problems, problems
