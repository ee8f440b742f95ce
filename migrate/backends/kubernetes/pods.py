"""Pod writes on a real cluster and the waits that follow them: an eviction (a PodDisruption-
Budget's refusal told apart from other errors), a deletion, both fenced by the pod's UID;
waiting until pods are gone, and until a node's new Cilium agent is Ready. Helper pods, the
tool's own, are ``helpers``'.

The pods on a node are listed here (``pods_on_node``), and the list's UIDs and version are
remembered: a wait for pods that were all in it watches from that version instead of
listing again (a watch from a past version misses no deletion since, and a UID never comes
back), so a drain lists its node's pods once for the evictions and not again to wait."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from migrate.backends.kubernetes.mapping import pod_info
from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.errors import Conflict, EvictionRefused, NotFound, PermanentError, TemporaryError
from migrate.model import PodInfo

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

CILIUM_SELECTOR = "k8s-app=cilium"
EVICTION_PDB = re.compile(r"disruption budget (\S+?) needs")


class PodWrites:
    """Evict and delete workload pods; wait for them to go, and for a Cilium agent."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.rest, self.core = cluster.rest, cluster.core
        # node -> the UIDs of its pods as last listed here, and that list's version. Each
        # node's steps run in one thread at a time; a dict's get and set are atomic.
        self.listed: dict[str, tuple[frozenset[str], str]] = {}

    def on_node(self, name: str) -> list[PodInfo]:
        items, version = self.rest.list_all(
            f"list pods on {name}", self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}"
        )
        pods = [pod_info(p) for p in items]
        self.listed[name] = (frozenset(p.uid for p in pods), version)
        return pods

    def evict(self, pod: PodInfo, dry_run: bool = False) -> None:
        """Evict ``pod`` (its UID as precondition); with ``dry_run`` the API server only says
        whether it would (a budget's refusal raises the same ``EvictionRefused``)."""
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )
        extra: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        try:
            # Not retried here: the drain step owns the retry loop and its deadline.
            self.rest.call(
                f"{'ask to ' if dry_run else ''}evict pod {pod.key}",
                self.core.create_namespaced_pod_eviction,
                pod.name,
                pod.namespace,
                body,
                retry=False,
                **extra,
            )
        except TemporaryError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and "more than one PodDisruptionBudget" in (cause.body or ""):
                raise PermanentError(exc.message.replace(" (HTTP 500)", "")) from cause
            if isinstance(cause, ApiException) and cause.status == 429:
                match = EVICTION_PDB.search(cause.body or "")
                pdb = f"{pod.namespace}/{match[1]}" if match else "a PodDisruptionBudget"
                raise EvictionRefused(exc.message, delay=exc.delay, pdb=pdb) from cause
            raise
        except Conflict:
            # The UID precondition failed: the pod we meant is gone (a new one has its name).
            raise NotFound(f"pod {pod.key} was replaced") from None

    def delete(self, pod: PodInfo) -> None:
        self.rest.call(
            f"delete pod {pod.key}",
            self.core.delete_namespaced_pod,
            pod.name,
            pod.namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )

    def wait_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        """Those of ``pods`` (by UID) still there at the deadline: one list and watch of
        each node's pods."""
        if not pods:
            return []
        by_node: dict[str | None, list[PodInfo]] = {}
        for pod in pods:
            by_node.setdefault(pod.node, []).append(pod)
        deadline = time.monotonic() + timeout
        left: list[PodInfo] = []
        for node, group in by_node.items():
            left += self.wait_gone_on(node, group, deadline)
        return left

    def wait_gone_on(self, node: str | None, pods: list[PodInfo], deadline: float) -> list[PodInfo]:
        waiting = {p.uid: p for p in pods}

        def listed(items: list[dict[str, Any]]) -> bool | None:
            present = {p["metadata"]["uid"] for p in items}
            for uid in [u for u in waiting if u not in present]:
                del waiting[uid]
            return True if not waiting else None

        def deleted(kind: str, obj: dict[str, Any]) -> bool | None:
            if kind == "DELETED":
                waiting.pop(obj["metadata"]["uid"], None)
            return True if not waiting else None

        selector = f"spec.nodeName={node}" if node else ""
        pods_there = Collection("pods", self.core.list_pod_for_all_namespaces, selectors={"field_selector": selector})
        uids, version = self.listed.get(node or "", (frozenset(), ""))
        # Every pod waited for was in the node's last list: watched from its version, no list.
        first = ([{"metadata": {"uid": uid}} for uid in uids], version) if version and waiting.keys() <= uids else None
        list_then_watch(self.rest, pods_there, deleted, on_list=listed, deadline=deadline, first=first)
        return list(waiting.values())

    def wait_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        def ready(kind: str, obj: dict[str, Any]) -> PodInfo | None:
            pod = pod_info(obj)
            return pod if kind != "DELETED" and pod.uid != not_uid and pod.ready and not pod.deleting else None

        agents = Collection(
            "cilium agents",
            self.core.list_namespaced_pod,
            ("kube-system",),
            {"label_selector": CILIUM_SELECTOR, "field_selector": f"spec.nodeName={node}"},
        )
        found = list_then_watch(self.rest, agents, ready, deadline=time.monotonic() + timeout)
        if found is None:
            raise TemporaryError(f"no new Ready Cilium agent on {node} within {timeout:.0f}s", node=node)
        return found
