"""Waiting for evicted pods on the Kubernetes backend: pods that were all in the node's last
list are watched from that list's version (a watch from a past version misses no deletion),
with no second list; a pod the list did not hold is waited for from a new list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from migrate.backends.kubernetes.pods import PodWrites


def pod(uid: str) -> dict[str, Any]:
    meta = {"name": uid, "namespace": "ns", "uid": uid, "resourceVersion": "1"}
    return {"metadata": meta, "spec": {"nodeName": "n1"}}


class FakeRest:
    def __init__(self, listed: list[dict[str, Any]], version: str, deleted: list[str]) -> None:
        self.listed, self.version, self.deleted = listed, version, deleted
        self.asked: list[tuple[str, str]] = []

    def list_all(self, what: str, fn: Any, *args: Any, convert: Any = None, **kw: Any) -> tuple[list[Any], str]:
        self.asked.append(("list", ""))
        return self.listed, self.version

    def watch(self, what: str, fn: Any, *args: Any, resource_version: str, timeout: float, **kw: Any) -> Any:
        self.asked.append(("watch", resource_version))
        yield from (("DELETED", pod(uid)) for uid in self.deleted)


def writes(rest: FakeRest) -> PodWrites:
    return PodWrites(SimpleNamespace(rest=rest, core=SimpleNamespace(list_pod_for_all_namespaces=None)))  # type: ignore[arg-type]


def test_pods_of_the_nodes_last_list_are_watched_from_its_version_without_listing_again() -> None:
    rest = FakeRest([pod("a"), pod("b")], "40", deleted=["a", "b"])
    pods = writes(rest)
    listed = pods.on_node("n1")
    assert pods.wait_gone(listed, 5.0) == []
    assert rest.asked == [("list", ""), ("watch", "40")]


def test_a_pod_the_last_list_did_not_hold_is_waited_for_from_a_new_list() -> None:
    rest = FakeRest([pod("a")], "40", deleted=["a", "c"])
    pods = writes(rest)
    pods.on_node("n1")
    rest.listed, rest.version = [pod("a"), pod("c")], "50"
    other = writes(FakeRest([pod("c")], "45", deleted=[])).on_node("n1")[0]  # known to the caller, not to this list
    assert pods.wait_gone([other], 5.0) == []
    assert rest.asked == [("list", ""), ("list", ""), ("watch", "50")]
