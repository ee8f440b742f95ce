"""The nodes of a parallel wave share journal writes (group commit), and no step acts
before its own transition is in the journal."""

from __future__ import annotations

import threading

import pytest

from migrate.executor.commit import GroupCommit
from migrate.journal import NodeState, RunState, StepStatus
from migrate.plan import StepKind, step_id


class Recording:
    """A store that keeps every state it was given; the first save can be held back."""

    def __init__(self, inner, hold_first: bool = False):
        self.inner, self.saved = inner, []
        self.held = threading.Event() if hold_first else None
        self.release = threading.Event()

    def load(self):
        return self.inner.load()

    def archive(self):
        self.inner.archive()

    def save(self, state):
        if self.held is not None and not self.held.is_set():
            self.held.set()
            assert self.release.wait(30), "the test never released the first save"
        self.inner.save(state)
        self.saved.append(state)


@pytest.mark.parametrize("backend", ["simulated"], indirect=True)
def test_changes_made_during_a_save_share_the_next_one(backend):
    plan = backend.plan(max_unavailable=8)
    store = Recording(backend.store(), hold_first=True)
    journal = GroupCommit(store, RunState.new(plan))
    names = [n.name for n in plan.nodes]
    applied = threading.Semaphore(0)

    def change(name):
        def to(state):
            applied.release()
            return state.with_node_state(name, NodeState.IN_PROGRESS, "2026-11-28T22:00:00Z")

        return to

    threads = [threading.Thread(target=journal.commit, args=(change(n),)) for n in names]
    for thread in threads:
        thread.start()
    assert store.held.wait(30)
    for _ in names:  # every change is made while the first save is under way
        assert applied.acquire(timeout=30)
    store.release.set()
    for thread in threads:
        thread.join(30)
    assert len(names) > 2
    # The first save carried one change; the next carried all the others; nobody saved again.
    assert len(store.saved) == 2
    assert {n for n in names if store.saved[-1].nodes[n].state is NodeState.IN_PROGRESS} == set(names)
    assert store.inner.load().nodes[names[-1]].state is NodeState.IN_PROGRESS


@pytest.mark.parametrize("backend", ["simulated"], indirect=True)
def test_a_parallel_wave_reports_only_what_the_journal_holds(backend):
    plan = backend.plan(max_unavailable=4)
    assert max(len(w.nodes) for w in plan.waves) > 1
    ex = backend.executor(plan)
    ex.store = store = Recording(ex.store)
    checked = []

    def emit(event):
        # A step is reported after its transition is checkpointed: the latest save has it
        # (a later save may hold more, never less: the reporting thread runs that step).
        if event.kind in ("step-started", "step-finished") and event.phase == "apply":
            record = store.saved[-1].nodes[event.node].steps[step_id(event.node, StepKind(event.step))]
            want = StepStatus.STARTED if event.kind == "step-started" else StepStatus(event.outcome)
            checked.append((event.node, event.step, event.kind, record.status is want))

    ex.emit = emit
    state = ex.apply()
    assert {r.state for r in state.nodes.values()} == {NodeState.MIGRATED}
    assert len(checked) == 2 * sum(len(n.steps) for n in plan.nodes)
    assert [c for c in checked if not c[3]] == []
