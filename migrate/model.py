"""Inventory: what cni-migrate knows about a cluster at one moment, as plain frozen data.

Backends read a cluster into these types; the planner, preflight checks and drain filters
are pure functions over them. Nothing here does I/O or imports a Kubernetes client.

Quantities are normalised at the backend boundary: CPU in millicores, memory in bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


def frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """A read-only copy of ``items`` with sorted keys (so output is deterministic)."""
    return MappingProxyType(dict(sorted((items or {}).items())))


class Cni(StrEnum):
    """Which CNI a node's pods are networked by, as the node's CNI configuration says."""

    CALICO = "calico"
    CILIUM = "cilium"
    UNKNOWN = "unknown"


CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
MIGRATION_LABEL = "io.cilium.migration/cilium-default"
# Set on a node by the cordon step before it cordons: the cordon is a run's own, and its
# uncordon (or a later plan) may lift it; a node cordoned without it was cordoned by hand.
CORDON_LABEL = "cni-migrate.io/cordoned"


@dataclass(frozen=True)
class ClusterIdentity:
    """Which cluster this is: the kube-system namespace UID plus the API server address.

    ``fingerprint`` binds plans and checkpoints to one cluster; it must not be used as a
    secret or derived from credentials.
    """

    kube_system_uid: str
    server: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.kube_system_uid}|{self.server}".encode()).hexdigest()
        return f"sha256:{digest[:32]}"


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class NodeInfo:
    name: str
    uid: str
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    kernel_version: str = ""
    os_image: str = ""
    operating_system: str = "linux"
    cpu_millis: int = 0
    memory_bytes: int = 0
    max_pods: int = 110
    cni: Cni = Cni.UNKNOWN
    resource_version: str = ""
    addresses: tuple[str, ...] = ()  # InternalIP / ExternalIP
    boot_id: str = ""  # status.nodeInfo.bootID: changes when the node reboots
    # Annotated so that neither the cluster autoscaler nor Karpenter removes it
    # (cluster-autoscaler.kubernetes.io/scale-down-disabled, karpenter.sh/do-not-disrupt).
    autoscaler_protected: bool = False

    @property
    def control_plane(self) -> bool:
        return CONTROL_PLANE_LABEL in self.labels


@dataclass(frozen=True)
class OwnerRef:
    kind: str
    name: str


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    node: str | None
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    owner: OwnerRef | None = None
    phase: str = "Running"
    ready: bool = True
    mirror: bool = False
    emptydir: bool = False
    local_pv: bool = False
    cpu_millis: int = 0
    memory_bytes: int = 0
    ip: str = ""
    host_network: bool = False
    deleting: bool = False
    grace_seconds: int = 30  # spec.terminationGracePeriodSeconds
    # How long it took from start to Ready (status.startTime to its Ready condition's
    # lastTransitionTime), 0 when unknown: what a replacement of it can be expected to take.
    startup_seconds: float = 0.0
    deletion_cost: int = 0  # controller.kubernetes.io/pod-deletion-cost

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def daemonset(self) -> bool:
        return self.owner is not None and self.owner.kind == "DaemonSet"

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector: ``matchLabels`` plus ``matchExpressions``."""

    match_labels: Mapping[str, str] = field(default_factory=frozen_map)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for key, operator, values in self.match_expressions:
            present = key in labels
            if operator == "In" and (not present or labels[key] not in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True)
class PDBInfo:
    """A PodDisruptionBudget with the status the disruption controller computed."""

    namespace: str
    name: str
    selector: LabelSelector
    min_available: str | None = None
    max_unavailable: str | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: PodInfo) -> bool:
        # An empty selector in policy/v1 selects every pod of the namespace.
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)


@dataclass(frozen=True)
class CalicoPool:
    name: str
    cidr: str
    vxlan_mode: str = "Never"
    ipip_mode: str = "Never"


@dataclass(frozen=True)
class CiliumState:
    """What the cluster says about Cilium: install mode and the API versions it serves."""

    installed: bool = False
    migration_mode: bool = False
    mode_gaps: tuple[str, ...] = ()  # why it is not in migration mode (cilium.migration_mode_gaps)
    node_config_api: str | None = None
    cluster_pool_cidr: str | None = None
    agents_ready: int = 0
    agents_desired: int = 0
    tunnel_port: int | None = None  # cilium-config tunnel-port, when set


@dataclass(frozen=True)
class NetworkPolicyInfo:
    kind: str  # NetworkPolicy | CalicoNetworkPolicy | GlobalNetworkPolicy
    namespace: str
    name: str
    cidrs: tuple[str, ...] = ()  # the addresses its rules name (policy.addresses)

    @property
    def shown(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class WebhookInfo:
    """An admission webhook served from inside the cluster: which pods answer it (its
    Service's selector) and what the API server does when none answers."""

    configuration: str  # kind/name of its ValidatingWebhookConfiguration or MutatingWebhookConfiguration
    name: str
    failure_policy: str  # Fail | Ignore
    namespace: str  # of its Service, and so of the pods behind it
    selector: Mapping[str, str] = field(default_factory=frozen_map)

    @property
    def shown(self) -> str:
        return f"{self.configuration} ({self.name})"


@dataclass(frozen=True)
class WorkloadInfo:
    """A controller that re-creates its pods (Deployment, StatefulSet, DaemonSet,
    ReplicaSet): its scale and what one of its pods asks for."""

    kind: str
    namespace: str
    name: str
    replicas: int = 0  # 0 for a DaemonSet: one pod a node
    template_labels: Mapping[str, str] = field(default_factory=frozen_map)
    cpu_millis: int = 0  # one pod's requests
    memory_bytes: int = 0
    emptydir: bool = False
    host_network: bool = False
    owner: OwnerRef | None = None  # a ReplicaSet's Deployment

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServiceInfo:
    """A Service with a selector and at least one UDP port: a drain hands its backends off
    (``migrate.handoff``) instead of stopping them while they are still its endpoints."""

    namespace: str
    name: str
    selector: Mapping[str, str] = field(default_factory=frozen_map)
    udp_ports: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, pod: PodInfo) -> bool:
        return (
            bool(self.selector)
            and pod.namespace == self.namespace
            and all(pod.labels.get(k) == v for k, v in self.selector.items())
        )


# A pod a drain took out of its UDP Services (migrate.handoff) carries this label (value: the
# first Service's name) and an annotation of the same name recording what was removed (JSON:
# {"labels": {key: value}, "services": [names], "plan": id}); the run deletes it once the
# Services' EndpointSlices no longer list it. A killed run's handed-off pods are deleted by
# the next run, found by the label.
HANDOFF_LABEL = "cni-migrate.io/handoff"


# The annotation a surge writes on a Deployment in the same request that changes its
# replicas (migrate.surge): what the surge changed, so that nothing can separate the change
# from its record.
SURGE_ANNOTATION = "cni-migrate.io/surge"


@dataclass(frozen=True)
class SurgeRecord:
    """What a surge changed on a Deployment: its replicas before, the extra pods, the node
    whose drain asked for them and the plan that run follows."""

    original: int
    extra: int
    node: str
    plan: str

    def to_json(self) -> str:
        return json.dumps(
            {"original": self.original, "extra": self.extra, "node": self.node, "plan": self.plan},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SurgeRecord | None:
        """The record, or None when the text is not one we wrote (edited, truncated): then
        the count to put back is unknown (``DeploymentInfo.unreadable_surge``)."""
        try:
            r = json.loads(text)
            record = cls(int(r["original"]), int(r["extra"]), str(r["node"]), str(r["plan"]))
        except (ValueError, TypeError, KeyError):
            return None
        return record if record.original >= 0 and record.extra > 0 else None


def read_surge(annotations: Mapping[str, str]) -> tuple[SurgeRecord | None, str | None]:
    """A Deployment's surge annotation as (record, None); (None, its text) when it is there
    but unreadable; (None, None) when there is none."""
    if SURGE_ANNOTATION not in annotations:
        return None, None
    text = str(annotations[SURGE_ANNOTATION])
    record = SurgeRecord.from_json(text)
    return (record, None) if record is not None else (None, text)


@dataclass(frozen=True)
class DeploymentInfo:
    """A Deployment as a surge needs it: its scale, whether its rollout is finished (a
    Deployment mid-rollout spreads a scale change over its ReplicaSets), who else changes its
    replicas (a GitOps controller), and a surge in flight."""

    namespace: str
    name: str
    uid: str = ""
    replicas: int = 1
    selector: LabelSelector = field(default_factory=LabelSelector)
    ready_replicas: int = 0
    settled: bool = True  # observedGeneration current, every replica updated, no old pods
    gitops: str = ""  # the GitOps controller whose markers it carries ("Argo CD", "Flux"), "" if none
    surge: SurgeRecord | None = None
    # The surge annotation's text when it is there but not a record (edited, truncated):
    # the count it was surged from is unknown, so no run acts before an operator sets it.
    # None when there is no annotation or it reads as ``surge``.
    unreadable_surge: str | None = None
    version: str = ""  # resourceVersion: a scale is written only if it is unchanged

    @property
    def carries_surge(self) -> bool:
        """The surge annotation is on it, readable or not."""
        return self.surge is not None or self.unreadable_surge is not None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class AutoscalerInfo:
    """A HorizontalPodAutoscaler: it owns its target's replicas between min and max."""

    namespace: str
    name: str
    target_kind: str
    target_name: str
    min_replicas: int = 1
    max_replicas: int = 1

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Inventory:
    """A consistent read of everything planning needs. Pods are indexed by node once."""

    identity: ClusterIdentity
    nodes: tuple[NodeInfo, ...]
    pods: tuple[PodInfo, ...] = ()
    pdbs: tuple[PDBInfo, ...] = ()
    calico_pools: tuple[CalicoPool, ...] = ()
    calico_install: str = "none"  # operator | manifest | none
    calico_dataplane: str = "iptables"
    calico_bgp: bool = False
    # Calico's node address autodetection in IP_AUTODETECTION_METHOD form (first-found,
    # kubernetes-internal-ip, interface=REGEX, skip-interface=REGEX, can-reach=DEST,
    # cidr=CIDR,...); empty when Calico is not installed.
    calico_autodetection: str = ""
    calico_vxlan_port: int = 4789
    service_cidrs: tuple[str, ...] = ()
    # kube-proxy's clusterCIDR (its ConfigMap's config.conf or --cluster-cidr), comma-separated
    # when dual-stack; "" when kube-proxy sets none or does not run.
    kube_proxy_cluster_cidr: str = ""
    webhooks: tuple[WebhookInfo, ...] = ()
    cilium: CiliumState = CiliumState()
    policies: tuple[NetworkPolicyInfo, ...] = ()
    deployments: tuple[DeploymentInfo, ...] = ()
    autoscalers: tuple[AutoscalerInfo, ...] = ()
    udp_services: tuple[ServiceInfo, ...] = ()
    missing_permissions: tuple[str, ...] = ()

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes_by_name.get(name)

    @property
    def _nodes_by_name(self) -> Mapping[str, NodeInfo]:
        cached = self.__dict__.get("_nodes_cache")
        if cached is None:
            cached = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_nodes_cache", cached)
        return cached

    def evictable_on(self, node: str) -> tuple[PodInfo, ...]:
        """Pods a drain of ``node`` would move: not DaemonSet, mirror or finished pods."""
        cached = self.__dict__.setdefault("_evictable_cache", {})
        if node not in cached:
            cached[node] = tuple(
                p
                for p in self.pods_on(node)
                if not p.mirror
                and p.phase not in ("Succeeded", "Failed")
                and (p.owner is None or p.owner.kind != "DaemonSet")
            )
        return cached[node]  # type: ignore[no-any-return]

    def pods_on(self, node: str) -> tuple[PodInfo, ...]:
        cached = self.__dict__.get("_pods_cache")
        if cached is None:
            index: dict[str, list[PodInfo]] = {}
            for pod in self.pods:
                if pod.node:
                    index.setdefault(pod.node, []).append(pod)
            cached = {k: tuple(v) for k, v in index.items()}
            object.__setattr__(self, "_pods_cache", cached)
        return cached.get(node, ())
