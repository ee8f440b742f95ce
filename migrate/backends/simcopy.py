"""A simulated world copied from a real cluster's inventory, to rehearse a migration offline
on production's shape: ``cni-migrate sim create NAME --from DUMP`` (docs/rehearsal.md).

What a dump cannot tell is said here, not guessed silently:

- a node's CNI configuration files are not in any API object: a node counts as on Calico
  (when Calico is installed), and a node running a Cilium agent that carries the
  migration label as on Cilium, as the agent in migration mode would have made it;
- pods owned by a kind the simulation does not run (a Job, an operator's custom
  controller) are copied but not re-created once evicted (``Copy.unmanaged`` counts them);
- a DaemonSet's node selector and tolerations are not copied: once its pods are restarted
  the simulation runs it on every node.

Pure: no I/O; the world is checked with ``simstore.problem`` before it is returned.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from migrate.backends import simstore
from migrate.backends import simworld as w
from migrate.cniconf import CALICO_CONF
from migrate.errors import BadInput
from migrate.model import CONTROL_PLANE_LABEL, SURGE_ANNOTATION, Inventory, PodInfo, WorkloadInfo
from migrate.surge import GITOPS_MARKS

POD_TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class Copy:
    world: w.World
    unmanaged: dict[str, int]  # owner kind -> pods nobody re-creates in the simulation


def world_from(
    name: str,
    inventory: Inventory,
    workloads: Iterable[WorkloadInfo],
    policies: Iterable[dict[str, Any]],
    *,
    cilium_config: Mapping[str, str] | None = None,
    seed: int = 0,
) -> Copy:
    """The world ``inventory`` describes, with ``workloads`` re-creating their pods and
    ``policies`` (as the API returns them, ``kind`` NetworkPolicy, CalicoNetworkPolicy or
    GlobalNetworkPolicy) kept for the policy report; ``cilium_config`` (kube-system/
    cilium-config) is what the simulated Cilium reports as its configuration."""
    uid = inventory.identity.kube_system_uid or f"{random.Random(seed).getrandbits(128):032x}"
    world = w.blank_world(name, uid, seed=seed)
    world |= {
        "calico": _calico(inventory),
        "cilium": {**_cilium(inventory), "configOverrides": dict(cilium_config or {})},
        "serviceCIDRs": list(inventory.service_cidrs) or [w.SERVICE_CIDR],
        "policies": [_policy(p) for p in policies],
        "kubeProxyClusterCIDR": inventory.kube_proxy_cluster_cidr,
        "webhooks": [
            {
                "configuration": h.configuration,
                "name": h.name,
                "failurePolicy": h.failure_policy,
                "namespace": h.namespace,
                "selector": dict(h.selector),
            }
            for h in inventory.webhooks
        ],
        "copiedFrom": inventory.identity.server,
    }
    calico = inventory.calico_install != "none"
    # The control plane first, as a real cluster's inventory lists it for a reader.
    ordered = sorted(inventory.nodes, key=lambda n: (CONTROL_PLANE_LABEL not in n.labels, n.name))
    for index, node in enumerate(ordered):
        world["nodes"][node.name] = {
            "uid": node.uid,
            "index": index,
            "labels": dict(node.labels),
            "taints": [{"key": t.key, "effect": t.effect, "value": t.value} for t in node.taints],
            "unschedulable": node.unschedulable,
            "ready": node.ready,
            "kernel": node.kernel_version,
            "osImage": node.os_image,
            "os": node.operating_system,
            "cpu": node.cpu_millis,
            "memory": node.memory_bytes,
            "maxPods": node.max_pods,
            "cniFiles": [CALICO_CONF] if calico else [],
            "boots": 1,
            "ipCounter": 0,
            "address": node.addresses[0] if node.addresses else "",
            "autoscalerProtected": node.autoscaler_protected,
        }
    objects = list(workloads)
    deployments = {(d.namespace, d.name): d for d in inventory.deployments}
    deployment_of = {
        (o.namespace, o.name): o.owner.name
        for o in objects
        if o.kind == "ReplicaSet" and o.owner is not None and o.owner.kind == "Deployment"
    }
    for o in objects:
        if (o.namespace, o.name) in deployment_of and o.kind == "ReplicaSet":
            continue  # its Deployment is the workload
        world["workloads"].append(
            {
                "kind": o.kind,
                "namespace": o.namespace,
                "name": o.name,
                "replicas": o.replicas,
                "cpu": o.cpu_millis,
                "memory": o.memory_bytes,
                "emptydir": o.emptydir,
                "hostNetwork": o.host_network,
                "labels": dict(o.template_labels),
            }
        )
    # What a surge needs to know of a Deployment (migrate.surge): a GitOps mark, an
    # unfinished rollout, a surge record; and the autoscalers that own replicas.
    for wl in world["workloads"]:
        d = deployments.get((wl["namespace"], wl["name"])) if wl["kind"] == "Deployment" else None
        if d is not None:
            mark = next((key for key, manager in GITOPS_MARKS if manager == d.gitops), "") if d.gitops else ""
            annotations = {mark: "copied"} if mark else {}
            if d.surge is not None:
                annotations[SURGE_ANNOTATION] = d.surge.to_json()
            elif d.unreadable_surge is not None:
                annotations[SURGE_ANNOTATION] = d.unreadable_surge  # refused by a rehearsal as by the cluster
            wl["annotations"] = annotations
            wl["rolling"] = not d.settled
    world["autoscalers"] = [
        {
            "namespace": a.namespace,
            "name": a.name,
            "targetKind": a.target_kind,
            "targetName": a.target_name,
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
        }
        for a in inventory.autoscalers
    ]
    kinds = {(wl["namespace"], wl["kind"], wl["name"]) for wl in world["workloads"]}
    unmanaged: Counter[str] = Counter()
    for pod in inventory.pods:
        owner = _owner(pod, deployment_of)
        if owner is not None and (pod.namespace, owner["kind"], owner["name"]) not in kinds:
            unmanaged[owner["kind"]] += 1
        world["pods"][pod.uid] = {
            "namespace": pod.namespace,
            "name": pod.name,
            "uid": pod.uid,
            "node": pod.node if pod.node in world["nodes"] else None,
            "labels": dict(pod.labels),
            "owner": owner,
            "phase": pod.phase,
            "ready": pod.ready,
            "cpu": pod.cpu_millis,
            "memory": pod.memory_bytes,
            "emptydir": pod.emptydir,
            "hostNetwork": pod.host_network,
            "ip": pod.ip,
            "grace": pod.grace_seconds,
            "startup": pod.startup_seconds,
            **({"deletionCost": pod.deletion_cost} if pod.deletion_cost else {}),
        }
    for pdb in inventory.pdbs:
        budget: dict[str, Any] = {
            "namespace": pdb.namespace,
            "name": pdb.name,
            "selector": dict(pdb.selector.match_labels),
        }
        if pdb.selector.match_expressions:
            budget["matchExpressions"] = [[k, op, list(values)] for k, op, values in pdb.selector.match_expressions]
        if pdb.min_available is not None:
            budget["minAvailable"] = pdb.min_available
        else:
            budget["maxUnavailable"] = pdb.max_unavailable or "0"
        world["pdbs"].append(budget)
    agents = {
        p.node or ""
        for p in inventory.pods
        if (p.namespace, p.owner.kind if p.owner else "", p.labels.get("k8s-app"))
        == ("kube-system", "DaemonSet", "cilium")
        and p.node in world["nodes"]
        and p.phase == "Running"
    }
    for host in sorted(agents):
        w.agent_started(world, host)
    trouble = simstore.problem(world)
    if trouble:  # a field the dump left out that the inventory still needs
        raise BadInput(f"the copied world is unusable: {trouble}")
    return Copy(world, dict(sorted(unmanaged.items())))


def _calico(inv: Inventory) -> dict[str, Any]:
    return {
        "install": inv.calico_install,
        "dataplane": inv.calico_dataplane,
        "pools": [
            {"name": p.name, "cidr": p.cidr, "vxlanMode": p.vxlan_mode, "ipipMode": p.ipip_mode}
            for p in inv.calico_pools
        ],
        "bgp": inv.calico_bgp,
        "autodetection": inv.calico_autodetection,
        "vxlanPort": inv.calico_vxlan_port,
    }


def _cilium(inv: Inventory) -> dict[str, Any]:
    c = inv.cilium
    return {
        "installed": c.installed,
        "migrationMode": c.migration_mode,
        "nodeConfigApi": c.node_config_api,
        "poolCIDR": c.cluster_pool_cidr or w.CILIUM_POOL,
        "tunnelPort": c.tunnel_port,
    }


def _owner(pod: PodInfo, deployment_of: dict[tuple[str, str], str]) -> dict[str, str] | None:
    if pod.owner is None:
        return None
    if pod.owner.kind == "ReplicaSet":
        deployment = deployment_of.get((pod.namespace, pod.owner.name))
        if deployment is None and pod.labels.get(POD_TEMPLATE_HASH):
            # The ReplicaSet itself was not dumped: Deployments name theirs NAME-HASH.
            suffix = "-" + pod.labels[POD_TEMPLATE_HASH]
            if pod.owner.name.endswith(suffix):
                deployment = pod.owner.name.removesuffix(suffix)
        if deployment is not None:
            return {"kind": "Deployment", "name": deployment}
    return {"kind": pod.owner.kind, "name": pod.owner.name}


def _policy(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "kind": obj["kind"],
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "spec": obj.get("spec") or {},
    }
