"""The Kubernetes backend's adapter: ``KubernetesCluster`` is the ``Cluster`` port over the
official client, a thin front over the package's rooms: ``api`` (every request: errors
translated, retried, counted; paged lists; watches), ``watching`` (the one list-then-watch
loop), ``inventory`` (reading it), ``mapping`` (API objects to the model), ``nodes`` and
``pods`` (writes and their waits), ``objects`` (whole objects ensured or deleted),
``helpers`` (helper pods), ``probes`` (validation observations), ``trafficwatch`` and
``informer`` (the traffic watch), ``deployments`` (a surge's scales and waits) and ``lease``
(the executor lock). Here: connecting like kubectl, the reads the steps make one at a time,
and the tool's namespace."""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from migrate.backends.kubernetes.api import Api
from migrate.backends.kubernetes.deployments import DeploymentWrites
from migrate.backends.kubernetes.handoffs import Handoffs
from migrate.backends.kubernetes.helpers import HelperPods
from migrate.backends.kubernetes.inventory import InventoryReader
from migrate.backends.kubernetes.lease import LeaseLock
from migrate.backends.kubernetes.mapping import node_info, pod_info
from migrate.backends.kubernetes.nodes import NodeWrites
from migrate.backends.kubernetes.objects import Objects
from migrate.backends.kubernetes.pods import CILIUM_SELECTOR, PodWrites
from migrate.backends.kubernetes.probes import Probes
from migrate.backends.kubernetes.trafficwatch import TrafficDeployment
from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.cniconf import cni_from_files
from migrate.errors import (
    BadInput,
    ClusterError,
    Conflict,
    NotFound,
    PermanentError,
)
from migrate.model import (
    ClusterIdentity,
    Cni,
    DeploymentInfo,
    Inventory,
    NodeInfo,
    PodInfo,
    SurgeRecord,
)
from migrate.ports import NodeTask, ProbeResult

# HTTP connections kept to the API server (urllib3's default: 5 per core). A wave's nodes
# validate at once, each with up to four helper pods watched together.
POOL_SIZE = 128
DEFAULT_NODE_IMAGE = "docker.io/library/busybox:1.36.1"
DEFAULT_PROBE_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
FORBIDDEN_UID = "unreadable"  # kube-system's UID when this identity may not read it


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
        self._namespace_made = False  # the tool's namespace exists: not asked again per helper pod
        self.node_writes = NodeWrites(self)
        self.pod_writes = PodWrites(self)
        self.deployments = DeploymentWrites(self)
        self.handoffs = Handoffs(self)
        self.objects = Objects(self)
        self.helpers = HelperPods(self)
        self.probes = Probes(self)
        self.reader = InventoryReader(self)
        self.traffic = TrafficDeployment(self)  # apply --traffic-watch: its objects, reports and probers

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
        return self.node_writes.get(name)  # remembered there for the writes that follow

    def pods_on_node(self, name: str) -> list[PodInfo]:
        return self.pod_writes.on_node(name)  # remembered there for a wait that follows

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

    # -- writes and waits: each a room of its own ------------------------------------------------
    def set_unschedulable(self, name: str, value: bool) -> bool:
        return self.node_writes.set_unschedulable(name, value)

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        return self.node_writes.set_label(name, key, value)

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        self.node_writes.record_event(node, reason, message, warning)

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        return self.node_writes.wait_rebooted(node, old_boot_id, timeout)

    def wait_node_ready(self, node: str, timeout: float) -> NodeInfo:
        return self.node_writes.wait_ready(node, timeout)

    def evict(self, pod: PodInfo) -> None:
        self.pod_writes.evict(pod)

    def delete_pod(self, pod: PodInfo) -> None:
        self.pod_writes.delete(pod)

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        return self.pod_writes.wait_gone(pods, timeout)

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        return self.pod_writes.wait_agent_ready(node, not_uid, timeout)

    # -- UDP hand-off: a pod out of its Services before it stops --------------------------------
    def check_eviction(self, pod: PodInfo) -> None:
        self.pod_writes.evict(pod, dry_run=True)

    def hand_off(self, pod: PodInfo, remove: Sequence[str], service: str, record: str) -> None:
        self.handoffs.hand_off(pod, remove, service, record)

    def serving_endpoints(self, namespace: str, services: Sequence[str]) -> list[tuple[str, str]]:
        return self.handoffs.serving(namespace, services)

    def handed_off_pods(self) -> list[tuple[PodInfo, Mapping[str, str]]]:
        return self.handoffs.marked()

    def wait_endpoint_gone(self, namespace: str, services: Sequence[str], address: str, timeout: float) -> bool:
        return self.handoffs.wait_endpoint_gone(namespace, services, address, timeout)

    # -- surge before evict: Deployments scaled up and back, their pods priced ------------------
    def deployment(self, namespace: str, name: str) -> DeploymentInfo:
        return self.deployments.get(namespace, name)

    def scale_deployment(self, deployment: DeploymentInfo, replicas: int, surge: SurgeRecord | None) -> DeploymentInfo:
        return self.deployments.scale(deployment, replicas, surge)

    def surged_deployments(self) -> list[DeploymentInfo]:
        return self.deployments.surged()

    def wait_deployment(
        self, deployment: DeploymentInfo, until: Callable[[DeploymentInfo], bool], timeout: float
    ) -> DeploymentInfo:
        return self.deployments.wait(deployment, until, timeout)

    def set_deletion_cost(self, pod: PodInfo, cost: int) -> None:
        self.deployments.set_deletion_cost(pod, cost)

    def wait_replicas_ready(self, deployment: DeploymentInfo, count: int, away_from: str, timeout: float) -> int:
        return self.deployments.wait_ready(deployment, count, away_from, timeout)

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        return self.objects.delete(api_version, kind, namespace, name)

    def ensure_object(self, obj: dict[str, Any]) -> bool:
        return self.objects.ensure(obj)

    # -- the traffic watch (apply --traffic-watch) ---------------------------------------------
    def start_traffic_watch(self, timeout: float) -> str:
        return self.traffic.start(timeout)

    def traffic_reports(self, after: int, timeout: float, node: str) -> tuple[list[Any], list[str]]:
        return self.traffic.reports(timeout, node)

    def stop_traffic_watch(self) -> bool:
        return self.traffic.stop()

    # -- helper pods and probes ------------------------------------------------------------------
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

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        return self.probes.probe(node, check, timeout)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        return self.probes.probe_many(node, checks, timeout)

    def policy_probe(self, timeout: float) -> ProbeResult:
        return self.probes.policy_probe(timeout)

    # -- the executor lock -------------------------------------------------------------------------
    def lease(self, holder: str | None = None, duration: int = 60) -> LeaseLock:
        return LeaseLock(self, holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}", duration)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )
