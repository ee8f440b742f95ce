"""The simulated cluster: a ``Cluster`` adapter over a world kept on disk.

Each simulated cluster lives in ``$CNI_MIGRATE_HOME/sims/<name>/world.json`` so separate
processes (plan, apply, a killed apply, resume, ``sim show``) see the same cluster. Every
call is one transaction: take an exclusive ``flock`` on the world, load it, act, let the
controllers react (``simworld.reconcile``), write it back atomically (temp + rename).

It records every write in an action log (``actions``) and can inject faults:
``--latency`` seconds per call, ``--fail-validation-on NODE[:CHECK]``, and scheduled
errors (``faults``: the n-th call of an operation fails with 429/500/409).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from migrate import traffic, verdicts
from migrate.backends import simworld as w
from migrate.cilium import migration_mode_gaps
from migrate.errors import BadInput, Conflict, EvictionRefused, NotFound, PermanentError, TemporaryError
from migrate.model import (
    CalicoPool,
    CiliumState,
    ClusterIdentity,
    Cni,
    Inventory,
    LabelSelector,
    NetworkPolicyInfo,
    NodeInfo,
    OwnerRef,
    PDBInfo,
    PodInfo,
    Taint,
    frozen_map,
)
from migrate.ports import NodeTask, ProbeResult

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def sims_dir(home: Path) -> Path:
    return home / "sims"


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise BadInput(f"simulated cluster name {name!r} is not a DNS label (a-z, 0-9, '-')")


class SimStore:
    """Create, find and delete simulated clusters under one home directory."""

    def __init__(self, home: Path) -> None:
        self.root = sims_dir(home)

    def path(self, name: str) -> Path:
        _check_name(name)
        return self.root / name / "world.json"

    def create(self, name: str, world: w.World) -> SimulatedCluster:
        path = self.path(name)
        if path.exists():
            raise BadInput(f"simulated cluster {name!r} exists already (sim delete {name} first)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, world)
        except OSError as exc:
            raise BadInput(f"cannot create simulated cluster {name!r} under {self.root}: {exc.strerror}") from None
        return SimulatedCluster(path)

    def open(self, name: str) -> SimulatedCluster:
        path = self.path(name)
        if not path.exists():
            raise BadInput(f"no simulated cluster named {name!r} (create it with 'cni-migrate sim create {name}')")
        return SimulatedCluster(path)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.exists():
            raise BadInput(f"no simulated cluster named {name!r}")
        for child in sorted(path.parent.iterdir()):
            child.unlink()
        path.parent.rmdir()

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/world.json"))


def _write(path: Path, world: w.World) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(world, f, indent=1, sort_keys=True)
    # Atomic against a killed process (which is what the simulation must survive);
    # no fsync: the world is a test fixture, not data a power cut must keep.
    os.replace(tmp, path)


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
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.parent.name
        self._checked = False  # the world's shape is checked on first read

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def _tx(self, op: str | None = None, write: bool = False) -> Iterator[w.World]:
        with open(self.path.parent / "world.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                world = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise BadInput(f"simulated cluster {self.name!r} is unreadable: {exc}") from exc
            if not self._checked:
                wrong = w.problem(world)
                if wrong:
                    raise BadInput(
                        f"simulated cluster {self.name!r} is malformed ({self.path}: {wrong}); "
                        f"recreate it with 'cni-migrate sim delete {self.name}' and 'sim create'"
                    )
                self._checked = True
            if world.get("latency"):
                time.sleep(float(world["latency"]))
            if op is not None:
                self._maybe_fault(world, op)
            yield world
            if write:
                w.reconcile(world)
                _write(self.path, world)

    def _maybe_fault(self, world: w.World, op: str) -> None:
        counters = world["counters"]["op"]
        counters[op] = counters.get(op, 0) + 1
        for fault in world["faults"]:
            if fault["op"] == op and fault["nth"] == counters[op]:
                _write(self.path, world)  # keep the counter, so the fault fires once
                error = fault["error"]
                if error == "429":
                    raise TemporaryError(f"injected 429 on {op} #{counters[op]}", delay=0.1)
                if error == "409":
                    raise Conflict(f"injected 409 on {op} #{counters[op]}")
                if error == "500":
                    raise TemporaryError(f"injected 500 on {op} #{counters[op]}", delay=0.1)
                raise PermanentError(f"injected {error} on {op} #{counters[op]}")
        if op in {f["op"] for f in world["faults"]}:
            _write(self.path, world)

    def world(self) -> w.World:
        with self._tx() as world:
            return world

    def update(self, **fields: Any) -> None:
        """Change simulation settings (failValidation, faults, latency, nodes...)."""
        with self._tx(write=True) as world:
            world.update(fields)

    def _log(self, world: w.World, op: str, target: str, changed: bool) -> None:
        world["actions"].append({"op": op, "target": target, "changed": changed})

    # -- reads --------------------------------------------------------------------------------
    def identity(self) -> ClusterIdentity:
        with self._tx() as world:
            return ClusterIdentity(kube_system_uid=world["uid"], server=f"sim://{self.name}")

    def nodes(self) -> list[NodeInfo]:
        with self._tx("list-nodes") as world:
            return [_node(world, name) for name in sorted(world["nodes"])]

    def get_node(self, name: str) -> NodeInfo:
        with self._tx("get-node") as world:
            if name not in world["nodes"]:
                raise NotFound(f"node {name} not found", node=name)
            return _node(world, name)

    def pods_on_node(self, name: str) -> list[PodInfo]:
        with self._tx("list-pods") as world:
            return [_pod(p) for p in world["pods"].values() if p["node"] == name]

    def inventory(self) -> Inventory:
        with self._tx("inventory") as world:
            pdbs = []
            for pdb in world["pdbs"]:
                status = w.pdb_status(world, pdb)
                pdbs.append(
                    PDBInfo(
                        namespace=pdb["namespace"],
                        name=pdb["name"],
                        selector=LabelSelector(match_labels=frozen_map(pdb["selector"])),
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
                policies=tuple(NetworkPolicyInfo(p["kind"], p["namespace"], p["name"]) for p in world["policies"]),
            )

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        return ()  # a simulated cluster has no RBAC

    def cilium_config(self) -> dict[str, str]:
        with self._tx("cilium-config") as world:
            return w.cilium_config(world)

    def network_policies(self) -> list[dict[str, Any]]:
        with self._tx("network-policies") as world:
            return [w.policy_object(p) for p in world["policies"]]

    def cilium_agent(self, node: str) -> PodInfo | None:
        with self._tx("get-agent") as world:
            for pod in world["pods"].values():
                if pod["node"] == node and pod["owner"] == {"kind": "DaemonSet", "name": w.AGENT_DS[1]}:
                    return _pod(pod)
            return None

    def node_cni(self, node: str) -> Cni:
        with self._tx("node-cni") as world:
            return Cni(w.node_cni(world, node))

    # -- writes -------------------------------------------------------------------------------
    def set_unschedulable(self, name: str, value: bool) -> bool:
        with self._tx("patch-node", write=True) as world:
            node = self._node_dict(world, name)
            changed = node["unschedulable"] != value
            node["unschedulable"] = value
            self._log(world, "cordon" if value else "uncordon", name, changed)
            return changed

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        with self._tx("patch-node", write=True) as world:
            labels = self._node_dict(world, name)["labels"]
            changed = labels.get(key) != value
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
            self._log(world, "label" if value is not None else "unlabel", f"{name}:{key}", changed)
            return changed

    def evict(self, pod: PodInfo) -> None:
        with self._tx("evict", write=True) as world:
            live = world["pods"].get(pod.uid)
            if live is None:
                raise NotFound(f"pod {pod.key} not found")
            if len(w.selecting_pdbs(world, live)) > 1:
                # What the eviction subresource answers (HTTP 500) for a pod under two budgets.
                raise PermanentError(
                    f"evict pod {pod.key}: This pod has more than one PodDisruptionBudget, which the eviction "
                    "subresource does not support."
                )
            blocker = w.blocking_pdb(world, live)
            if blocker is not None:
                raise EvictionRefused(
                    f"Cannot evict pod {pod.key} as it would violate the pod's disruption budget {blocker}",
                    delay=0.5,
                    pdb=blocker,
                )
            del world["pods"][pod.uid]
            self._log(world, "evict", pod.uid, True)

    def delete_pod(self, pod: PodInfo) -> None:
        with self._tx("delete-pod", write=True) as world:
            if world["pods"].pop(pod.uid, None) is None:
                raise NotFound(f"pod {pod.key} not found")
            self._log(world, "delete-pod", pod.uid, True)

    def wait_pods_gone(self, pods: Sequence[PodInfo], timeout: float) -> list[PodInfo]:
        # Deletion is immediate in the simulation: one look is the whole wait.
        with self._tx("list-pods") as world:
            return [p for p in pods if p.uid in world["pods"]]

    def wait_cilium_agent_ready(self, node: str, not_uid: str, timeout: float) -> PodInfo:
        agent = self.cilium_agent(node)
        if agent is None or agent.uid == not_uid or not agent.ready:
            raise TemporaryError(f"no new Ready Cilium agent on {node} within {timeout:.0f}s", node=node)
        return agent

    def run_node_task(self, node: str, task: NodeTask, timeout: float) -> str:
        with self._tx("node-task", write=True) as world:
            self._node_dict(world, node)
            if task is NodeTask.RESTORE_CALICO_CNI:
                message = w.restore_calico_files(world, node)
            else:
                world["nodes"][node]["boots"] += 1
                message = "rebooted"
            self._log(world, f"node-task:{task.value}", node, True)
            return message

    def wait_node_rebooted(self, node: str, old_boot_id: str, timeout: float) -> NodeInfo:
        info = self.get_node(node)
        if info.boot_id == old_boot_id or not info.ready:
            raise TemporaryError(f"{node} did not come back from its reboot within {timeout:.0f}s", node=node)
        return info

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        with self._tx("delete-object", write=True) as world:
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
            self._log(world, "delete", f"{kind}/{namespace}/{name}", existed)
            return existed

    def cleanup_helper_pods(self, node: str | None = None) -> int:
        return 0  # the simulation's probes and node tasks leave no pods behind

    # -- the traffic watch --------------------------------------------------------------------
    def start_traffic_watch(self, timeout: float) -> str:
        """The simulated probers: one per Ready node, reporting at once."""
        with self._tx("traffic-watch", write=True) as world:
            changed = not world.get("trafficWatch")
            world["trafficWatch"] = True
            self._log(world, "apply", f"DaemonSet/{traffic.NAMESPACE}/{traffic.NAME}", changed)
            probers = sum(1 for n in world["nodes"].values() if n["ready"])
        return f"{probers}/{probers} probers reporting"

    def traffic_reports(self, after: int, timeout: float) -> tuple[list[Any], list[str]]:
        """What the simulated probers saw: nothing failed, except on a swapped node whose
        validation is made to fail with check ``traffic-watch``: its prober's requests all
        failed in the second ``after`` (so the failure lies inside the window that asked)."""
        with self._tx("traffic-reports") as world:
            if not world.get("trafficWatch"):
                return [], []
            reports = []
            for name, n in sorted(world["nodes"].items()):
                if not n["ready"]:
                    continue
                flagged = world["failValidation"].get(name, [])
                broken = w.node_cni(world, name) == "cilium" and any(
                    e.partition(":")[0] in (traffic.CHECK, "*") for e in flagged
                )
                buckets = ((after, 12, 0),) if broken else ()
                reports.append(traffic.Report(name, after, 600, 12 if broken else 0, buckets, f"prober-{name}"))
            return reports, []

    def stop_traffic_watch(self) -> bool:
        with self._tx("traffic-watch", write=True) as world:
            existed = bool(world.pop("trafficWatch", False))
            if existed:
                self._log(world, "delete", f"DaemonSet/{traffic.NAMESPACE}/{traffic.NAME}", existed)
            return existed

    def ensure_object(self, obj: dict[str, Any]) -> bool:
        key = f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        with self._tx("apply-object", write=True) as world:
            objects = world.setdefault("objects", {})
            changed = objects.get(key) != obj
            objects[key] = obj
            self._log(world, "apply", key, changed)
            return changed

    def install_cilium(self, values: dict[str, Any]) -> str:
        """What ``helm upgrade --install cilium`` with ``values`` leaves behind, as the simulated
        cluster models Cilium (its cilium-config); idempotent like the Helm command."""
        migration = values.get("policyEnforcementMode") == "never" and (values.get("cni") or {}).get("customConf")
        pools = ((values.get("ipam") or {}).get("operator") or {}).get("clusterPoolIPv4PodCIDRList") or []
        with self._tx("install-cilium", write=True) as world:
            before = dict(world["cilium"])
            world["cilium"].update(
                installed=True,
                migrationMode=bool(migration),
                poolCIDR=pools[0] if pools else world["cilium"]["poolCIDR"],
                tunnelPort=int(values.get("tunnelPort") or 0),
                configOverrides={},
            )
            self._log(world, "helm-install", "cilium", world["cilium"] != before)
        mode = "in migration mode" if migration else "with the final values"
        return f"Cilium runs {mode} (simulated helm upgrade)"

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        with self._tx(write=True) as world:
            world["events"].append(
                {"node": node, "reason": reason, "message": message, "type": "Warning" if warning else "Normal"}
            )

    # -- validation probes ------------------------------------------------------------------
    # The simulation observes what a real cluster's probes would (``migrate.verdicts`` judges):
    # a node on Cilium passes every check; an injected failure is a broken observation.
    def policy_probe(self, timeout: float) -> ProbeResult:
        """The simulated dataplane enforces policy when cilium-config says so, unless the world
        injects a policy failure (failValidation "*": ["policy"])."""
        with self._tx("policy-probe", write=True) as world:
            enforced = verdicts.policy_enforced(w.cilium_config(world)) and "policy" not in world["failValidation"].get(
                "*", []
            )
            self._log(world, "policy-probe", "cni-migrate", False)
        node = next(n for n in sorted(world["nodes"]) if world["nodes"][n]["ready"])
        allowed = verdicts.Connection("allowed", True)
        denied = verdicts.Connection("denied", not enforced, "" if not enforced else "i/o timeout")
        return verdicts.policy_enforcement(node, allowed, denied, allowed)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        results = []
        for check in checks:
            results.append(self.probe(node, check, timeout))
            if not results[-1].ok:
                break
        return results

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        if check not in verdicts.CHECKS:
            raise BadInput(f"unknown validation check {check!r}")
        with self._tx("probe", write=True) as world:
            n = self._node_dict(world, node)
            broken = False
            injected = world["failValidation"].get(node, [])
            for i, entry in enumerate(injected):
                name, _, times = entry.partition(":")
                if name not in (check, "*"):
                    continue
                if not times:
                    broken = True
                elif int(times) > 0:
                    injected[i] = f"{name}:{int(times) - 1}"
                    broken = True
                break
            result = _observe(world, node, n, check, broken)
        return replace(result, evidence={**result.evidence, "injected": True}) if broken else result

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _node_dict(world: w.World, name: str) -> dict[str, Any]:
        try:
            return world["nodes"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise NotFound(f"node {name} not found", node=name) from None


def _observe(world: w.World, node: str, n: dict[str, Any], check: str, broken: bool) -> ProbeResult:
    """What the check's probe sees on the simulated node: a node on Cilium is healthy, one
    still on Calico is not; ``broken`` (an injected failure) breaks what the check looks at."""
    on_cilium = w.node_cni(world, node) == "cilium" and not broken
    pool = world["cilium"]["poolCIDR"]
    if check == "cilium-agent-ready":
        agents = [
            p
            for p in world["pods"].values()
            if p["node"] == node and p["owner"] == {"kind": "DaemonSet", "name": w.AGENT_DS[1]}
        ]
        agent = agents[0] if agents else None
        return verdicts.agent_ready(agent["name"] if agent else None, bool(agent and agent["ready"]) and not broken)
    if check == "cilium-node":
        # Cilium's operator hands every node a CIDR from its pool; a broken one kept Calico's.
        cidr = w.node_pod_cidr(world, node, "calico" if broken else "cilium")
        return verdicts.cilium_node(node, [str(cidr)], pool)
    if check == "pod-network":
        return verdicts.pod_network(w.probe_ip(world, node, "calico" if broken else None), pool)
    if check == "dns":
        return verdicts.dns(on_cilium, "" if on_cilium else "connection timed out; no servers could be reached")
    if check == "connectivity":
        api = ipaddress.ip_network(world["serviceCIDRs"][0]).network_address + 1
        return verdicts.connectivity(on_cilium, "" if on_cilium else f"dial tcp {api}:443: i/o timeout")
    # cross-node, as on a real cluster: Ready nodes in service, not the wave's other
    # (cordoned, maybe mid-swap) nodes; a Calico and a Cilium peer, both ways, and a Service.
    others = sorted(
        name for name, other in world["nodes"].items() if name != node and other["ready"] and not other["unschedulable"]
    )
    connections = []
    for cni in ("calico", "cilium"):
        peer = next((o for o in others if w.node_cni(world, o) == cni), None)
        if peer is not None:
            failure = "" if on_cilium else "dial tcp: i/o timeout"
            connections.append(verdicts.Connection(f"{node}->{peer} ({cni})", on_cilium, failure))
            connections.append(verdicts.Connection(f"{peer} ({cni})->{node}", on_cilium, failure))
    if connections:
        service = ipaddress.ip_network(world["serviceCIDRs"][0]).network_address + 100
        connections.append(
            verdicts.Connection(f"{node}->Service {service}", on_cilium, "" if on_cilium else "i/o timeout")
        )
    return verdicts.cross_node(connections)


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
    )
