"""One contract for every CheckpointStore: the local journal file and the in-cluster
ConfigMap (on the real control plane)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.checkpoints.local import LocalStore
from migrate.errors import RunConflict
from migrate.journal import NodeState, RunState, RunStatus, StepStatus
from migrate.plan import PlanOptions, StepKind, Target
from migrate.planner import build_plan
from tests import builders as b

PLAN = build_plan(
    b.inventory([b.node("cp", control_plane=True), b.node("w1"), b.node("w2")]), PlanOptions(), Target("sim", "t", "")
)


@pytest.fixture(scope="module")
def lab_cluster(tmp_path_factory) -> Iterator[object]:
    from migrate.backends.kubernetes import KubernetesCluster
    from tests import labsupport

    lab = labsupport.lab_module().KubeLab(tmp_path_factory.mktemp("lab"), labsupport.bin_dir(), die_with_parent=True)
    try:
        kubeconfig = lab.up(nodes=2, fixtures=False)
        yield KubernetesCluster.connect(kubeconfig=str(kubeconfig))
    finally:
        lab.down()


@pytest.fixture(params=["local", pytest.param("configmap", marks=pytest.mark.realcluster)])
def make_store(request, tmp_path: Path):
    if request.param == "local":
        return lambda: LocalStore(tmp_path / "runs")
    from migrate.backends.kubernetes.journal import ConfigMapStore

    cluster = request.getfixturevalue("lab_cluster")
    fingerprint = f"sha256:{tmp_path.name[-20:]:0>32}".replace("_", "0")
    return lambda: ConfigMapStore(cluster, fingerprint)


def advanced(state: RunState) -> RunState:
    state = state.with_node_state("w1", NodeState.IN_PROGRESS, "2026-11-28T22:00:00Z")
    return state.with_step("w1", "w1/cordon", StepKind.CORDON, StepStatus.SUCCEEDED, "2026-11-28T22:00:01Z", "ok")


def test_an_empty_store_loads_nothing(make_store):
    assert make_store().load() is None


def test_what_was_saved_is_what_a_new_reader_loads(make_store):
    state = advanced(RunState.new(PLAN))
    make_store().save(state)
    assert make_store().load() == state


def test_later_saves_replace_earlier_ones(make_store):
    store = make_store()
    first = RunState.new(PLAN)
    store.save(first)
    second = advanced(first).with_status(RunStatus.INTERRUPTED)
    store.save(second)
    assert make_store().load() == second


def test_cluster_level_steps_survive_every_save(make_store):
    # One save at a time, as a run makes them: the local store appends these to its log.
    store = make_store()
    state = RunState.new(PLAN)
    store.save(state)
    for change in (
        lambda s: s.with_prepare("install-cilium", "started"),
        lambda s: s.with_prepare("install-cilium", "succeeded"),
        advanced,
        lambda s: s.with_finalize("restart-agents", "started"),
    ):
        state = change(state)
        store.save(state)
        assert make_store().load() == state


def test_archive_sets_a_finished_journal_aside(make_store):
    store = make_store()
    store.save(RunState.new(PLAN).with_status(RunStatus.COMPLETED))
    store.archive()
    assert make_store().load() is None


@pytest.mark.realcluster
def test_two_writers_of_one_in_cluster_journal_conflict_instead_of_overwriting(lab_cluster, tmp_path):
    from migrate.backends.kubernetes.journal import ConfigMapStore

    fingerprint = "sha256:" + "c0ffee" * 5 + "00"
    one, two = ConfigMapStore(lab_cluster, fingerprint), ConfigMapStore(lab_cluster, fingerprint)
    one.save(RunState.new(PLAN))
    assert two.load() is not None
    one.save(advanced(RunState.new(PLAN)))
    with pytest.raises(RunConflict, match="another executor"):
        two.save(RunState.new(PLAN).with_status(RunStatus.INTERRUPTED))


def test_local_store_appends_changes_and_a_new_reader_replays_them(tmp_path):
    store = LocalStore(tmp_path)
    state = RunState.new(PLAN)
    store.save(state)
    for i in range(3):
        state = state.with_step("w1", f"w1/step{i}", StepKind.CORDON, StepStatus.STARTED, "2026-11-28T22:00:00Z")
        store.save(state)
    assert len(store.log_path.read_text().splitlines()) == 3
    assert LocalStore(tmp_path).load() == state


def test_a_torn_last_log_line_is_a_save_that_never_returned(tmp_path):
    store = LocalStore(tmp_path)
    first = RunState.new(PLAN)
    store.save(first)
    second = advanced(first)
    store.save(second)
    with open(store.log_path, "ab") as f:
        f.write(b'{"planId": "' + first.plan_id.encode() + b'", "seq": 99, "nod')  # killed mid-append
    assert LocalStore(tmp_path).load() == second


def test_a_status_change_and_every_n_lines_rewrite_the_snapshot(tmp_path, monkeypatch):
    from migrate.checkpoints import local

    monkeypatch.setattr(local, "COMPACT_EVERY", 2)
    store = LocalStore(tmp_path)
    state = RunState.new(PLAN)
    store.save(state)
    state = advanced(state)
    store.save(state)
    store.save(state.with_node_state("w2", NodeState.IN_PROGRESS, "2026-11-28T22:00:02Z"))
    assert store.log_path.exists()
    state = state.with_status(RunStatus.INTERRUPTED)
    store.save(state)
    assert not store.log_path.exists()
    import json

    assert RunState.from_record(json.loads(store.path.read_text())) == state


def test_a_long_run_of_saves_over_many_nodes_and_status_changes_reloads_exactly(make_store, monkeypatch):
    # Small compaction thresholds, so both stores rewrite their snapshot several times.
    from migrate.backends.kubernetes import journal as incluster
    from migrate.checkpoints import local

    monkeypatch.setattr(local, "COMPACT_EVERY", 5)
    monkeypatch.setattr(incluster, "COMPACT_NODES", 2)
    plan = build_plan(
        b.inventory([b.node("cp", control_plane=True), *(b.node(f"w{i}") for i in range(1, 7))]),
        PlanOptions(max_unavailable=3),
        Target("sim", "t", ""),
    )
    store = make_store()
    state = RunState.new(plan)
    store.save(state)
    for i, node in enumerate(plan.nodes):
        state = state.with_node_state(node.name, NodeState.IN_PROGRESS, "2026-11-28T22:00:00Z")
        store.save(state)
        for step in node.steps:
            state = state.with_step(node.name, step.id, step.kind, StepStatus.SUCCEEDED, "2026-11-28T22:00:01Z", "ok")
            store.save(state)
        if i == 3:
            state = state.with_status(RunStatus.INTERRUPTED)
            store.save(state)
            assert make_store().load() == state
            state = state.with_status(RunStatus.RUNNING)
            store.save(state)
        assert make_store().load() == state


@pytest.mark.realcluster
def test_an_in_cluster_save_rewrites_only_the_small_delta(lab_cluster):
    from migrate.backends.kubernetes.journal import ConfigMapStore

    fingerprint = "sha256:" + "de17a0" * 5 + "00"
    store = ConfigMapStore(lab_cluster, fingerprint)
    state = RunState.new(PLAN)
    store.save(state)
    state = state.with_node_state("w2", NodeState.IN_PROGRESS, "2026-11-28T22:00:00Z")
    store.save(state)  # creates the delta
    snapshot_version = store._read(store.name)["metadata"]["resourceVersion"]
    before = lab_cluster.requests
    state = advanced(state)
    store.save(state)
    assert lab_cluster.requests - before == 1  # one replace of the delta ConfigMap
    assert store._read(store.name)["metadata"]["resourceVersion"] == snapshot_version
    assert ConfigMapStore(lab_cluster, fingerprint).load() == state


@pytest.mark.realcluster
def test_a_delta_older_than_its_snapshot_is_ignored(lab_cluster):
    """Killed between a new snapshot and the next delta: the old delta is in the snapshot
    already, and must not be replayed over it."""
    from migrate.backends.kubernetes.journal import ConfigMapStore

    fingerprint = "sha256:" + "0dde17" * 5 + "00"
    store = ConfigMapStore(lab_cluster, fingerprint)
    state = RunState.new(PLAN)
    store.save(state)
    state = advanced(state)
    store.save(state)  # delta: w1 cordoned
    state = state.with_node_state("w1", NodeState.PENDING, "2026-11-28T22:00:03Z").with_status(RunStatus.INTERRUPTED)
    store.save(state)  # snapshot (status changed); the delta still says w1 is in progress
    assert store._read(store.delta_name) is not None
    loaded = ConfigMapStore(lab_cluster, fingerprint).load()
    assert loaded == state and loaded.nodes["w1"].state is NodeState.PENDING
