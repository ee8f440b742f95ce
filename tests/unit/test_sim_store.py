"""The simulated cluster's store (issue 29): a call writes what it changed, another process's
writes are seen, a refused call leaves the world as committed, the nodes of a wave write
from their threads without losing each other's writes, and a world an earlier version kept
as JSON is moved into the database."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from migrate.backends import simworld
from migrate.backends.simrows import Rows
from migrate.backends.simulated import SimStore
from migrate.errors import EvictionRefused, NotFound


@pytest.fixture
def store(tmp_path: Path) -> SimStore:
    return SimStore(tmp_path)


def test_rows_note_each_key_set_deleted_or_written_to_and_keep_the_order_of_a_world_read_back():
    rows = Rows([("b", {"x": 1}), ("d", {"x": 2}), ("e", {"x": 3})])
    rows["b"]["x"] = 5
    rows["d"].update(x=6)
    rows["e"].pop("x")
    assert rows.settled() == {"b", "d", "e"} and rows.settled() == set()
    fresh = {"x": 0}
    rows["a"] = fresh  # a new pod with a UID that sorts first, as a copied cluster's do
    fresh["x"] = 9  # its creator may still change it in the same call
    del rows["d"]
    assert rows.settled() == {"a", "d"}
    assert list(rows) == ["a", "b", "e"] and rows["a"] == {"x": 9}
    rows["a"]["x"] = 1  # a row again: noted
    assert rows.settled() == {"a"}


def test_a_write_by_another_process_is_seen_by_a_cluster_that_read_the_world_before(store):
    first = store.create("c", simworld.default_world("c", nodes=4))
    second = store.open("c")  # its own connection, as another process would have
    assert not second.get_node("worker-1").unschedulable
    assert first.set_unschedulable("worker-1", True)
    assert second.get_node("worker-1").unschedulable
    assert not second.set_unschedulable("worker-1", True)  # nothing left to change
    second.set_node_label("worker-2", "k", "v")
    assert first.get_node("worker-2").labels["k"] == "v"
    assert store.open("c").world() == first.world() == second.world()


def test_a_refused_or_failed_call_leaves_the_world_as_committed(store):
    cluster = store.create("c", simworld.default_world("c", nodes=4))
    cluster.update(pdbs=[{**pdb, "maxUnavailable": "0"} for pdb in cluster.world()["pdbs"] if pdb["name"] == "api"])
    before = cluster.world()
    api = next(p for p in cluster.inventory().pods if p.labels.get("app") == "api")
    with pytest.raises(EvictionRefused):
        cluster.evict(api)
    with pytest.raises(NotFound):
        cluster.set_unschedulable("worker-9", True)
    assert cluster.world() == before == store.open("c").world()


def test_the_nodes_of_a_wave_write_from_their_threads_and_no_write_is_lost(store):
    cluster = store.create("c", simworld.default_world("c", nodes=12))
    workers = [n.name for n in cluster.nodes() if n.name.startswith("worker-")]

    def migrate(node: str) -> None:
        cluster.set_unschedulable(node, True)
        for pod in cluster.pods_on_node(node):
            if pod.owner is not None and pod.owner.kind == "Deployment" and pod.labels.get("app") == "frontend":
                cluster.delete_pod(pod)
        cluster.set_node_label(node, "wave", "1")

    threads = [threading.Thread(target=migrate, args=(node,)) for node in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nodes = {n.name: n for n in store.open("c").nodes()}
    assert all(nodes[w].unschedulable and nodes[w].labels["wave"] == "1" for w in workers)
    world = store.open("c").world()
    frontend = [p for p in world["pods"].values() if p["labels"].get("app") == "frontend"]
    assert len(frontend) == len(workers)  # every replica deleted was re-created: no pod lost
    done = [(a["op"], a["target"]) for a in world["actions"] if a["op"] in ("cordon", "label") and a["changed"]]
    assert sorted(done) == sorted([("cordon", w) for w in workers] + [("label", f"{w}:wave") for w in workers])


def test_an_edit_in_place_the_store_cannot_see_fails_the_suites_check(store):
    cluster = store.create("c", simworld.default_world("c", nodes=3))
    edit = cluster.file.transaction("patch-node", write=True)
    with pytest.raises(AssertionError, match="a change was not written"), edit as world:
        world["nodes"]["worker-1"]["labels"]["k"] = "v"  # in place: not noted


def test_a_world_an_earlier_version_kept_as_json_is_moved_into_the_database(store, tmp_path):
    world = simworld.default_world("old", nodes=3)
    legacy = tmp_path / "sims" / "old" / "world.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps(world))
    assert store.names() == ["old"]
    assert [n.name for n in store.open("old").nodes()] == ["cp-1", "worker-1", "worker-2"]
    assert not legacy.exists() and store.open("old").world()["uid"] == world["uid"]
