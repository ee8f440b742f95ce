"""Deployments on a real cluster as a surge uses them (``migrate.surge``, ``steps/surge.py``):
one read; the scale and its record written in one request, fenced by the version read; the
Deployments a killed run left surged; a pod's deletion cost; and the wait until enough of a
Deployment's pods are Ready off a node. What a surge decides is the core's: here each call
does one thing on the API server.

The scale is one JSON merge patch of ``spec.replicas`` and the ``cni-migrate.io/surge``
annotation (null deletes it) with ``metadata.resourceVersion`` set: the API server applies it
only to that version (409 otherwise, ``Conflict``), so a surge never overwrites a change it
has not seen (someone scaled, a rollout began), and no kill can leave the replicas changed
without the record that says how to put them back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.backends.kubernetes.mapping import DELETION_COST, deployment_info, pod_info, selector_text
from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.errors import Conflict, NotFound
from migrate.model import SURGE_ANNOTATION, DeploymentInfo, PodInfo, SurgeRecord
from migrate.surge import deployment_of

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

MERGE_PATCH = "application/merge-patch+json"  # RFC 7386: null deletes a key


class DeploymentWrites:
    """Read, scale and list surged Deployments; price their pods; wait for their replicas."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.rest, self.core = cluster.rest, cluster.core
        self.apps = client.AppsV1Api(cluster.api)

    def get(self, namespace: str, name: str) -> DeploymentInfo:
        return deployment_info(
            self.rest.json(f"get deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace)
        )

    def scale(self, deployment: DeploymentInfo, replicas: int, surge: SurgeRecord | None) -> DeploymentInfo:
        """``replicas`` and the record (None removes it) in one patch, only onto the version
        ``deployment`` was read at; ``Conflict`` when it has changed since.

        A retried patch whose first attempt landed (its answer lost) meets its own new
        version: 409. So on a conflict the Deployment is read again, and one that already
        has these replicas and this record is the write done, not a conflict."""
        if not deployment.version:
            # An empty resourceVersion in a patch fences nothing: the write would land on
            # whatever the Deployment has become.
            raise ValueError(f"deployment {deployment.key} was not read from the cluster (no resourceVersion)")
        body = {
            "metadata": {
                "resourceVersion": deployment.version,
                "annotations": {SURGE_ANNOTATION: surge.to_json() if surge is not None else None},
            },
            "spec": {"replicas": replicas},
        }
        try:
            return deployment_info(
                self.rest.json(
                    f"scale deployment {deployment.key} to {replicas}",
                    self.apps.patch_namespaced_deployment,
                    deployment.name,
                    deployment.namespace,
                    body,
                    _content_type=MERGE_PATCH,
                )
            )
        except Conflict:
            now = self.get(deployment.namespace, deployment.name)
            if now.uid == deployment.uid and now.replicas == replicas and now.surge == surge:
                return now
            raise

    def surged(self) -> list[DeploymentInfo]:
        """Every Deployment carrying the surge annotation (readable or not), by namespace/name."""
        items, _ = self.rest.list_all(
            "list deployments", self.apps.list_deployment_for_all_namespaces, convert=deployment_info
        )
        return sorted((d for d in items if d.carries_surge), key=lambda d: d.key)

    def wait(
        self, deployment: DeploymentInfo, until: Callable[[DeploymentInfo], bool], timeout: float
    ) -> DeploymentInfo:
        """Until ``until`` holds for the Deployment: one list and watch of it by name. As
        last seen when ``timeout`` passes first; NotFound once it is deleted."""
        last = [deployment]

        def seen(kind: str, obj: dict[str, Any]) -> DeploymentInfo | None:
            if kind == "DELETED":
                raise NotFound(f"deployment {deployment.key} was deleted")
            last[0] = deployment_info(obj)
            return last[0] if until(last[0]) else None

        def listed(items: list[dict[str, Any]]) -> DeploymentInfo | None:
            if not items:
                raise NotFound(f"deployment {deployment.key} not found")
            return seen("ADDED", items[0])

        this = Collection(
            f"deployment {deployment.key}",
            self.apps.list_namespaced_deployment,
            (deployment.namespace,),
            {"field_selector": f"metadata.name={deployment.name}"},
        )
        found = list_then_watch(self.rest, this, seen, on_list=listed, deadline=time.monotonic() + timeout)
        return found if found is not None else last[0]

    def set_deletion_cost(self, pod: PodInfo, cost: int) -> None:
        body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
        # The answer is not mapped: its body is read and dropped (no client model built).
        self.rest.body(
            f"set pod-deletion-cost of pod {pod.key}",
            self.core.patch_namespaced_pod,
            pod.name,
            pod.namespace,
            body,
            _content_type=MERGE_PATCH,
        )

    def wait_ready(self, deployment: DeploymentInfo, count: int, away_from: str, timeout: float) -> int:
        """Until ``count`` of the Deployment's pods are Ready, not being deleted and not on
        ``away_from``: one list and watch of the pods its selector picks in its namespace
        (those of another controller with the same labels do not count). How many were, at
        the end (fewer than ``count`` on timeout); NotFound once the Deployment is deleted
        (looked up when one of its pods goes: the garbage collector takes them with it)."""
        good: set[str] = set()  # UIDs of the pods that count

        def seen(kind: str, obj: dict[str, Any]) -> int | None:
            pod = pod_info(obj)
            if kind == "DELETED" and deployment_of(pod) == (deployment.namespace, deployment.name):
                self.get(deployment.namespace, deployment.name)
            counts = (
                kind != "DELETED"
                and pod.ready
                and not pod.deleting
                and bool(pod.node)
                and pod.node != away_from
                and deployment_of(pod) == (deployment.namespace, deployment.name)
            )
            if counts:
                good.add(pod.uid)
            else:
                good.discard(pod.uid)
            return len(good) if len(good) >= count else None

        def listed(items: list[dict[str, Any]]) -> int | None:
            good.clear()
            for item in items:
                seen("ADDED", item)
            if len(good) >= count:
                return len(good)
            self.get(deployment.namespace, deployment.name)  # its pods may be gone already, unseen
            return None

        pods = Collection(
            f"pods of deployment {deployment.key}",
            self.core.list_namespaced_pod,
            (deployment.namespace,),
            {"label_selector": selector_text(deployment.selector)},
        )
        found = list_then_watch(self.rest, pods, seen, on_list=listed, deadline=time.monotonic() + timeout)
        return found if found is not None else len(good)
