"""Node writes on the Kubernetes backend judge a needed write on the node as last seen there
(no read before it), but never skip a write on that view: "nothing to do" is said only of
the node as it is now."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

from migrate.backends.kubernetes.nodes import NodeWrites


class FakeNodes:
    """One node, read and strategic-merge-patched (labels and spec.unschedulable only)."""

    def __init__(self) -> None:
        self.node: dict[str, Any] = {"metadata": {"name": "n1", "uid": "u", "labels": {}}, "spec": {}}
        self.asked: list[str] = []

    def read_node(self, name: str) -> dict[str, Any]:
        self.asked.append("read")
        return copy.deepcopy(self.node)

    def patch_node(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.asked.append("patch")
        for key, value in (body.get("metadata") or {}).get("labels", {}).items():
            if value is None:
                self.node["metadata"]["labels"].pop(key, None)
            else:
                self.node["metadata"]["labels"][key] = value
        if "unschedulable" in (body.get("spec") or {}):
            self.node["spec"]["unschedulable"] = body["spec"]["unschedulable"]
        return copy.deepcopy(self.node)


def writes() -> tuple[NodeWrites, FakeNodes]:
    core = FakeNodes()
    rest = SimpleNamespace(json=lambda what, fn, *args, **kw: fn(*args, **kw))
    return NodeWrites(SimpleNamespace(rest=rest, core=core)), core  # type: ignore[arg-type]


def test_a_cordon_after_the_steps_read_patches_twice_and_reads_no_more() -> None:
    nodes, core = writes()
    assert not nodes.get("n1").unschedulable
    assert nodes.set_label("n1", "mine", "true") and nodes.set_unschedulable("n1", True)
    assert core.asked == ["read", "patch", "patch"]


def test_a_write_that_seems_done_reads_the_node_first_and_sees_it_undone_by_someone_else() -> None:
    nodes, core = writes()
    nodes.get("n1")
    nodes.set_unschedulable("n1", True)
    core.node["spec"]["unschedulable"] = None  # uncordoned by hand since
    core.asked.clear()
    assert nodes.set_unschedulable("n1", True)
    assert core.asked == ["read", "patch"] and core.node["spec"]["unschedulable"] is True


def test_nothing_to_do_is_said_of_the_node_as_it_is_now() -> None:
    nodes, core = writes()
    nodes.get("n1")
    core.node["metadata"]["labels"]["mine"] = "true"  # set by someone else since
    core.asked.clear()
    assert nodes.set_label("n1", "mine", "true")  # the last view said it was needed: made again, a no-op
    assert not nodes.set_label("n1", "mine", "true")
    assert core.asked == ["patch", "read"]
