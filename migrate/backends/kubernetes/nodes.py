"""Node writes on a real cluster: cordon and uncordon, labels (each a patch only when it
would change something), the Events posted on a node, and the waits for a node (Ready again,
back from its reboot: one list and watch of it); the read of one node (``get_node``),
remembered for the writes that follow it.
Node-level work done on the node itself is ``helpers``'.

A write is judged on the node as last read or written here (``get_node``, or a patch's
answer) when that says it is needed: the patch is made as it was after a read, and a merge
patch that someone else made first changes nothing. It is never skipped on that view: a
write that seems not needed reads the node first, so "nothing to do" is always said of the
node as it is now. A cordon or an uncordon costs one read (the step's own ``get_node``) and
the swap's label none, where they cost three and one."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from migrate.backends.kubernetes.mapping import node_info
from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.errors import TemporaryError
from migrate.model import NodeInfo

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


class NodeWrites:
    """Cordon, label, post Events on, and wait for nodes."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.rest, self.core = cluster.rest, cluster.core
        # node -> the node as last read or written here. Each node's steps run in one thread
        # at a time; a dict's get and set are atomic.
        self.last: dict[str, NodeInfo] = {}

    def get(self, name: str) -> NodeInfo:
        self.last[name] = node_info(self.rest.json(f"get node {name}", self.core.read_node, name))
        return self.last[name]

    def set_unschedulable(self, name: str, value: bool) -> bool:
        body = {"spec": {"unschedulable": value or None}}
        return self.patch(name, f"patch node {name}", lambda node: node.unschedulable != value, body)

    def set_label(self, name: str, key: str, value: str | None) -> bool:
        body = {"metadata": {"labels": {key: value}}}
        return self.patch(name, f"label node {name}", lambda node: node.labels.get(key) != value, body)

    def patch(self, name: str, what: str, needed: Callable[[NodeInfo], bool], body: dict[str, Any]) -> bool:
        """Patch ``body`` (a strategic merge patch) into the node when ``needed``: judged on
        the node as last seen here when that says so, else on the node read now. Whether it
        patched."""
        last = self.last.get(name)
        if (last is None or not needed(last)) and not needed(self.get(name)):
            return False
        self.last[name] = node_info(self.rest.json(what, self.core.patch_node, name, body))
        return True

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        now = datetime.now(UTC)
        event = {
            "metadata": {"generateName": f"{node}.cni-migrate.", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "cni-migrate"},
            "reportingComponent": "cni-migrate",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now.isoformat().replace("+00:00", "Z"),
            "lastTimestamp": now.isoformat().replace("+00:00", "Z"),
            "count": 1,
        }
        self.rest.call(f"create event on {node}", self.core.create_namespaced_event, "default", event, retry=False)

    def wait_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        found = self.wait(node, lambda info: info.boot_id != old_boot_id and info.ready, timeout)
        if found is None or found.boot_id == old_boot_id or not found.ready:
            raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)
        return found

    def wait_ready(self, node: str, timeout: float) -> NodeInfo:
        found = self.wait(node, lambda info: info.ready, timeout)
        if found is None:
            raise TemporaryError(f"node {node} not found", node=node)
        return found

    def wait(self, node: str, until: Callable[[NodeInfo], bool], timeout: float) -> NodeInfo | None:
        """The node once ``until`` holds (one list and watch of it), else as last seen at the
        deadline (None: never seen, or deleted)."""
        seen: list[NodeInfo | None] = [None]

        def look(kind: str, obj: dict[str, Any]) -> NodeInfo | None:
            info = None if kind == "DELETED" else node_info(obj)
            seen[0] = info
            return info if info is not None and until(info) else None

        this_node = Collection(
            f"node {node}", self.core.list_node, selectors={"field_selector": f"metadata.name={node}"}
        )
        found = list_then_watch(self.rest, this_node, look, deadline=time.monotonic() + timeout)
        return found if found is not None else seen[0]
