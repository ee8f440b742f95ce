"""The simulated cluster's world: objects as plain dicts and the controllers that act on them.

This is the "physics" of the simulation, kept apart from persistence (``simstore``) and
from the ``Cluster`` adapter (``simulated``): the default scenario, scheduling (least-loaded
schedulable node that fits), Deployment/StatefulSet/DaemonSet controllers re-creating pods,
pod IPs from the node's CNI, and each node's CNI configuration files with the Cilium
agent's behaviour in migration mode. PodDisruptionBudgets are ``simbudgets``'s. All
functions mutate the ``World`` dict they are given; nothing here sleeps or touches the disk.

World schema (JSON): {name, uid, seed, latency, failValidation: {node: [check|"*"]},
faults: [{op, nth, error}], counters: {pod, op: {<op>: n}}, nodes: {name: {...}},
workloads: [...], pods: {uid: {...}}, pdbs: [...], calico: {...}, cilium: {...},
policies: [...], actions: [{op, target, changed}], events: [{node, reason, message}]};
optional: serviceCIDRs, kubeProxyClusterCIDR, webhooks: [{configuration, name, failurePolicy,
namespace, selector}], copiedFrom (a copy's source, ``simcopy``), a node's
autoscalerProtected, a PDB's matchExpressions ([key, operator, [values]], ``simbudgets``),
autoscalers: [{namespace, name, targetKind, targetName, minReplicas, maxReplicas}], a
workload's annotations, version (bumped by each scale) and rolling (a rollout under way),
a pod's deletionCost, grace and startup (seconds), a node's lastReboot (how its last reboot
went, as the host records it).
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from typing import Any

from migrate.cniconf import CALICO_CONF, after_agent_start, after_restore, cni_from_files
from migrate.errors import NotFound, TemporaryError
from migrate.model import CONTROL_PLANE_LABEL, MIGRATION_LABEL

World = dict[str, Any]

CALICO_POOL = "192.168.0.0/16"
CILIUM_POOL = "10.245.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_NETWORK = "172.18.0.0/16"  # node n's InternalIP is 172.18.0.(n+1)
AGENT_DS = ("kube-system", "cilium")
CALICO_DS = ("calico-system", "calico-node")


# -- scenario ------------------------------------------------------------------------------
def blank_world(name: str, uid: str, *, seed: int = 0, latency: float = 0.0) -> World:
    """A world with nothing in it yet: no nodes, workloads, pods, budgets or records."""
    return {
        "name": name,
        "uid": uid,
        "seed": seed,
        "latency": latency,
        "failValidation": {},
        "faults": [],
        "counters": {"pod": 0, "op": {}},
        "nodes": {},
        "workloads": [],
        "pods": {},
        "pdbs": [],
        "actions": [],
        "events": [],
    }


def default_world(name: str, nodes: int = 6, seed: int = 0, latency: float = 0.0) -> World:
    """1 control-plane node and ``nodes - 1`` workers on Calico, Cilium installed in
    migration mode beside it, workloads with PDBs, a DaemonSet, a bare and an emptyDir pod."""
    rng = random.Random(seed)
    world = blank_world(name, f"{rng.getrandbits(128):032x}", seed=seed, latency=latency)
    world |= {
        "calico": {
            "install": "operator",
            "dataplane": "iptables",
            "pools": [{"name": "default-ipv4-ippool", "cidr": CALICO_POOL, "vxlanMode": "Always", "ipipMode": "Never"}],
            "bgp": False,
            "autodetection": "kubernetes-internal-ip",
            "vxlanPort": 4789,
        },
        "cilium": {
            "installed": True,
            "migrationMode": True,
            "nodeConfigApi": "cilium.io/v2",
            "poolCIDR": CILIUM_POOL,
            "tunnelPort": 8473,
        },
        "serviceCIDRs": [SERVICE_CIDR],
        "policies": [
            {"kind": "NetworkPolicy", "namespace": "shop", "name": "allow-frontend-to-api"},
            {
                "kind": "GlobalNetworkPolicy",
                "namespace": "",
                "name": "allow-cluster-dns",
                "spec": {
                    "selector": "all()",
                    "types": ["Egress"],
                    "egress": [
                        {
                            "action": "Allow",
                            "protocol": "UDP",
                            "destination": {
                                "selector": "k8s-app == 'kube-dns'",
                                "namespaceSelector": "kubernetes.io/metadata.name == 'kube-system'",
                                "ports": [53],
                            },
                        },
                        {"action": "Allow", "destination": {"nets": ["0.0.0.0/0"]}},
                    ],
                },
            },
            {
                "kind": "CalicoNetworkPolicy",
                "namespace": "shop",
                "name": "audit-db-access",
                "spec": {
                    "selector": "app == 'db'",
                    "ingress": [
                        {"action": "Log", "source": {"selector": "app == 'api'"}},
                        {"action": "Allow", "source": {"selector": "app == 'api'"}},
                    ],
                },
            },
        ],
    }
    names = ["cp-1"] + [f"worker-{i}" for i in range(1, nodes)]
    for index, node in enumerate(names):
        control = node.startswith("cp-")
        world["nodes"][node] = {
            "uid": f"{rng.getrandbits(64):016x}",
            "index": index,
            "labels": {
                "kubernetes.io/hostname": node,
                "kubernetes.io/os": "linux",
                **({CONTROL_PLANE_LABEL: ""} if control else {}),
            },
            "taints": [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}] if control else [],
            "unschedulable": False,
            "ready": True,
            "kernel": rng.choice(["6.1.0-18-amd64", "5.15.0-91-generic", "6.8.0-45-generic"]),
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "os": "linux",
            "cpu": 4000,
            "memory": 8 * 2**30,
            "maxPods": 110,
            "cniFiles": [CALICO_CONF],
            "boots": 1,
            "ipCounter": 0,
            "address": str(ipaddress.ip_network(NODE_NETWORK).network_address + index + 2),
        }
    workers = max(nodes - 1, 1)
    world["workloads"] = [
        _workload("DaemonSet", *AGENT_DS, host_network=True),
        _workload("DaemonSet", *CALICO_DS, host_network=True),
        _workload("DaemonSet", "monitoring", "log-shipper"),
        _workload("Deployment", "kube-system", "coredns", replicas=2, cpu=100),
        _workload("Deployment", "shop", "frontend", replicas=max(3, workers), cpu=200),
        _workload("Deployment", "shop", "api", replicas=2, cpu=250),
        _workload("StatefulSet", "shop", "db", replicas=3, cpu=500),
        _workload("Deployment", "shop", "thumbnailer", replicas=1, cpu=100, emptydir=True),
    ]
    # The Services the migration looks at: those with a UDP port (migrate.handoff).
    world["services"] = [
        {"namespace": "kube-system", "name": "kube-dns", "selector": {"app": "coredns"}, "udpPorts": [53]},
    ]
    world["pdbs"] = [
        {"namespace": "kube-system", "name": "coredns", "selector": {"app": "coredns"}, "maxUnavailable": "1"},
        {"namespace": "shop", "name": "frontend", "selector": {"app": "frontend"}, "minAvailable": "50%"},
        {"namespace": "shop", "name": "api", "selector": {"app": "api"}, "maxUnavailable": "1"},
        {"namespace": "shop", "name": "db", "selector": {"app": "db"}, "maxUnavailable": "1"},
    ]
    reconcile(world)
    # A bare pod nobody re-creates, on the first worker.
    create_pod(world, "default", "debug", None, {"run": "debug"}, node=names[min(1, nodes - 1)], cpu=50)
    return world


def _workload(
    kind: str,
    namespace: str,
    name: str,
    *,
    replicas: int = 0,
    cpu: int = 0,
    emptydir: bool = False,
    host_network: bool = False,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "replicas": replicas,
        "cpu": cpu,
        "memory": cpu * 2**20,
        "emptydir": emptydir,
        "hostNetwork": host_network,
        "labels": {"app": name},
    }


# -- pods and scheduling -------------------------------------------------------------------
class Capacity:
    """What the scheduler knows during one ``reconcile`` pass: each node's requests and pods
    in use, and the nodes a pod may go to in the scheduler's order (fewest pods, then name).

    Built with one look at every pod when the pass first places one (most passes place
    none); from then on the pass tells it every pod it binds or deletes, so a placement costs
    a few heap operations, not a scan of every pod for every node (which made a 1,000-node
    world take two minutes to create). A pass changes no node, so which nodes take pods
    (schedulable, Ready, untainted) is decided once."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.used: dict[str, list[int]] = {}  # cpu, memory, pods; empty until the first placement
        self.open: set[str] = set()
        self.queue: list[tuple[int, str]] = []

    def _build(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = self.world["nodes"]
        self.used = {name: [0, 0, 0] for name in self.nodes}
        for pod in self.world["pods"].values():
            used = self.used.get(pod["node"])
            if used is not None:
                used[0], used[1], used[2] = used[0] + pod["cpu"], used[1] + pod["memory"], used[2] + 1
        self.open = {
            name
            for name, node in self.nodes.items()
            if not node["unschedulable"] and node["ready"] and not node["taints"]
        }
        # (pods, name) of each open node; an entry whose count is no longer the node's is stale
        # and skipped (a node's every change pushes its new entry).
        self.queue = [(self.used[name][2], name) for name in self.open]
        heapq.heapify(self.queue)

    def _count(self, node: str, cpu: int, memory: int, sign: int) -> None:
        used = self.used[node]
        used[0] += sign * cpu
        used[1] += sign * memory
        used[2] += sign
        if node in self.open:
            heapq.heappush(self.queue, (used[2], node))

    def bound(self, pod: dict[str, Any]) -> None:
        """``pod`` was bound to its node (or created there) in this pass (before the first
        placement, the build counts it)."""
        if pod["node"] in self.used:
            self._count(pod["node"], pod["cpu"], pod["memory"], 1)

    def deleted(self, pod: dict[str, Any]) -> None:
        """``pod`` was deleted in this pass."""
        if pod["node"] in self.used:
            self._count(pod["node"], pod["cpu"], pod["memory"], -1)

    def place(self, cpu: int, memory: int) -> str | None:
        """The least-loaded open node that fits, ties broken by name; None if none fits. The
        caller binds the pod there and says so (``bound``)."""
        if not self.used:
            self._build()
        skipped, found = [], None
        while self.queue:
            count, name = heapq.heappop(self.queue)
            used, node = self.used[name], self.nodes[name]
            if count != used[2]:
                continue  # stale: the node's current entry is elsewhere in the queue
            if used[0] + cpu > node["cpu"] or used[1] + memory > node["memory"] or count >= node["maxPods"]:
                skipped.append((count, name))
                continue
            found = name
            break
        for entry in skipped:
            heapq.heappush(self.queue, entry)
        if found is not None:
            heapq.heappush(self.queue, (self.used[found][2], found))  # until ``bound`` counts the pod
        return found


def log_action(world: World, op: str, target: str, changed: bool) -> None:
    """Note a write in the world's action log (what tests and ``sim show`` read back)."""
    world["actions"].append({"op": op, "target": target, "changed": changed})


def node_named(world: World, name: str) -> dict[str, Any]:
    """The node's entry; NotFound, as the API answers, for a node the world does not have."""
    try:
        return world["nodes"][name]  # type: ignore[no-any-return]
    except KeyError:
        raise NotFound(f"node {name} not found", node=name) from None


def running(world: World, name: str, what: str, timeout: float) -> dict[str, Any]:
    """The node's entry, if it runs what is asked of it: a NotReady node runs no pod, so a
    helper pod's wait ends as the real backend's does, at its timeout (TemporaryError)."""
    node = node_named(world, name)
    if not node["ready"]:
        raise TemporaryError(f"{what} on {name} did not finish within {timeout:.0f}s: the node is NotReady", node=name)
    return node


def node_cni(world: World, node: str) -> str:
    return cni_from_files(world["nodes"][node]["cniFiles"]).value


def node_pod_cidr(world: World, node: str, cni: str) -> ipaddress.IPv4Network:
    """The node's /24 inside the pool of ``cni``: the world's first Calico IP pool, or the
    cluster pool Cilium runs with (the plan's pool once Cilium is installed). One per node,
    deterministic, never shared (until a pool of fewer /24s than nodes wraps round)."""
    pools = world["calico"]["pools"]
    pool = ipaddress.ip_network(
        world["cilium"]["poolCIDR"] if cni == "cilium" else (pools[0]["cidr"] if pools else CALICO_POOL)
    )
    offset = world["nodes"][node]["index"] * 256 % max(pool.num_addresses, 256)
    return ipaddress.ip_network(f"{pool.network_address + offset}/{max(pool.prefixlen, 24)}", strict=False)  # type: ignore[return-value]


def _pod_ip(world: World, node: str, host_network: bool) -> str:
    n = world["nodes"][node]
    if host_network:
        return f"172.18.{n['index'] // 250}.{n['index'] % 250 + 2}"
    n["ipCounter"] += 1
    net = node_pod_cidr(world, node, node_cni(world, node))
    return str(net.network_address + 2 + n["ipCounter"] % 250)


def probe_ip(world: World, node: str, cni: str | None = None) -> str:
    """The address a probe pod on ``node`` would get from the node's current CNI (or ``cni``)."""
    return str(node_pod_cidr(world, node, cni or node_cni(world, node)).network_address + 250)


def create_pod(
    world: World,
    namespace: str,
    name: str,
    owner: dict[str, str] | None,
    labels: dict[str, str],
    *,
    node: str | None,
    cpu: int = 0,
    memory: int = 0,
    emptydir: bool = False,
    host_network: bool = False,
) -> dict[str, Any]:
    world["counters"]["pod"] += 1
    uid = f"pod-{world['counters']['pod']:06d}"
    pod = {
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "node": node,
        "labels": dict(labels),
        "owner": owner,
        "phase": "Running" if node else "Pending",
        "ready": node is not None,
        "cpu": cpu,
        "memory": memory,
        "emptydir": emptydir,
        "hostNetwork": host_network,
        "ip": _pod_ip(world, node, host_network) if node else "",
    }
    world["pods"][uid] = pod
    return pod


def owned(world: World, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p for p in world["pods"].values() if p["owner"] == {"kind": kind, "name": name} and p["namespace"] == namespace
    ]


def reconcile(world: World) -> None:
    """Run the controllers once: DaemonSets, Deployments, StatefulSets, pending pods."""
    capacity = Capacity(world)
    by_owner: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for pod in world["pods"].values():
        if pod["owner"]:
            by_owner.setdefault((pod["owner"]["kind"], pod["namespace"], pod["owner"]["name"]), []).append(pod)

    def replica(wl: dict[str, Any], name: str, node: str | None) -> None:
        capacity.bound(_replica(world, wl, name, node))

    nodes = sorted(world["nodes"])
    for wl in world["workloads"]:
        kind, ns, name = wl["kind"], wl["namespace"], wl["name"]
        pods = by_owner.get((kind, ns, name), [])
        if kind == "DaemonSet":
            have = {p["node"] for p in pods}
            for node in nodes:
                if node not in have and world["nodes"][node]["ready"]:
                    replica(wl, f"{name}-{world['nodes'][node]['uid'][:5]}", node)
                    if (ns, name) == AGENT_DS:
                        agent_started(world, node)
            continue
        if kind == "StatefulSet":
            present = {p["name"] for p in pods}
            for ordinal in range(wl["replicas"]):
                pod_name = f"{name}-{ordinal}"
                if pod_name not in present:
                    replica(wl, pod_name, capacity.place(wl["cpu"], wl["memory"]))
            continue
        for _ in range(wl["replicas"] - len(pods)):
            suffix = f"{world['counters']['pod'] + 1:05d}"
            replica(wl, f"{name}-{suffix}", capacity.place(wl["cpu"], wl["memory"]))
        if len(pods) <= wl["replicas"]:
            continue
        ranked = sorted(enumerate(pods), key=lambda ip: _deletion_rank(ip[1], ip[0]))
        for _, pod in ranked[: len(pods) - wl["replicas"]]:
            del world["pods"][pod["uid"]]  # scaled down: the ReplicaSet controller's choice
            capacity.deleted(pod)
            log_action(world, "delete-pod", pod["uid"], True)
    for pod in world["pods"].values():
        if pod["node"] is None:
            target = capacity.place(pod["cpu"], pod["memory"])
            if target is not None:
                pod.update(node=target, phase="Running", ready=True, ip=_pod_ip(world, target, pod["hostNetwork"]))
                capacity.bound(pod)


def _deletion_rank(pod: dict[str, Any], age: int) -> tuple[bool, bool, int, int]:
    """The ReplicaSet controller's order for scaling down, first deleted first: unscheduled
    before scheduled, not Ready before Ready, lower pod-deletion-cost first, newer first
    (``age``: its place among the workload's pods, oldest first)."""
    return pod["node"] is not None, pod["ready"], pod.get("deletionCost", 0), -age


def _replica(world: World, wl: dict[str, Any], name: str, node: str | None) -> dict[str, Any]:
    """A pod of workload ``wl``, from its template: labels, requests, volumes, network."""
    return create_pod(
        world,
        wl["namespace"],
        name,
        {"kind": wl["kind"], "name": wl["name"]},
        wl["labels"],
        node=node,
        cpu=wl["cpu"],
        memory=wl["memory"],
        emptydir=wl["emptydir"],
        host_network=wl["hostNetwork"],
    )


def agent_started(world: World, node: str) -> None:
    """A Cilium agent started on ``node``: apply what it does to the CNI configuration."""
    n = world["nodes"][node]
    n["cniFiles"] = after_agent_start(n["cniFiles"], n["labels"].get(MIGRATION_LABEL) == "true")


def cilium_config(world: World) -> dict[str, str]:
    """What Cilium's Helm chart would have rendered into kube-system/cilium-config."""
    c = world["cilium"]
    if not c["installed"]:
        return {}
    migration = c["migrationMode"]
    config = {
        "custom-cni-conf": "true" if migration else "false",
        "enable-policy": "never" if migration else "default",
        "enable-host-legacy-routing": "true" if migration else "false",
        "ipam": "cluster-pool",
        "cluster-pool-ipv4-cidr": c["poolCIDR"],
    }
    if c.get("tunnelPort"):
        config["tunnel-port"] = str(c["tunnelPort"])
    config.update(c.get("configOverrides") or {})  # what an operator changed by hand
    return config


def policy_object(entry: dict[str, Any]) -> dict[str, Any]:
    """A world policy entry as the API would return it."""
    kind = entry["kind"]
    if kind == "NetworkPolicy":
        api = "networking.k8s.io/v1"
    else:
        api, kind = "crd.projectcalico.org/v1", kind.removeprefix("Calico")
    meta = {"name": entry["name"], **({"namespace": entry["namespace"]} if entry["namespace"] else {})}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": entry.get("spec") or {}}


def restore_calico_files(world: World, node: str) -> str:
    n = world["nodes"][node]
    n["cniFiles"] = after_restore(n["cniFiles"])
    return "restored " + ", ".join(f for f in n["cniFiles"] if f.endswith(".conflist"))
