"""The traffic watch on a real cluster (``apply --traffic-watch``): its objects deployed
(``migrate.traffic.manifests``) and removed, and its probers' reports read from the run's
informer (``informer.TrafficCache``), started with the watch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate import traffic
from migrate.backends.kubernetes.informer import TrafficCache
from migrate.errors import Conflict, NotFound, TemporaryError

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


class TrafficDeployment:
    """The prober DaemonSet and its objects in ``traffic.NAMESPACE``, and their reports."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.rest, self.core = cluster.rest, cluster.core
        self.cache: TrafficCache | None = None  # the reports and probers, once the watch is started or read

    def _api(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(create, delete) of a traffic-watch object kind, both namespaced."""
        apps, rbac = client.AppsV1Api(self.cluster.api), client.RbacAuthorizationV1Api(self.cluster.api)
        apis: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.delete_namespaced_service_account,
            ),
            "Role": (rbac.create_namespaced_role, rbac.delete_namespaced_role),
            "RoleBinding": (rbac.create_namespaced_role_binding, rbac.delete_namespaced_role_binding),
            "Service": (self.core.create_namespaced_service, self.core.delete_namespaced_service),
            "DaemonSet": (apps.create_namespaced_daemon_set, apps.delete_namespaced_daemon_set),
        }
        return apis[kind]

    def _cache(self) -> TrafficCache:
        if self.cache is None:
            self.cache = TrafficCache(self.cluster)
        return self.cache

    def start(self, timeout: float) -> str:
        """Create the watch's objects (kept as they are when present; the DaemonSet's probe
        image is brought in line), then wait until every prober pod has written a report."""
        objects = traffic.manifests(self.cluster.probe_image)
        try:
            self.rest.call("get namespace", self.core.read_namespace, traffic.NAMESPACE)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile
                self.rest.call("create namespace", self.core.create_namespace, objects[0])
        for obj in objects[1:]:
            kind, name = obj["kind"], obj["metadata"]["name"]
            create, _ = self._api(kind)
            try:
                self.rest.call(f"create {kind} {traffic.NAMESPACE}/{name}", create, traffic.NAMESPACE, obj)
            except Conflict:
                if kind == "DaemonSet":
                    # A watch left by a killed run: same objects, perhaps another image.
                    apps = client.AppsV1Api(self.cluster.api)
                    self.rest.call(
                        f"patch DaemonSet {traffic.NAMESPACE}/{name}",
                        apps.patch_namespaced_daemon_set,
                        name,
                        traffic.NAMESPACE,
                        {"spec": obj["spec"]},
                    )
        probers, silent = self._cache().first_reports(timeout)
        if probers and not silent:
            return f"{len(probers)}/{len(probers)} probers reporting"
        named = ", ".join(silent[:5]) + (", ..." if len(silent) > 5 else "")
        raise TemporaryError(
            f"{len(silent)} of {len(probers)} probers sent no report within {timeout:.0f}s"
            + (f" (on {named})" if silent else " (no prober pod runs)")
            + f"; see 'kubectl -n {traffic.NAMESPACE} logs ds/{traffic.NAME} -c prober'"
        )

    def reports(self, timeout: float, node: str) -> tuple[list[Any], list[str]]:
        """Every prober's report once each has written again after this call began (a write
        after the window's end covers it: no clock is compared), ``node``'s included; and the
        nodes whose prober did not. Read from the run's shared cache: no request per
        validated node."""
        return self._cache().fresh_reports(timeout, node)

    def stop(self) -> bool:
        """Delete the DaemonSet first (no prober writes afterwards), then the rest and every
        report. The namespace stays: deploy/rbac.yaml's Role there is what allows all this."""
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        apps = client.AppsV1Api(self.cluster.api)
        try:
            # Briefly: this runs as a run ends, maybe because the API server went away, and
            # must not hold the operator's exit for the usual two minutes of retries.
            self.rest.call(
                "get traffic watch", apps.read_namespaced_daemon_set, traffic.NAME, traffic.NAMESPACE, retry_seconds=5
            )
        except NotFound:
            return False  # none: nothing to remove (and no rights needed to find that out)
        for obj in reversed(traffic.manifests(self.cluster.probe_image)[1:]):
            _, delete = self._api(obj["kind"])
            with contextlib.suppress(NotFound):  # gone already
                self.rest.call(f"delete {obj['kind']} {traffic.NAME}", delete, traffic.NAME, traffic.NAMESPACE)
        self.rest.call(
            "delete traffic reports",
            self.core.delete_collection_namespaced_config_map,
            traffic.NAMESPACE,
            label_selector=f"{traffic.REPORT_LABEL}=true",
        )
        return True
