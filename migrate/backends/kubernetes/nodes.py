"""Node writes on a real cluster: cordon and uncordon, labels (each a read, then a patch
only when it would change something), the Events posted on a node, and the wait for a node
back from its reboot. Reading nodes is the adapter's (``cluster``); node-level work done
on the node itself is ``helpers``'."""

from __future__ import annotations

import socket
import time
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
        self.cluster = cluster
        self.rest, self.core = cluster.rest, cluster.core

    def set_unschedulable(self, name: str, value: bool) -> bool:
        node = self.cluster.get_node(name)
        if node.unschedulable == value:
            return False
        self.rest.call(f"patch node {name}", self.core.patch_node, name, {"spec": {"unschedulable": value or None}})
        return True

    def set_label(self, name: str, key: str, value: str | None) -> bool:
        node = self.cluster.get_node(name)
        if node.labels.get(key) == value:
            return False
        self.rest.call(f"label node {name}", self.core.patch_node, name, {"metadata": {"labels": {key: value}}})
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
        def back(kind: str, obj: dict[str, Any]) -> NodeInfo | None:
            info = node_info(obj)
            return info if kind != "DELETED" and info.boot_id != old_boot_id and info.ready else None

        this_node = Collection(
            f"node {node}", self.core.list_node, selectors={"field_selector": f"metadata.name={node}"}
        )
        found = list_then_watch(self.rest, this_node, back, deadline=time.monotonic() + timeout)
        if found is None:
            raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)
        return found
