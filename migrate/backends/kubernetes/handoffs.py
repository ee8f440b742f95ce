"""The UDP hand-off on a real cluster (``migrate.handoff``, ``steps/handoff.py``): a pod's
labels changed and its mark set in one merge patch; the pods a killed run marked; and the
wait until a Service's EndpointSlices no longer list an address (one list and watch of the
Services' slices, by their ``kubernetes.io/service-name`` label)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.backends.kubernetes.deployments import MERGE_PATCH
from migrate.backends.kubernetes.mapping import pod_info
from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.handoff import SETTLE_SECONDS
from migrate.model import HANDOFF_LABEL, PodInfo

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller


class Handoffs:
    """Mark and unlabel pods; find the marked ones; wait for an endpoint to leave."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.rest, self.core = cluster.rest, cluster.core
        self.discovery = client.DiscoveryV1Api(cluster.api)

    def hand_off(self, pod: PodInfo, remove: Sequence[str], service: str, record: str) -> None:
        # null deletes a label (RFC 7386); the mark goes in the same patch. A retried patch
        # whose first attempt landed applies the same result again: idempotent.
        labels: dict[str, str | None] = {key: None for key in remove}
        labels[HANDOFF_LABEL] = service
        body = {"metadata": {"labels": labels, "annotations": {HANDOFF_LABEL: record}}}
        self.rest.body(
            f"hand off pod {pod.key} from {service}",
            self.core.patch_namespaced_pod,
            pod.name,
            pod.namespace,
            body,
            _content_type=MERGE_PATCH,
        )

    def marked(self) -> list[tuple[PodInfo, Mapping[str, str]]]:
        items, _ = self.rest.list_all(
            "list handed-off pods", self.core.list_pod_for_all_namespaces, label_selector=HANDOFF_LABEL
        )
        found = [(pod_info(i), dict((i.get("metadata") or {}).get("annotations") or {})) for i in items]
        return sorted(found, key=lambda pair: pair[0].key)

    def serving(self, namespace: str, services: Sequence[str]) -> list[tuple[str, str]]:
        """(address, node) of the Ready endpoints in the Services' EndpointSlices (one list)."""
        items, _ = self._slices(namespace, services).read(self.rest)
        found = set()
        for item in items:
            for endpoint in item.get("endpoints") or ():
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue  # unset means ready (discovery.k8s.io/v1)
                for address in endpoint.get("addresses") or ():
                    found.add((address, endpoint.get("nodeName") or ""))
        return sorted(found)

    def _slices(self, namespace: str, services: Sequence[str]) -> Collection:
        return Collection(
            f"endpointslices of {namespace}/{','.join(services)}",
            self.discovery.list_namespaced_endpoint_slice,
            (namespace,),
            {"label_selector": f"{SERVICE_NAME_LABEL} in ({','.join(sorted(services))})"},
        )

    def wait_endpoint_gone(self, namespace: str, services: Sequence[str], address: str, timeout: float) -> bool:
        slices: dict[str, set[str]] = {}  # slice name -> its endpoints' addresses

        def addresses(obj: dict[str, Any]) -> set[str]:
            return {a for e in obj.get("endpoints") or () for a in e.get("addresses") or ()}

        def event(kind: str, obj: dict[str, Any]) -> bool | None:
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                slices.pop(name, None)
            else:
                slices[name] = addresses(obj)
            return True if not any(address in a for a in slices.values()) else None

        def listed(items: list[dict[str, Any]]) -> bool | None:
            slices.clear()
            slices.update((i["metadata"]["name"], addresses(i)) for i in items)
            return True if not any(address in a for a in slices.values()) else None

        found = list_then_watch(
            self.rest, self._slices(namespace, services), event, on_list=listed, deadline=time.monotonic() + timeout
        )
        if found:
            # Not visible in the API: every node's kube-proxy applying the removal (and
            # flushing the UDP conntrack entries to the address) within its sync period.
            time.sleep(SETTLE_SECONDS)
        return bool(found)
