"""kwok nodes: what one looks like (``NodeSpec`` -> a Node manifest with realistic
``status.nodeInfo``), the default set, and creating, deleting and waiting for them
through the lab's REST client."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .addresses import NODE_IP_BASE
from .rest import Api, wait

KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# A node a test stopped: kwok's node stages leave it alone (manifests/kwok-stages.yaml).
DOWN_ANNOTATION = "lab.cni-migrate.io/down"


@dataclasses.dataclass
class NodeSpec:
    """A kwok node. Every field can be overridden per node."""

    name: str
    control_plane: bool = False
    kernel_version: str = "6.1.0-28-amd64"
    os_image: str = "Debian GNU/Linux 12 (bookworm)"
    operating_system: str = "linux"
    architecture: str = "amd64"
    kubelet_version: str | None = None  # None: the lab's Kubernetes version
    container_runtime_version: str = "containerd://1.7.24"
    cpu: str = "4"
    memory: str = "16Gi"
    pods: str = "110"
    internal_ip: str | None = None  # None: allocated by the lab
    pod_cidr: str | None = None  # None: allocated by the lab (192.168.<i>.0/24, see manifest)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: list[dict[str, str]] | None = None  # None: control-plane taint on CP nodes
    unschedulable: bool = False

    def manifest(self, *, index: int, default_kubelet_version: str) -> dict[str, Any]:
        ip = self.internal_ip or str(NODE_IP_BASE + index)
        # 192.168.<i>.0/24 inside the Calico pool for the first 256 nodes; larger labs (the
        # 1,000-node benchmarks) continue in 10.64.0.0/10, as inventory_real.py's nodes do.
        pod_cidr = self.pod_cidr or (
            f"192.168.{index}.0/24" if index < 256 else f"10.{64 + index // 256}.{index % 256}.0/24"
        )
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": self.operating_system,
            "kubernetes.io/arch": self.architecture,
            "beta.kubernetes.io/os": self.operating_system,
            "beta.kubernetes.io/arch": self.architecture,
            "type": "kwok",
        }
        if self.control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        labels.update(self.labels)
        net = ipaddress.ip_network(pod_cidr)
        annotations = {
            KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            # what calico-node writes on a VXLAN install
            "projectcalico.org/IPv4Address": f"{ip}/24",
            "projectcalico.org/IPv4VXLANTunnelAddr": str(net.network_address),
        }
        annotations.update(self.annotations)
        taints = self.taints
        if taints is None:
            taints = (
                [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}] if self.control_plane else []
            )
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        spec: dict[str, Any] = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
        if taints:
            spec["taints"] = taints
        if self.unschedulable:
            spec["unschedulable"] = True
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels, "annotations": annotations},
            "spec": spec,
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": self.name},
                ],
                "nodeInfo": {
                    "architecture": self.architecture,
                    "operatingSystem": self.operating_system,
                    "kernelVersion": self.kernel_version,
                    "osImage": self.os_image,
                    "kubeletVersion": self.kubelet_version or default_kubelet_version,
                    "containerRuntimeVersion": self.container_runtime_version,
                    "kubeProxyVersion": "",
                    "machineID": f"{index:032x}",
                    "systemUUID": f"{index:08x}-0000-0000-0000-000000000000",
                    "bootID": f"{index:08x}-b007-0000-0000-000000000000",
                },
            },
        }


def default_node_specs(count: int, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[NodeSpec]:
    """1 control-plane node (``control-plane-1``) + ``count-1`` workers
    (``worker-1`` ...). ``overrides`` maps node name -> NodeSpec fields,
    e.g. ``{"worker-2": {"kernel_version": "4.19.0"}}``."""
    if count < 1:
        raise ValueError("need at least one node")
    specs = [NodeSpec(name="control-plane-1", control_plane=True)]
    specs += [NodeSpec(name=f"worker-{i}") for i in range(1, count)]
    overrides = dict(overrides or {})
    for spec in specs:
        for field, value in overrides.pop(spec.name, {}).items():
            if not hasattr(spec, field):
                raise ValueError(f"unknown NodeSpec field {field!r} (node {spec.name})")
            setattr(spec, field, value)
    if overrides:
        raise ValueError(f"overrides for unknown nodes: {sorted(overrides)}")
    return specs


def node_ready(node: Mapping[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    if conds.get("Ready") != "True":
        return False
    blocking = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    return not any(t.get("key") in blocking for t in node.get("spec", {}).get("taints", []) or [])


def stop_node(api: Api, name: str) -> None:
    """The machine behind a node stops: its kubelet no longer reports, so its Ready condition
    goes Unknown, as the node lifecycle controller would set it (at once here, not after the
    grace period). Annotated first, so that kwok's node stages never make it Ready again."""
    merge = "application/merge-patch+json"
    api.call(
        "PATCH", f"/api/v1/nodes/{name}", {"metadata": {"annotations": {DOWN_ANNOTATION: "true"}}}, content_type=merge
    )
    ready = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status (lab: stopped by a test).",
    }
    api.call(
        "PATCH",
        f"/api/v1/nodes/{name}/status",
        {"status": {"conditions": [ready]}},
        content_type="application/strategic-merge-patch+json",
    )


def start_node(api: Api, name: str) -> None:
    """The machine is back: without the annotation, kwok's node-ready stage makes it Ready."""
    api.call(
        "PATCH",
        f"/api/v1/nodes/{name}",
        {"metadata": {"annotations": {DOWN_ANNOTATION: None}}},
        content_type="application/merge-patch+json",
    )


def create_node(api: Api, obj: Mapping[str, Any]) -> None:
    """POST a node's manifest (from ``NodeSpec.manifest``)."""
    api.call("POST", "/api/v1/nodes", obj)
    # A Node keeps the status given at create, but make sure the
    # nodeInfo/capacity the test asked for is what is stored.
    api.call(
        "PATCH",
        f"/api/v1/nodes/{obj['metadata']['name']}/status",
        {"status": {k: obj["status"][k] for k in ("nodeInfo", "capacity", "allocatable")}},
        content_type="application/strategic-merge-patch+json",
    )


def delete_nodes(api: Api, names: Iterable[str], *, timeout: float = 30) -> None:
    """Delete nodes and force-delete the pods bound to them (what the
    pod GC controller would do after its 40s orphan quarantine)."""
    for name in names:
        api.request("DELETE", f"/api/v1/nodes/{name}")
        pods = api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")["items"]
        for p in pods:
            m = p["metadata"]
            api.request(
                "DELETE",
                f"/api/v1/namespaces/{m['namespace']}/pods/{m['name']}",
                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
            )

        def gone(name: str = name) -> bool:
            return (
                api.request("GET", f"/api/v1/nodes/{name}")[0] == 404
                and not api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")["items"]
            )

        wait(f"node {name} and its pods deleted", gone, timeout)


def wait_nodes_ready(
    api: Api, names: Iterable[str] | None, *, timeout: float, alive: Callable[[], None] | None = None
) -> None:
    """Until the named nodes (None: every node) are Ready and carry no not-ready taint."""
    want = set(names) if names is not None else None

    def check() -> bool:
        items = api.get("/api/v1/nodes")["items"]
        ready = {n["metadata"]["name"] for n in items if node_ready(n)}
        target = want if want is not None else {n["metadata"]["name"] for n in items}
        return target <= ready

    wait(
        f"nodes Ready ({', '.join(sorted(want)) if want else 'all'})",
        check,
        timeout,
        alive=alive,
    )
