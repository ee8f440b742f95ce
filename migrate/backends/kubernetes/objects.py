"""Whole objects the run installs or removes by name: the CiliumNodeConfig (created, or its
spec brought in line), and what finalize deletes (Calico's DaemonSet and Deployment, custom
resources such as its pools and the node config)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.errors import NotFound

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


class Objects:
    """Ensure and delete whole objects: apps/v1 workloads and custom resources."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.api, self.rest, self.custom = cluster.api, cluster.rest, cluster.custom

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        what = f"delete {kind} {namespace + '/' if namespace else ''}{name}"
        try:
            if api_version == "apps/v1":
                apps = client.AppsV1Api(self.api)
                fn = apps.delete_namespaced_daemon_set if kind == "DaemonSet" else apps.delete_namespaced_deployment
                self.rest.call(what, fn, name, namespace)
            elif namespace:
                group, version = api_version.split("/")
                self.rest.call(
                    what,
                    self.custom.delete_namespaced_custom_object,
                    group,
                    version,
                    namespace,
                    kind.lower() + "s",
                    name,
                )
            else:
                group, version = api_version.split("/")
                self.rest.call(what, self.custom.delete_cluster_custom_object, group, version, kind.lower() + "s", name)
        except NotFound:
            return False
        return True

    def ensure(self, obj: dict[str, Any]) -> bool:
        """Create a namespaced custom object, or replace its spec when it differs."""
        group, version = obj["apiVersion"].split("/")
        plural = obj["kind"].lower() + "s"
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        what = f"{obj['kind']} {namespace}/{name}"
        try:
            live: Any = self.rest.call(
                f"get {what}", self.custom.get_namespaced_custom_object, group, version, namespace, plural, name
            )
        except NotFound:
            self.rest.call(
                f"create {what}", self.custom.create_namespaced_custom_object, group, version, namespace, plural, obj
            )
            return True
        if live.get("spec") == obj["spec"]:
            return False
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        self.rest.call(
            f"update {what}",
            self.custom.replace_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
        )
        return True
