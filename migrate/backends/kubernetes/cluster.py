"""The Kubernetes backend's adapter: ``KubernetesCluster`` is the ``Cluster`` port over the
official client, composed of the package's rooms: ``api`` (every request: errors translated,
retried, counted; paged lists; watches), ``inventory`` (reading it), ``mapping`` (API
objects to the model), ``helpers`` (helper pods), ``probes`` (validation observations),
``informer`` (the traffic watch) and ``lease`` (the executor lock). Here: connecting like
kubectl, node and pod writes, waits (watches from a listed resourceVersion, re-listed when
the watch expires), and the traffic watch's setup."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from migrate import traffic
from migrate.backends.kubernetes.api import Api
from migrate.backends.kubernetes.helpers import HelperPods
from migrate.backends.kubernetes.informer import TrafficCache
from migrate.backends.kubernetes.inventory import InventoryReader
from migrate.backends.kubernetes.lease import LeaseLock
from migrate.backends.kubernetes.mapping import (
    node_info,
    pod_info,
)
from migrate.backends.kubernetes.probes import Probes
from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.cniconf import cni_from_files
from migrate.errors import (
    BadInput,
    ClusterError,
    Conflict,
    EvictionRefused,
    NotFound,
    PermanentError,
    TemporaryError,
)
from migrate.model import (
    ClusterIdentity,
    Cni,
    Inventory,
    NodeInfo,
    PodInfo,
)
from migrate.ports import NodeTask, ProbeResult

# HTTP connections kept to the API server (urllib3's default: 5 per core). A wave's nodes
# validate at once, each with up to four helper pods watched together.
POOL_SIZE = 128
CILIUM_SELECTOR = "k8s-app=cilium"
DEFAULT_NODE_IMAGE = "docker.io/library/busybox:1.36.1"
DEFAULT_PROBE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
FORBIDDEN_UID = "unreadable"  # kube-system's UID when this identity may not read it
EVICTION_PDB = re.compile(r"disruption budget (\S+?) needs")


class KubernetesCluster:
    """A cluster reached through a kubeconfig context (or in-cluster config)."""

    def __init__(
        self,
        api: client.ApiClient,
        context_name: str,
        *,
        retry_seconds: float = 120.0,
        request_timeout: float = 30.0,
        node_image: str = DEFAULT_NODE_IMAGE,
        probe_image: str = DEFAULT_PROBE_IMAGE,
    ) -> None:
        self.api = api
        self.context_name = context_name
        self.server = api.configuration.host
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.rest = Api(api, retry_seconds=retry_seconds, request_timeout=request_timeout)
        self.node_image = node_image
        self.probe_image = probe_image
        self._identity: ClusterIdentity | None = None
        self._traffic: TrafficCache | None = None  # apply --traffic-watch: its reports and probers
        self._namespace_made = False  # the tool's namespace exists: not asked again per helper pod
        self.helpers = HelperPods(self)
        self.probes = Probes(self)
        self.reader = InventoryReader(self)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None, **kw: Any) -> KubernetesCluster:
        """Like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context, else the
        current context; in a pod without a kubeconfig, the in-cluster service account."""
        try:
            if kubeconfig is None and not os.environ.get("KUBECONFIG") and _in_cluster():
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                configuration.connection_pool_maxsize = POOL_SIZE
                return cls(client.ApiClient(configuration), "in-cluster", **kw)
            path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            if path is not None and not os.path.exists(os.path.expanduser(path)):
                raise BadInput(f"kubeconfig {path} does not exist")
            contexts, current = config.list_kube_config_contexts(config_file=path)
            names = [c["name"] for c in contexts]
            chosen = context or str((current or {}).get("name", ""))
            if chosen not in names:
                raise BadInput(f"context {chosen!r} is not in the kubeconfig (contexts: {', '.join(names) or 'none'})")
            configuration = client.Configuration()
            config.load_kube_config(config_file=path, context=chosen, client_configuration=configuration)
            configuration.retries = 0  # tenacity does the retrying, with backoff we control
            # The nodes of a wave work at once, each with a watch open at times: keep their
            # connections instead of opening and discarding one per request.
            configuration.connection_pool_maxsize = POOL_SIZE
            cluster = cls(client.ApiClient(configuration), chosen, **kw)
        except ConfigException as exc:
            raise BadInput(f"kubeconfig is unusable: {str(exc).splitlines()[0]}") from None
        except yaml.YAMLError:
            raise BadInput(f"kubeconfig {kubeconfig or os.environ.get('KUBECONFIG', '')} is not valid YAML") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # The client's kubeconfig loader raises these on malformed YAML structures.
            raise BadInput(f"kubeconfig is malformed: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise BadInput(f"kubeconfig cannot be read: {exc.strerror or exc}") from None
        cluster.ping()
        return cluster

    def ping(self) -> None:
        """Fail fast, with one line, when the API server cannot be reached or refuses us."""
        try:
            # A few seconds of retries ride out one 503 or reset; a dead server fails fast.
            self.rest.call(
                "reach the API server", client.VersionApi(self.api).get_code, retry_seconds=5, _request_timeout=5
            )
        except ClusterError as exc:
            raise BadInput(f"cannot use the API server {self.server}: {exc.message}") from None

    @property
    def requests(self) -> int:
        """API requests made so far (benchmarks, tests, apply's tally)."""
        return self.rest.requests

    @property
    def calls(self) -> collections.Counter[str]:
        """The same, by client method."""
        return self.rest.calls

    # -- reads -----------------------------------------------------------------------------------
    def identity(self) -> ClusterIdentity:
        if self._identity is None:
            try:
                ns = self.rest.json("get namespace kube-system", self.core.read_namespace, "kube-system")
                uid = ns["metadata"]["uid"]
            except PermanentError as exc:
                if exc.context.get("status") != 403:
                    raise
                # Not allowed to read it: plan still runs to report every missing permission
                # (``get namespaces`` among them, so the plan is blocked), and apply refuses that
                # plan as blocked. A plan made with the permission never matches this identity.
                uid = FORBIDDEN_UID
            self._identity = ClusterIdentity(kube_system_uid=uid, server=self.server)
        return self._identity

    def nodes(self) -> list[NodeInfo]:
        items, _ = self.rest.list_all("list nodes", self.core.list_node, convert=node_info)
        return sorted(items, key=lambda n: n.name)

    def get_node(self, name: str) -> NodeInfo:
        return node_info(self.rest.json(f"get node {name}", self.core.read_node, name))

    def pods_on_node(self, name: str) -> list[PodInfo]:
        items, _ = self.rest.list_all(
            f"list pods on {name}", self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}"
        )
        return [pod_info(p) for p in items]

    def inventory(self) -> Inventory:
        return self.reader.read()

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        """Permissions from rbac.PERMISSIONS (and ``extra``) this identity lacks."""
        return self.reader.missing_permissions(extra)

    def cilium_config(self) -> dict[str, str]:
        return self.read_configmap("kube-system", "cilium-config")

    def network_policies(self) -> list[dict[str, Any]]:
        out = []
        items, _ = self.rest.list_all(
            "list networkpolicies", client.NetworkingV1Api(self.api).list_network_policy_for_all_namespaces
        )
        out += [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **i} for i in items]
        for kind, plural in (("NetworkPolicy", "networkpolicies"), ("GlobalNetworkPolicy", "globalnetworkpolicies")):
            items = self.rest.list_custom("crd.projectcalico.org", "v1", plural)
            out += [{"apiVersion": "crd.projectcalico.org/v1", "kind": kind, **i} for i in items]
        return out

    def read_configmap(self, namespace: str, name: str) -> dict[str, str]:
        try:
            cm = self.rest.json(
                f"get configmap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace
            )
        except NotFound:
            return {}
        return dict(cm.get("data") or {})

    def cilium_agent(self, node: str) -> PodInfo | None:
        items, _ = self.rest.list_all(
            f"list cilium agent on {node}",
            self.core.list_namespaced_pod,
            "kube-system",
            label_selector=CILIUM_SELECTOR,
            field_selector=f"spec.nodeName={node}",
        )
        live = [pod_info(p) for p in items if not p["metadata"].get("deletionTimestamp")]
        return live[0] if live else None

    def node_cni(self, node: str) -> Cni:
        listing = self.run_node_task(node, NodeTask.READ_CNI, 120.0)
        return cni_from_files(listing.split())

    # -- writes ----------------------------------------------------------------------------------
    def set_unschedulable(self, name: str, value: bool) -> bool:
        node = self.get_node(name)
        if node.unschedulable == value:
            return False
        self.rest.call(f"patch node {name}", self.core.patch_node, name, {"spec": {"unschedulable": value or None}})
        return True

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        node = self.get_node(name)
        if node.labels.get(key) == value:
            return False
        self.rest.call(f"label node {name}", self.core.patch_node, name, {"metadata": {"labels": {key: value}}})
        return True

    def evict(self, pod: PodInfo) -> None:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )
        try:
            # Not retried here: the drain step owns the retry loop and its deadline.
            self.rest.call(
                f"evict pod {pod.key}",
                self.core.create_namespaced_pod_eviction,
                pod.name,
                pod.namespace,
                body,
                retry=False,
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

    def delete_pod(self, pod: PodInfo) -> None:
        self.rest.call(
            f"delete pod {pod.key}",
            self.core.delete_namespaced_pod,
            pod.name,
            pod.namespace,
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.uid)),
        )

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        if not pods:
            return []
        by_node: dict[str | None, list[PodInfo]] = {}
        for pod in pods:
            by_node.setdefault(pod.node, []).append(pod)
        deadline = time.monotonic() + timeout
        left: list[PodInfo] = []
        for node, group in by_node.items():
            left += self._wait_gone_on(node, group, deadline)
        return left

    def _wait_gone_on(self, node: str | None, pods: list[PodInfo], deadline: float) -> list[PodInfo]:
        waiting = {p.uid: p for p in pods}
        selector = f"spec.nodeName={node}" if node else ""
        while waiting and time.monotonic() < deadline:
            items, rv = self.rest.list_all("list pods", self.core.list_pod_for_all_namespaces, field_selector=selector)
            present = {p["metadata"]["uid"] for p in items}
            for uid in [u for u in waiting if u not in present]:
                del waiting[uid]
            if not waiting:
                break
            try:
                for kind, obj in self.rest.watch(
                    "watch pods",
                    self.core.list_pod_for_all_namespaces,
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    field_selector=selector,
                ):
                    if kind == "DELETED":
                        waiting.pop(obj["metadata"]["uid"], None)
                        if not waiting:
                            break
            except TemporaryError:
                continue  # watch expired or dropped: re-list and watch again
        return list(waiting.values())

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items, rv = self.rest.list_all(
                "list cilium agents",
                self.core.list_namespaced_pod,
                "kube-system",
                label_selector=CILIUM_SELECTOR,
                field_selector=f"spec.nodeName={node}",
            )
            for obj in items:
                pod = pod_info(obj)
                if pod.uid != not_uid and pod.ready and not pod.deleting:
                    return pod
            try:
                for _kind, obj in self.rest.watch(
                    "watch cilium agents",
                    self.core.list_namespaced_pod,
                    "kube-system",
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    label_selector=CILIUM_SELECTOR,
                    field_selector=f"spec.nodeName={node}",
                ):
                    pod = pod_info(obj)
                    if _kind != "DELETED" and pod.uid != not_uid and pod.ready and not pod.deleting:
                        return pod
            except TemporaryError:
                continue  # re-list
        raise TemporaryError(f"no new Ready Cilium agent on {node} within {timeout:.0f}s", node=node)

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
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

    def ensure_object(self, obj: dict[str, Any]) -> bool:
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

    # -- node tasks and probes ---------------------------------------------------------------------
    def ensure_namespace(self, again: bool = False) -> None:
        """The tool's namespace, made if missing; asked once per process (every helper pod
        would otherwise ask), again with ``again`` (a create there said it is gone)."""
        if self._namespace_made and not again:
            return
        try:
            self.rest.call("get namespace", self.core.read_namespace, TOOL_NAMESPACE)
        except NotFound:
            # Created meanwhile by someone else (409) is just as good.
            with contextlib.suppress(Conflict):
                self.rest.call("create namespace", self.core.create_namespace, {"metadata": {"name": TOOL_NAMESPACE}})
        self._namespace_made = True

    def cleanup_helper_pods(self, node: str | None = None) -> int:
        return self.helpers.cleanup(node)

    def run_node_task(self, node: str, task: NodeTask, timeout: float) -> str:
        return self.helpers.run_task(node, task, timeout)

    # -- the traffic watch (apply --traffic-watch) ---------------------------------------------
    def _traffic_api(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """(create, delete) of a traffic-watch object kind, both namespaced."""
        apps, rbac = client.AppsV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
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

    def start_traffic_watch(self, timeout: float) -> str:
        """Create the watch's objects (kept as they are when present; the DaemonSet's probe
        image is brought in line), then wait until every prober pod has written a report."""
        objects = traffic.manifests(self.probe_image)
        try:
            self.rest.call("get namespace", self.core.read_namespace, traffic.NAMESPACE)
        except NotFound:
            with contextlib.suppress(Conflict):  # created meanwhile
                self.rest.call("create namespace", self.core.create_namespace, objects[0])
        for obj in objects[1:]:
            kind, name = obj["kind"], obj["metadata"]["name"]
            create, _ = self._traffic_api(kind)
            try:
                self.rest.call(f"create {kind} {traffic.NAMESPACE}/{name}", create, traffic.NAMESPACE, obj)
            except Conflict:
                if kind == "DaemonSet":
                    # A watch left by a killed run: same objects, perhaps another image.
                    apps = client.AppsV1Api(self.api)
                    self.rest.call(
                        f"patch DaemonSet {traffic.NAMESPACE}/{name}",
                        apps.patch_namespaced_daemon_set,
                        name,
                        traffic.NAMESPACE,
                        {"spec": obj["spec"]},
                    )
        if self._traffic is None:
            self._traffic = TrafficCache(self)
        probers, silent = self._traffic.first_reports(timeout)
        if probers and not silent:
            return f"{len(probers)}/{len(probers)} probers reporting"
        named = ", ".join(silent[:5]) + (", ..." if len(silent) > 5 else "")
        raise TemporaryError(
            f"{len(silent)} of {len(probers)} probers sent no report within {timeout:.0f}s"
            + (f" (on {named})" if silent else " (no prober pod runs)")
            + f"; see 'kubectl -n {traffic.NAMESPACE} logs ds/{traffic.NAME} -c prober'"
        )

    def traffic_reports(self, after: int, timeout: float) -> tuple[list[Any], list[str]]:
        """Every prober's report once each has written again after this call began (a write
        after the window's end covers it: no clock is compared); and the nodes whose prober
        did not. Read from the run's shared cache: no request per validated node."""
        if self._traffic is None:
            self._traffic = TrafficCache(self)
        return self._traffic.fresh_reports(timeout)

    def stop_traffic_watch(self) -> bool:
        """Delete the DaemonSet first (no prober writes afterwards), then the rest and every
        report. The namespace stays: deploy/rbac.yaml's Role there is what allows all this."""
        if self._traffic is not None:
            self._traffic.close()
            self._traffic = None
        apps = client.AppsV1Api(self.api)
        try:
            # Briefly: this runs as a run ends, maybe because the API server went away, and
            # must not hold the operator's exit for the usual two minutes of retries.
            self.rest.call(
                "get traffic watch", apps.read_namespaced_daemon_set, traffic.NAME, traffic.NAMESPACE, retry_seconds=5
            )
        except NotFound:
            return False  # none: nothing to remove (and no rights needed to find that out)
        for obj in reversed(traffic.manifests(self.probe_image)[1:]):
            _, delete = self._traffic_api(obj["kind"])
            with contextlib.suppress(NotFound):  # gone already
                self.rest.call(f"delete {obj['kind']} {traffic.NAME}", delete, traffic.NAME, traffic.NAMESPACE)
        self.rest.call(
            "delete traffic reports",
            self.core.delete_collection_namespaced_config_map,
            traffic.NAMESPACE,
            label_selector=f"{traffic.REPORT_LABEL}=true",
        )
        return True

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items, rv = self.rest.list_all(
                f"list node {node}", self.core.list_node, field_selector=f"metadata.name={node}"
            )
            for obj in items:
                info = node_info(obj)
                if info.boot_id != old_boot_id and info.ready:
                    return info
            try:
                for _kind, obj in self.rest.watch(
                    f"watch node {node}",
                    self.core.list_node,
                    resource_version=rv,
                    timeout=deadline - time.monotonic(),
                    field_selector=f"metadata.name={node}",
                ):
                    info = node_info(obj)
                    if _kind != "DELETED" and info.boot_id != old_boot_id and info.ready:
                        return info
            except TemporaryError:
                continue  # re-list
        raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        return self.probes.probe(node, check, timeout)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        return self.probes.probe_many(node, checks, timeout)

    def policy_probe(self, timeout: float) -> ProbeResult:
        return self.probes.policy_probe(timeout)

    # -- the executor lock -------------------------------------------------------------------------
    def lease(self, holder: str | None = None, duration: int = 30) -> LeaseLock:
        return LeaseLock(self, holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}", duration)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
