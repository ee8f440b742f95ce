"""The simulated cluster: a ``Cluster`` adapter over a world kept on disk.

``simstore`` keeps the world (an SQLite database per cluster, every call a transaction),
``simworld`` and ``simbudgets`` are its physics, ``simprobes`` observes the validation
checks and the traffic watch. Here: the port's reads (model types from the world's dicts),
its writes and waits (deletion and restarts are immediate: a wait is one look), Helm's
effect, Events, and ``SimStore`` to create, open and delete clusters by name.

It records every write in an action log (``actions``) and can inject faults:
``--latency`` seconds per call, ``--fail-validation-on NODE[:CHECK]``, and scheduled
errors (``faults``: the n-th call of an operation fails with 429/500/409).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from migrate import traffic, verdicts
from migrate.backends import simbudgets
from migrate.backends import simworld as w
from migrate.backends.simprobes import SimProbes
from migrate.backends.simstore import WorldFile, check_name, create_world, moved_from_json, sims_dir
from migrate.cilium import migration_mode_gaps
from migrate.errors import BadInput, Conflict, EvictionRefused, NotFound, PermanentError, TemporaryError
from migrate.model import (
    HANDOFF_LABEL,
    SURGE_ANNOTATION,
    AutoscalerInfo,
    CalicoPool,
    CiliumState,
    ClusterIdentity,
    Cni,
    DeploymentInfo,
    Inventory,
    LabelSelector,
    NetworkPolicyInfo,
    NodeInfo,
    OwnerRef,
    PDBInfo,
    PodInfo,
    ServiceInfo,
    SurgeRecord,
    Taint,
    WebhookInfo,
    frozen_map,
    read_surge,
)
from migrate.policy import addresses
from migrate.ports import NodeTask, ProbeResult
from migrate.surge import gitops_manager


class SimStore:
    """Create, find and delete simulated clusters under one home directory."""

    def __init__(self, home: Path) -> None:
        self.root = sims_dir(home)

    def path(self, name: str) -> Path:
        check_name(name)
        return self.root / name / "world.db"

    def create(self, name: str, world: w.World) -> SimulatedCluster:
        path = self.path(name)
        exists = BadInput(f"simulated cluster {name!r} exists already (sim delete {name} first)")
        if path.exists() or path.with_name("world.json").exists():
            raise exists
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            create_world(path, world)
        except FileExistsError:
            raise exists from None
        except (OSError, sqlite3.Error) as exc:
            raise BadInput(f"cannot create simulated cluster {name!r} under {self.root}: {_reason(exc)}") from None
        return SimulatedCluster(path)

    def open(self, name: str) -> SimulatedCluster:
        path = self.path(name)
        if not path.exists() and not moved_from_json(path):
            raise BadInput(f"no simulated cluster named {name!r} (create it with 'cni-migrate sim create {name}')")
        return SimulatedCluster(path)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.exists() and not path.with_name("world.json").exists():
            raise BadInput(f"no simulated cluster named {name!r}")
        for child in sorted(path.parent.iterdir()):
            child.unlink()
        path.parent.rmdir()

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted({p.parent.name for pattern in ("*/world.db", "*/world.json") for p in self.root.glob(pattern)})


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def parse_validation_failure(spec: str) -> tuple[str, str]:
    """``NODE``, ``NODE:CHECK`` or ``NODE:CHECK:TIMES`` -> (node, "CHECK" or "CHECK:TIMES"),
    CHECK ``*`` for every check. With TIMES the check fails that many times, then passes
    (a transient start-up failure); without, it always fails."""
    node, _, rest = spec.partition(":")
    check, _, times = rest.partition(":")
    known = (*verdicts.CHECKS, traffic.CHECK)
    if check and check != "*" and check not in known:
        raise BadInput(f"--fail-validation-on {spec!r}: unknown check {check!r} (one of {', '.join(known)})")
    if not node:
        raise BadInput(f"--fail-validation-on {spec!r}: no node named")
    if times and (not times.isdigit() or int(times) < 1):
        raise BadInput(f"--fail-validation-on {spec!r}: TIMES must be a positive number")
    return node, (check or "*") + (f":{times}" if times else "")


class SimulatedCluster:
    """The ``Cluster`` port on a simulated world: each call one transaction of its ``WorldFile``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.parent.name
        self.file = WorldFile(path)
        self.probes = SimProbes(self.file)

    def world(self) -> w.World:
        """A copy of the whole world, the caller's to change (and ``update`` or ``replace``)."""
        with self.file.transaction() as world:
            return json.loads(json.dumps(world, sort_keys=True))  # type: ignore[no-any-return]

    def update(self, **fields: Any) -> None:
        """Change simulation settings (failValidation, faults, latency, nodes...)."""
        with self.file.transaction(write=True) as world:
            world.update(fields)

    def replace(self, world: w.World) -> None:
        """Put ``world`` in place as it is, no controller run: what an edit by hand leaves."""
        self.file.replace(world)

    # -- reads --------------------------------------------------------------------------------
    def identity(self) -> ClusterIdentity:
        with self.file.transaction() as world:
            return ClusterIdentity(kube_system_uid=world["uid"], server=f"sim://{self.name}")

    def nodes(self) -> list[NodeInfo]:
        with self.file.transaction("list-nodes") as world:
            return [_node(world, name) for name in sorted(world["nodes"])]

    def get_node(self, name: str) -> NodeInfo:
        with self.file.transaction("get-node") as world:
            if name not in world["nodes"]:
                raise NotFound(f"node {name} not found", node=name)
            return _node(world, name)

    def pods_on_node(self, name: str) -> list[PodInfo]:
        with self.file.transaction("list-pods") as world:
            return [_pod(p) for p in world["pods"].values() if p["node"] == name]

    def inventory(self) -> Inventory:
        with self.file.transaction("inventory") as world:
            pdbs = []
            for pdb in world["pdbs"]:
                status = simbudgets.pdb_status(world, pdb)
                pdbs.append(
                    PDBInfo(
                        namespace=pdb["namespace"],
                        name=pdb["name"],
                        selector=simbudgets.pdb_selector(pdb),
                        min_available=pdb.get("minAvailable"),
                        max_unavailable=pdb.get("maxUnavailable"),
                        disruptions_allowed=status["disruptionsAllowed"],
                        current_healthy=status["currentHealthy"],
                        desired_healthy=status["desiredHealthy"],
                        expected_pods=status["expectedPods"],
                    )
                )
            c = world["cilium"]
            config = w.cilium_config(world)
            agents = w.owned(world, "DaemonSet", *w.AGENT_DS)
            return Inventory(
                identity=ClusterIdentity(kube_system_uid=world["uid"], server=f"sim://{self.name}"),
                nodes=tuple(_node(world, n) for n in sorted(world["nodes"])),
                pods=tuple(_pod(p) for p in sorted(world["pods"].values(), key=lambda p: p["uid"])),
                pdbs=tuple(pdbs),
                calico_pools=tuple(
                    CalicoPool(p["name"], p["cidr"], p["vxlanMode"], p["ipipMode"]) for p in world["calico"]["pools"]
                ),
                calico_install=world["calico"]["install"],
                calico_dataplane=world["calico"]["dataplane"],
                calico_bgp=world["calico"].get("bgp", False),
                calico_autodetection=world["calico"].get("autodetection", "kubernetes-internal-ip"),
                calico_vxlan_port=world["calico"].get("vxlanPort", 4789),
                service_cidrs=tuple(world.get("serviceCIDRs", [w.SERVICE_CIDR])),
                kube_proxy_cluster_cidr=world.get("kubeProxyClusterCIDR", ""),
                webhooks=tuple(
                    WebhookInfo(
                        h["configuration"], h["name"], h["failurePolicy"], h["namespace"], frozen_map(h["selector"])
                    )
                    for h in world.get("webhooks", ())
                ),
                cilium=CiliumState(
                    installed=c["installed"],
                    migration_mode=not migration_mode_gaps(config),
                    mode_gaps=migration_mode_gaps(config),
                    node_config_api=c["nodeConfigApi"],
                    cluster_pool_cidr=c["poolCIDR"],
                    agents_ready=sum(1 for p in agents if p["ready"]),
                    agents_desired=len(agents),
                    tunnel_port=c.get("tunnelPort"),
                ),
                policies=tuple(
                    NetworkPolicyInfo(p["kind"], p["namespace"], p["name"], addresses(w.policy_object(p)))
                    for p in world["policies"]
                ),
                deployments=tuple(_deployment(world, wl) for wl in world["workloads"] if wl["kind"] == "Deployment"),
                udp_services=tuple(
                    ServiceInfo(svc["namespace"], svc["name"], frozen_map(svc["selector"]), tuple(svc["udpPorts"]))
                    for svc in world.get("services", ())
                    if svc.get("udpPorts") and svc.get("selector")
                ),
                autoscalers=tuple(
                    AutoscalerInfo(
                        a["namespace"], a["name"], a["targetKind"], a["targetName"], a["minReplicas"], a["maxReplicas"]
                    )
                    for a in world.get("autoscalers", ())
                ),
            )

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        return ()  # a simulated cluster has no RBAC

    def cilium_config(self) -> dict[str, str]:
        with self.file.transaction("cilium-config") as world:
            return w.cilium_config(world)

    def network_policies(self) -> list[dict[str, Any]]:
        with self.file.transaction("network-policies") as world:
            return [w.policy_object(p) for p in world["policies"]]

    def cilium_agent(self, node: str) -> PodInfo | None:
        with self.file.transaction("get-agent") as world:
            for pod in world["pods"].values():
                if pod["node"] == node and pod["owner"] == {"kind": "DaemonSet", "name": w.AGENT_DS[1]}:
                    return _pod(pod)
            return None

    def node_cni(self, node: str) -> Cni:
        with self.file.transaction("node-cni") as world:
            w.running(world, node, "node task read-cni", 120.0)
            return Cni(w.node_cni(world, node))

    # -- writes -------------------------------------------------------------------------------
    def set_unschedulable(self, name: str, value: bool) -> bool:
        with self.file.transaction("patch-node", write=True) as world:
            node = w.node_named(world, name)
            changed = node["unschedulable"] != value
            node["unschedulable"] = value
            w.log_action(world, "cordon" if value else "uncordon", name, changed)
            return changed

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        with self.file.transaction("patch-node", write=True) as world:
            node = w.node_named(world, name)
            changed = node["labels"].get(key) != value
            # A new map, not an edit in place: the store notes what is set on a node (simrows).
            node["labels"] = {k: v for k, v in node["labels"].items() if k != key} | (
                {key: value} if value is not None else {}
            )
            w.log_action(world, "label" if value is not None else "unlabel", f"{name}:{key}", changed)
            return changed

    def evict(self, pod: PodInfo) -> None:
        with self.file.transaction("evict", write=True) as world:
            _judge_eviction(world, pod)
            del world["pods"][pod.uid]
            w.log_action(world, "evict", pod.uid, True)

    def delete_pod(self, pod: PodInfo) -> None:
        with self.file.transaction("delete-pod", write=True) as world:
            if world["pods"].pop(pod.uid, None) is None:
                raise NotFound(f"pod {pod.key} not found")
            w.log_action(world, "delete-pod", pod.uid, True)

    # -- UDP hand-off ----------------------------------------------------------------------------
    def check_eviction(self, pod: PodInfo) -> None:
        with self.file.transaction("evict-dry-run") as world:
            _judge_eviction(world, pod)

    def hand_off(self, pod: PodInfo, remove: Sequence[str], service: str, record: str) -> None:
        with self.file.transaction("patch-pod", write=True) as world:
            live = world["pods"].get(pod.uid)
            if live is None:
                raise NotFound(f"pod {pod.key} not found")
            # New values, not edits inside the old ones: the store notes a pod's own keys (simrows).
            labels = {k: v for k, v in live["labels"].items() if k not in remove}
            live["labels"] = {**labels, HANDOFF_LABEL: service}
            live["annotations"] = {**(live.get("annotations") or {}), HANDOFF_LABEL: record}
            owner = live["owner"]
            wl = next(
                (
                    x
                    for x in world["workloads"]
                    if owner and (x["kind"], x["namespace"], x["name"]) == (owner["kind"], pod.namespace, owner["name"])
                ),
                None,
            )
            if wl is not None and any(live["labels"].get(k) != v for k, v in wl["labels"].items()):
                live["owner"] = None  # its controller's selector no longer picks it: let go, replaced
                w.reconcile(world)
            w.log_action(world, "hand-off", pod.uid, True)

    def serving_endpoints(self, namespace: str, services: Sequence[str]) -> list[tuple[str, str]]:
        with self.file.transaction("list-endpointslices") as world:
            return sorted(
                {
                    (p["ip"], p["node"])
                    for svc in world.get("services", ())
                    if svc["namespace"] == namespace and svc["name"] in services
                    for p in world["pods"].values()
                    if p["namespace"] == namespace
                    and p["ready"]
                    and p["ip"]
                    and p["node"]
                    and all(p["labels"].get(k) == v for k, v in svc["selector"].items())
                }
            )

    def handed_off_pods(self) -> list[tuple[PodInfo, Mapping[str, str]]]:
        with self.file.transaction("list-pods") as world:
            found = [
                (_pod(p), dict(p.get("annotations") or {}))
                for p in world["pods"].values()
                if HANDOFF_LABEL in p["labels"]
            ]
        return sorted(found, key=lambda pair: pair[0].key)

    def wait_endpoint_gone(self, namespace: str, services: Sequence[str], address: str, timeout: float) -> bool:
        # The simulated EndpointSlice controller is instant: one look is the whole wait.
        return all(a != address for a, _ in self.serving_endpoints(namespace, services))

    # -- surge before evict ----------------------------------------------------------------------
    def deployment(self, namespace: str, name: str) -> DeploymentInfo:
        with self.file.transaction("get-deployment") as world:
            return _deployment(world, _workload(world, "Deployment", namespace, name))

    def scale_deployment(self, deployment: DeploymentInfo, replicas: int, surge: SurgeRecord | None) -> DeploymentInfo:
        with self.file.transaction("patch-deployment", write=True) as world:
            wl = _workload(world, "Deployment", deployment.namespace, deployment.name)
            if str(wl.get("version", 1)) != deployment.version:
                raise Conflict(f"Deployment {deployment.key} changed since it was read")
            annotations = wl.setdefault("annotations", {})
            if surge is None:
                annotations.pop(SURGE_ANNOTATION, None)
            else:
                annotations[SURGE_ANNOTATION] = surge.to_json()
            wl["replicas"] = replicas
            wl["version"] = int(wl.get("version", 1)) + 1
            w.log_action(world, f"scale:{replicas}", deployment.key, True)
            w.reconcile(world)  # the controllers react before the answer, as the write's result
            return _deployment(world, wl)

    def surged_deployments(self) -> list[DeploymentInfo]:
        with self.file.transaction("list-deployments") as world:
            found = [
                _deployment(world, wl)
                for wl in world["workloads"]
                if wl["kind"] == "Deployment" and SURGE_ANNOTATION in (wl.get("annotations") or {})
            ]
            return sorted(found, key=lambda d: d.key)

    def wait_deployment(
        self, deployment: DeploymentInfo, until: Callable[[DeploymentInfo], bool], timeout: float
    ) -> DeploymentInfo:
        # Each write to the world (another node's thread of the wave) wakes the wait for a look.
        deadline = time.monotonic() + timeout
        while True:
            seen = self.file.writes()
            now = self.deployment(deployment.namespace, deployment.name)
            if until(now) or not self.file.wait_write(seen, deadline - time.monotonic()):
                return now

    def set_deletion_cost(self, pod: PodInfo, cost: int) -> None:
        with self.file.transaction("patch-pod", write=True) as world:
            live = world["pods"].get(pod.uid)
            if live is None:
                raise NotFound(f"pod {pod.key} not found")
            live["deletionCost"] = cost

    def wait_replicas_ready(self, deployment: DeploymentInfo, count: int, away_from: str, timeout: float) -> int:
        # Pods start Ready where they fit in the simulation: one look is the whole wait.
        with self.file.transaction("list-pods") as world:
            _workload(world, "Deployment", deployment.namespace, deployment.name)  # NotFound once deleted
            pods = w.owned(world, "Deployment", deployment.namespace, deployment.name)
            return sum(1 for p in pods if p["ready"] and p["node"] not in (None, away_from))

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        # Deletion is immediate in the simulation: one look is the whole wait.
        with self.file.transaction("list-pods") as world:
            return [p for p in pods if p.uid in world["pods"]]

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        agent = self.cilium_agent(node)
        if agent is None or agent.uid == not_uid or not agent.ready:
            raise TemporaryError(f"no new Ready Cilium agent on {node} within {timeout:.0f}s", node=node)
        return agent

    def run_node_task(self, node: str, task: NodeTask, timeout: float) -> str:
        with self.file.transaction("node-task", write=True) as world:
            w.running(world, node, f"node task {task.value}", timeout)
            if task is NodeTask.RESTORE_CALICO_CNI:
                message = w.restore_calico_files(world, node)
            elif task is NodeTask.REBOOT_RECORD:
                message = world["nodes"][node].get("lastReboot", "unknown")
            else:
                world["nodes"][node]["boots"] += 1
                # The simulated host always has systemd, and its reboot always goes through.
                world["nodes"][node]["lastReboot"] = "orderly: systemctl reboot"
                message = "orderly: systemctl reboot (simulated)"
            w.log_action(world, f"node-task:{task.value}", node, True)
            return message

    def wait_node_ready(self, node: str, timeout: float) -> NodeInfo:
        return self.get_node(node)  # nothing changes while the simulation waits: one look

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        info = self.get_node(node)
        if info.boot_id == old_boot_id or not info.ready:
            raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)
        return info

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        with self.file.transaction("delete-object", write=True) as world:
            objects = world.setdefault("objects", {})
            existed = objects.pop(f"{kind}/{namespace}/{name}", None) is not None
            if kind == "Installation" or (kind == "DaemonSet" and name == w.CALICO_DS[1]):
                # What the Tigera operator (or kubectl delete) does: calico-node goes away.
                before = len(world["workloads"])
                world["workloads"] = [x for x in world["workloads"] if (x["namespace"], x["name"]) != w.CALICO_DS]
                existed = existed or len(world["workloads"]) != before
                for uid in [
                    u
                    for u, p in world["pods"].items()
                    if (p["namespace"], p["owner"] and p["owner"]["name"]) == w.CALICO_DS
                ]:
                    del world["pods"][uid]
                if kind == "Installation":
                    world["calico"]["install"] = "none"
            w.log_action(world, "delete", f"{kind}/{namespace}/{name}", existed)
            return existed

    def cleanup_helper_pods(self, node: str | None = None) -> int:
        return 0  # the simulation's probes and node tasks leave no pods behind

    # -- the traffic watch --------------------------------------------------------------------
    def start_traffic_watch(self, timeout: float) -> str:
        """The simulated probers: one per Ready node, reporting at once."""
        with self.file.transaction("traffic-watch", write=True) as world:
            changed = not world.get("trafficWatch")
            world["trafficWatch"] = True
            w.log_action(world, "apply", f"DaemonSet/{traffic.NAMESPACE}/{traffic.NAME}", changed)
            probers = sum(1 for n in world["nodes"].values() if n["ready"])
        return f"{probers}/{probers} probers reporting"

    def stop_traffic_watch(self) -> bool:
        with self.file.transaction("traffic-watch", write=True) as world:
            existed = bool(world.pop("trafficWatch", False))
            if existed:
                w.log_action(world, "delete", f"DaemonSet/{traffic.NAMESPACE}/{traffic.NAME}", existed)
            return existed

    def ensure_object(self, obj: dict[str, Any]) -> bool:
        key = f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        with self.file.transaction("apply-object", write=True) as world:
            objects = world.setdefault("objects", {})
            changed = objects.get(key) != obj
            objects[key] = obj
            w.log_action(world, "apply", key, changed)
            return changed

    def install_cilium(self, values: dict[str, Any]) -> str:
        """What ``helm upgrade --install cilium`` with ``values`` leaves behind, as the simulated
        cluster models Cilium (its cilium-config); idempotent like the Helm command."""
        migration = values.get("policyEnforcementMode") == "never" and (values.get("cni") or {}).get("customConf")
        pools = ((values.get("ipam") or {}).get("operator") or {}).get("clusterPoolIPv4PodCIDRList") or []
        with self.file.transaction("install-cilium", write=True) as world:
            before = dict(world["cilium"])
            world["cilium"].update(
                installed=True,
                migrationMode=bool(migration),
                poolCIDR=pools[0] if pools else world["cilium"]["poolCIDR"],
                tunnelPort=int(values.get("tunnelPort") or 0),
                configOverrides={},
            )
            w.log_action(world, "helm-install", "cilium", world["cilium"] != before)
        mode = "in migration mode" if migration else "with the final values"
        return f"Cilium runs {mode} (simulated helm upgrade)"

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        with self.file.transaction(write=True) as world:
            world["events"].append(
                {"node": node, "reason": reason, "message": message, "type": "Warning" if warning else "Normal"}
            )

    # -- validation probes and the traffic watch's reports: what ``simprobes`` observes -----
    def policy_probe(self, timeout: float) -> ProbeResult:
        return self.probes.policy_probe(timeout)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        return self.probes.probe_many(node, checks, timeout)

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        return self.probes.probe(node, check, timeout)

    def traffic_reports(self, after: int, timeout: float, node: str) -> tuple[list[Any], list[str]]:
        return self.probes.traffic_reports(after, timeout)


def _node(world: w.World, name: str) -> NodeInfo:
    n = world["nodes"][name]
    return NodeInfo(
        name=name,
        uid=n["uid"],
        labels=frozen_map(n["labels"]),
        taints=tuple(Taint(t["key"], t["effect"], t.get("value", "")) for t in n["taints"]),
        unschedulable=n["unschedulable"],
        ready=n["ready"],
        kernel_version=n["kernel"],
        os_image=n["osImage"],
        operating_system=n["os"],
        cpu_millis=n["cpu"],
        memory_bytes=n["memory"],
        max_pods=n["maxPods"],
        cni=Cni(w.node_cni(world, name)),
        addresses=(n["address"],) if n.get("address") else (),
        boot_id=f"{n['uid']}-{n['boots']}",
        autoscaler_protected=bool(n.get("autoscalerProtected")),
    )


def _judge_eviction(world: w.World, pod: PodInfo) -> None:
    """What the Eviction API answers for ``pod``: nothing when it may go, else the error."""
    live = world["pods"].get(pod.uid)
    if live is None:
        raise NotFound(f"pod {pod.key} not found")
    if len(simbudgets.selecting_pdbs(world, live)) > 1:
        # What the eviction subresource answers (HTTP 500) for a pod under two budgets.
        raise PermanentError(
            f"evict pod {pod.key}: This pod has more than one PodDisruptionBudget, which the eviction "
            "subresource does not support."
        )
    blocker = simbudgets.blocking_pdb(world, live)
    if blocker is not None:
        raise EvictionRefused(
            f"Cannot evict pod {pod.key} as it would violate the pod's disruption budget {blocker}",
            delay=0.5,
            pdb=blocker,
        )


def _pod(p: dict[str, Any]) -> PodInfo:
    owner = p["owner"]
    return PodInfo(
        namespace=p["namespace"],
        name=p["name"],
        uid=p["uid"],
        node=p["node"],
        labels=frozen_map(p["labels"]),
        owner=OwnerRef(owner["kind"], owner["name"]) if owner else None,
        phase=p["phase"],
        ready=p["ready"],
        emptydir=p["emptydir"],
        cpu_millis=p["cpu"],
        memory_bytes=p["memory"],
        ip=p["ip"],
        host_network=p["hostNetwork"],
        grace_seconds=p.get("grace", 30),
        startup_seconds=p.get("startup", 0.0),
        deletion_cost=p.get("deletionCost", 0),
    )


def _deployment(world: w.World, wl: dict[str, Any]) -> DeploymentInfo:
    annotations = wl.get("annotations") or {}
    record, unreadable = read_surge(annotations)
    pods = w.owned(world, "Deployment", wl["namespace"], wl["name"])
    return DeploymentInfo(
        namespace=wl["namespace"],
        name=wl["name"],
        uid=f"{wl['namespace']}/{wl['name']}",
        replicas=wl["replicas"],
        selector=LabelSelector(match_labels=frozen_map(wl["labels"])),
        ready_replicas=sum(1 for p in pods if p["ready"]),
        settled=not wl.get("rolling"),
        gitops=gitops_manager(wl["labels"], annotations),
        surge=record,
        unreadable_surge=unreadable,
        version=str(wl.get("version", 1)),
    )


def _workload(world: w.World, kind: str, namespace: str, name: str) -> dict[str, Any]:
    for wl in world["workloads"]:
        if (wl["kind"], wl["namespace"], wl["name"]) == (kind, namespace, name):
            return wl
    raise NotFound(f"{kind} {namespace}/{name} not found")
