"""Crash and fencing cases of the snapshot + delta ConfigMap protocol (migrate/backends/kubernetes/journal.py),
on an in-memory fake of the three ConfigMap calls with resourceVersion compare-and-swap."""

from __future__ import annotations

import copy
import random

import pytest

from migrate.backends.kubernetes import journal as incluster
from migrate.backends.kubernetes.journal import ConfigMapStore
from migrate.errors import Conflict, NotFound, RunConflict
from migrate.journal import NodeState, RunState, RunStatus, StepStatus
from migrate.plan import PlanOptions, Target
from migrate.planner import build_plan
from tests import builders as b

PLAN = build_plan(
    b.inventory([b.node("cp", control_plane=True), *(b.node(f"w{i}") for i in range(1, 9))]),
    PlanOptions(max_unavailable=3),
    Target("sim", "t", ""),
)
FP = "sha256:" + "ab" * 32


class Killed(BaseException):
    pass


class FakeCore:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.rv = 0
        self.writes = 0
        self.kill_at: int | None = None  # kill the process just before this write (1-based)
        self.after_write = None  # hook(name) after a successful write

    def _write(self, name: str, body: dict) -> dict:
        self.writes += 1
        if self.kill_at is not None and self.writes == self.kill_at:
            raise Killed()
        self.rv += 1
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[name] = obj
        if self.after_write:
            self.after_write(name)
        return copy.deepcopy(obj)

    def read_namespaced_config_map(self, name, namespace):
        if name not in self.objects:
            raise NotFound(name)
        return copy.deepcopy(self.objects[name])

    def create_namespaced_config_map(self, namespace, body):
        name = body["metadata"]["name"]
        if name in self.objects:
            raise Conflict(name)
        return self._write(name, body)

    def replace_namespaced_config_map(self, name, namespace, body):
        if name not in self.objects:
            raise NotFound(name)
        if body["metadata"].get("resourceVersion") != self.objects[name]["metadata"]["resourceVersion"]:
            raise Conflict(name)
        return self._write(name, body)

    def delete_namespaced_config_map(self, name, namespace):
        if name not in self.objects:
            raise NotFound(name)
        del self.objects[name]


class FakeRest:
    """The backend's request layer (``backends.kubernetes.api.Api``), calling straight through."""

    def json(self, what, fn, *args, **kw):
        return fn(*args, **kw)

    call = json


class FakeCluster:
    def __init__(self) -> None:
        self.core = FakeCore()
        self.rest = FakeRest()

    def ensure_namespace(self) -> None:
        pass


def transitions(seed: int, count: int) -> list[RunState]:
    rnd = random.Random(seed)
    state = RunState.new(PLAN)
    out = [state]
    names = [n.name for n in PLAN.nodes]
    for i in range(count):
        r = rnd.random()
        if r < 0.1:
            state = state.with_status(rnd.choice([RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.FAILED]))
        else:
            n = rnd.choice(names)
            state = state.with_step(n, f"{n}/s{i % 5}", PLAN.nodes[0].steps[0].kind, StepStatus.SUCCEEDED, "t", str(i))
        out.append(state)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_kill_at_every_write_reloads_the_last_or_the_next_state(seed, monkeypatch):
    """Crash between delta and snapshot (and everywhere else): what a new reader loads is the
    last state whose save returned, or the one being saved; resuming from it and saving on
    keeps reloading exactly."""
    monkeypatch.setattr(incluster, "COMPACT_NODES", 3)
    states = transitions(seed, 80)
    # count the writes of an uninterrupted run
    ref = FakeCluster()
    s = ConfigMapStore(ref, FP)
    for st in states:
        s.save(st)
    total = ref.core.writes
    for kill in range(1, total + 1):
        cluster = FakeCluster()
        cluster.core.kill_at = kill
        store = ConfigMapStore(cluster, FP)
        done = -1
        with pytest.raises(Killed):
            for i, st in enumerate(states):
                store.save(st)
                done = i
        cluster.core.kill_at = None
        loaded = ConfigMapStore(cluster, FP).load()
        allowed = [states[done]] if done >= 0 else [None]
        allowed.append(states[done + 1])
        assert loaded in allowed, (kill, done)
        if loaded is None:
            continue
        # resume: a new store goes on from what it loaded
        resumed = ConfigMapStore(cluster, FP)
        assert resumed.load() == loaded
        st = loaded
        for extra in range(5):
            st = st.with_node_state("w1", NodeState.IN_PROGRESS if extra % 2 else NodeState.PENDING, "t")
            resumed.save(st)
            assert ConfigMapStore(cluster, FP).load() == st


def test_a_second_executor_that_loaded_mid_compaction_keeps_its_writes_visible():
    """B (a second executor: the Lease failed) loads between A's delta write and A's snapshot
    rewrite. B's delta CAS then succeeds (A has not touched the delta since), A is fenced at its
    next delta write, but every delta B writes carries the *old* snapshot's seq as base: load()
    ignores it. B's transitions are accepted and silently lost (until B's own next snapshot
    rewrite, which conflicts)."""
    cluster = FakeCluster()
    a = ConfigMapStore(cluster, FP)
    s = RunState.new(PLAN)
    a.save(s)
    s = s.with_node_state("w1", NodeState.IN_PROGRESS, "t")
    a.save(s)  # delta created
    b_store = ConfigMapStore(cluster, FP)

    def b_loads_after_the_delta(name):
        if name == a.delta_name:
            cluster.core.after_write = None
            b_store.load()  # B loads now: snapshot old, delta new

    cluster.core.after_write = b_loads_after_the_delta
    s = s.with_status(RunStatus.INTERRUPTED)
    a.save(s)  # delta, then snapshot (status changed)
    b_state = b_store._last
    assert b_state == s
    b_state = b_state.with_node_state("w2", NodeState.IN_PROGRESS, "t")
    b_accepted = True
    try:
        b_store.save(b_state)  # B advances the run
    except RunConflict:
        b_accepted = False
    with pytest.raises(RunConflict):
        a.save(s.with_node_state("w3", NodeState.IN_PROGRESS, "t"))  # A is fenced now
    loaded = ConfigMapStore(cluster, FP).load()
    # Either B must have been refused, or what it wrote must be what a reader sees.
    assert (not b_accepted) or loaded == b_state, (
        f"B's save was accepted but a reader sees w2={loaded.nodes['w2'].state} (B wrote in-progress)"
    )
