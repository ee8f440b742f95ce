"""A cluster dumped with kubectl, read as the live inventory is, and copied into a simulated
world that plans the same migration (issue 26, rehearsal on a copy of the real cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrate.backends import simbudgets, simstore
from migrate.backends.kubernetes.dump import read_dump
from migrate.backends.simcopy import world_from
from migrate.backends.simulated import SimStore
from migrate.cniconf import cni_from_files
from migrate.errors import BadInput
from migrate.model import CONTROL_PLANE_LABEL, MIGRATION_LABEL, Cni
from migrate.plan import PlanOptions, Target
from migrate.planner import build_plan


def meta(name: str, namespace: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "uid": f"uid-{namespace}-{name}", **({"namespace": namespace} if namespace else {}), **extra}


def node(name: str, *, control: bool = False, migrated: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if control:
        labels[CONTROL_PLANE_LABEL] = ""
    if migrated:
        labels[MIGRATION_LABEL] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta(name, labels=labels, resourceVersion="7"),
        "spec": {"taints": [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]} if control else {},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {
                "kernelVersion": "6.1.0-18-amd64",
                "osImage": "Debian GNU/Linux 12",
                "operatingSystem": "linux",
            },
            "addresses": [{"type": "InternalIP", "address": f"172.18.0.{len(name)}"}],
        },
    }


def pod(
    name: str, namespace: str, on: str, owner: tuple[str, str] | None, labels: dict[str, str], **spec: Any
) -> dict[str, Any]:
    refs = [{"kind": owner[0], "name": owner[1], "controller": True}] if owner else []
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, namespace, labels=labels, ownerReferences=refs),
        "spec": {
            "nodeName": on,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            **spec,
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "podIP": "192.168.1.5"},
    }


def workload(
    kind: str, name: str, namespace: str, labels: dict[str, str], replicas: int | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    obj = {"apiVersion": "apps/v1", "kind": kind, "metadata": meta(name, namespace, **extra), "spec": spec}
    if kind == "Deployment":  # as kubectl dumps one its controller has rolled out
        count = 1 if replicas is None else replicas
        obj["metadata"]["generation"] = 1
        obj["status"] = {"observedGeneration": 1, "replicas": count, "updatedReplicas": count, "readyReplicas": count}
    return obj


def pdb(
    name: str, namespace: str, labels: dict[str, str], status: tuple[int, int, int], **budget: Any
) -> dict[str, Any]:
    healthy, desired, expected = status
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, namespace),
        "spec": {"selector": {"matchLabels": labels}, **budget},
        "status": {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": max(healthy - desired, 0),
        },
    }


def cluster_dump() -> list[dict[str, Any]]:
    """A small production-shaped cluster: Calico by the operator, Cilium in migration mode
    beside it (one node already swapped), CoreDNS, a StatefulSet, a Job, a bare pod."""
    dns = {"k8s-app": "kube-dns"}
    db = {"app": "db"}
    items: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("kube-system")},
        node("cp-1", control=True),
        node("worker-1"),
        node("worker-2"),
        node("worker-3", migrated=True),
        workload("Deployment", "coredns", "kube-system", dns, replicas=2),
        workload(
            "ReplicaSet",
            "coredns-5d78c9869d",
            "kube-system",
            dns,
            replicas=2,
            ownerReferences=[{"kind": "Deployment", "name": "coredns", "controller": True}],
        ),
        workload("StatefulSet", "db", "shop", db, replicas=2),
        {
            **workload("DaemonSet", "cilium", "kube-system", {"k8s-app": "cilium"}),
            "status": {"desiredNumberScheduled": 4},
        },
        workload("DaemonSet", "calico-node", "calico-system", {"k8s-app": "calico-node"}),
        pod(
            "coredns-5d78c9869d-a",
            "kube-system",
            "worker-1",
            ("ReplicaSet", "coredns-5d78c9869d"),
            {**dns, "pod-template-hash": "5d78c9869d"},
        ),
        pod(
            "coredns-5d78c9869d-b",
            "kube-system",
            "worker-2",
            ("ReplicaSet", "coredns-5d78c9869d"),
            {**dns, "pod-template-hash": "5d78c9869d"},
        ),
        pod("db-0", "shop", "worker-1", ("StatefulSet", "db"), db),
        pod("db-1", "shop", "worker-2", ("StatefulSet", "db"), db, volumes=[{"name": "scratch", "emptyDir": {}}]),
        pod("report-28391", "shop", "worker-2", ("Job", "report"), {"job": "report"}),
        pod("debug", "default", "worker-1", None, {"run": "debug"}),
        pdb("coredns", "kube-system", dns, (2, 1, 2), maxUnavailable=1),
        pdb("db", "shop", db, (2, 2, 2), minAvailable="100%"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("cilium-config", "kube-system"),
            "data": {
                "cni-exclusive": "false",
                "custom-cni-conf": "true",
                "enable-host-legacy-routing": "true",
                "enable-policy": "never",
                "ipam": "cluster-pool",
                "cluster-pool-ipv4-cidr": "10.245.0.0/16",
                "tunnel-port": "8473",
            },
        },
        {
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPPool",
            "metadata": meta("default-ipv4-ippool"),
            "spec": {"cidr": "192.168.0.0/16", "vxlanMode": "Always", "ipipMode": "Never"},
        },
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "Installation",
            "metadata": meta("default"),
            "spec": {
                "calicoNetwork": {"bgp": "Disabled", "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"}}
            },
        },
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": meta("ciliumnodeconfigs.cilium.io"),
            "spec": {"versions": [{"name": "v2alpha1", "served": True}, {"name": "v2", "served": True}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("allow-api", "shop"),
            "spec": {"podSelector": {"matchLabels": db}},
        },
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("kubernetes", "default")},
        # An admission webhook answered by one pod, on worker-2.
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": meta("policy-guard"),
            "webhooks": [
                {
                    "name": "pods.guard.example",
                    "clientConfig": {"service": {"namespace": "kube-system", "name": "guard"}},
                }
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta("guard", "kube-system"),
            "spec": {"selector": {"app": "guard"}},
        },
        pod("guard-0", "kube-system", "worker-2", None, {"app": "guard"}),
        # kube-proxy as kubeadm installs it, with Calico's pool as its clusterCIDR.
        workload("DaemonSet", "kube-proxy", "kube-system", {"k8s-app": "kube-proxy"}),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta("kube-proxy", "kube-system"),
            "data": {"config.conf": "kind: KubeProxyConfiguration\nclusterCIDR: 192.168.0.0/16\n"},
        },
        # A cluster autoscaler, and one node annotated against it.
        workload("Deployment", "cluster-autoscaler", "kube-system", {"app": "cluster-autoscaler"}, replicas=1),
        pod(
            "cluster-autoscaler-x",
            "kube-system",
            "cp-1",
            ("ReplicaSet", "cluster-autoscaler-7d"),
            {"app": "cluster-autoscaler", "pod-template-hash": "7d"},
        ),
    ]
    items[2]["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}
    for host in ("cp-1", "worker-1", "worker-2", "worker-3"):
        items.append(
            pod(f"cilium-{host}", "kube-system", host, ("DaemonSet", "cilium"), {"k8s-app": "cilium"}, hostNetwork=True)
        )
        items.append(
            pod(
                f"calico-node-{host}",
                "calico-system",
                host,
                ("DaemonSet", "calico-node"),
                {"k8s-app": "calico-node"},
                hostNetwork=True,
            )
        )
    return items


def write(tmp_path: Path, items: list[dict[str, Any]], name: str = "dump.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def test_a_dump_is_read_as_the_live_inventory_would_be(tmp_path):
    dump = read_dump([write(tmp_path, cluster_dump())])
    inv = dump.inventory
    assert [n.name for n in inv.nodes] == ["cp-1", "worker-1", "worker-2", "worker-3"]
    assert inv.identity.kube_system_uid == "uid--kube-system"
    assert inv.calico_install == "operator" and inv.calico_bgp is False
    assert inv.calico_autodetection == "kubernetes-internal-ip"
    assert [(p.name, p.cidr, p.vxlan_mode) for p in inv.calico_pools] == [
        ("default-ipv4-ippool", "192.168.0.0/16", "Always")
    ]
    assert inv.cilium.installed and inv.cilium.migration_mode and inv.cilium.node_config_api == "cilium.io/v2"
    assert inv.cilium.cluster_pool_cidr == "10.245.0.0/16" and inv.cilium.tunnel_port == 8473
    assert {(p.key, p.disruptions_allowed) for p in inv.pdbs} == {("kube-system/coredns", 1), ("shop/db", 0)}
    assert [(p.kind, p.name) for p in inv.policies] == [("NetworkPolicy", "allow-api")]
    assert dump.skipped == {"Endpoints": 1}
    (hook,) = inv.webhooks
    assert (hook.shown, hook.failure_policy, dict(hook.selector)) == (
        "ValidatingWebhookConfiguration/policy-guard (pods.guard.example)",
        "Fail",
        {"app": "guard"},
    )
    coredns = next(w for w in dump.workloads if w.kind == "Deployment")
    assert (coredns.replicas, coredns.cpu_millis, coredns.memory_bytes) == (2, 100, 64 * 2**20)


def test_json_and_several_files_read_as_one_dump(tmp_path):
    items = cluster_dump()
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items[:10]}))
    second = tmp_path / "b.yaml"
    second.write_text(yaml.safe_dump_all(items[10:]))  # documents, not a List
    together = read_dump([first, second])
    alone = read_dump([write(tmp_path, items)])
    assert together.inventory.pods == alone.inventory.pods and together.inventory.nodes == alone.inventory.nodes


def test_the_copy_is_a_world_that_keeps_the_clusters_shape(tmp_path):
    dump = read_dump([write(tmp_path, cluster_dump())])
    copy = world_from("prod", dump.inventory, dump.workloads, dump.policies)
    world = copy.world
    assert simstore.problem(world) is None
    assert world["uid"] == "uid--kube-system" and world["copiedFrom"] == "dump://dump.yaml"
    # The control plane first; the ReplicaSet's Deployment is the workload its pods belong to.
    assert list(world["nodes"]) == ["cp-1", "worker-1", "worker-2", "worker-3"]
    assert sorted((w["kind"], w["name"], w["replicas"]) for w in world["workloads"]) == [
        ("DaemonSet", "calico-node", 0),
        ("DaemonSet", "cilium", 0),
        ("DaemonSet", "kube-proxy", 0),
        ("Deployment", "cluster-autoscaler", 1),
        ("Deployment", "coredns", 2),
        ("StatefulSet", "db", 2),
    ]
    owners = {p["name"]: p["owner"] for p in world["pods"].values()}
    assert owners["coredns-5d78c9869d-a"] == {"kind": "Deployment", "name": "coredns"}
    assert owners["debug"] is None
    assert copy.unmanaged == {"Job": 1}
    # Only the node that carries the migration label and runs an agent is on Cilium.
    cnis = {name: cni_from_files(n["cniFiles"]) for name, n in world["nodes"].items()}
    assert cnis == {"cp-1": Cni.CALICO, "worker-1": Cni.CALICO, "worker-2": Cni.CALICO, "worker-3": Cni.CILIUM}
    # The simulation's disruption controller agrees with the real one on every budget.
    assert {
        f"{p['namespace']}/{p['name']}": simbudgets.pdb_status(world, p)["disruptionsAllowed"] for p in world["pdbs"]
    } == {p.key: p.disruptions_allowed for p in dump.inventory.pdbs}


def test_the_copy_plans_the_migration_the_dump_plans(tmp_path):
    dump = read_dump([write(tmp_path, cluster_dump())])
    copy = world_from("prod", dump.inventory, dump.workloads, dump.policies, cilium_config=dump.cilium_config)
    sim = SimStore(tmp_path / "home").create("prod", copy.world)
    options = PlanOptions(max_unavailable=2)
    live = build_plan(dump.inventory, options, Target("kubernetes", "prod", "dump://dump.yaml"))
    rehearsal = build_plan(sim.inventory(), options, Target("sim", "prod", "sim://prod"))

    def shape(plan: Any) -> Any:
        return (
            [[(n.name, n.surge) for n in wave.nodes] for wave in plan.waves],
            sorted((f.check, f.severity, f.message, f.subjects) for f in plan.findings),
            plan.excluded,
        )

    assert shape(rehearsal) == shape(live)
    # What makes the comparison worth having: the dump's blocking budget and its migrated node,
    # kube-proxy's clusterCIDR and the autoscaler (worker-1 is annotated against it).
    checks = {f.check: f for f in live.findings}
    assert checks["kube-proxy-cluster-cidr"].subjects == ("10.245.0.0/16",)
    assert checks["autoscaler"].subjects == ("cp-1", "worker-2")
    assert checks["admission-webhooks"].subjects == (
        "ValidatingWebhookConfiguration/policy-guard (pods.guard.example)",
    )
    assert any(f.severity == "blocking" and "shop/db" in f.message for f in live.findings), live.findings
    assert [name for name, _ in live.excluded] == ["worker-3"]
    # The single-replica autoscaler surges on its node, in the dump's plan and the copy's.
    assert [n.surge for n in live.nodes if n.surge] == [("kube-system/cluster-autoscaler",)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not YAML or JSON"),
        ("a: [1\n", r"is not YAML or JSON \(line"),
        ("- 1\n- 2\n", "document 1 is not a Kubernetes object"),
        ("kind: Pod\napiVersion: v1\nmetadata: {}\n", "has no kind, apiVersion or name"),
        ("kind: List\napiVersion: v1\nitems: []\n", "no Node objects"),
    ],
)
def test_a_bad_dump_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as info:
        read_dump([path])
    assert "\n" not in str(info.value)


def test_a_dump_without_pods_or_with_an_unreadable_file_is_refused(tmp_path):
    nodes_only = [i for i in cluster_dump() if i["kind"] == "Node"]
    with pytest.raises(BadInput, match="no Pod objects: dump them with kubectl get pods -A -o yaml"):
        read_dump([write(tmp_path, nodes_only)])
    with pytest.raises(BadInput, match="cannot read"):
        read_dump([tmp_path / "missing.yaml"])


def test_a_budget_selecting_with_match_expressions_is_copied_with_its_meaning(tmp_path):
    items = cluster_dump()
    items.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta("db-expr", "shop"),
            "spec": {
                "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "cache"]}]},
                "minAvailable": "100%",
            },
            "status": {"currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2, "disruptionsAllowed": 0},
        }
    )
    dump = read_dump([write(tmp_path, items)])
    copy = world_from("prod", dump.inventory, dump.workloads, dump.policies, cilium_config=dump.cilium_config)
    (budget,) = [p for p in copy.world["pdbs"] if p["name"] == "db-expr"]
    assert budget["matchExpressions"] == [["app", "In", ["db", "cache"]]]
    # It selects the StatefulSet's two pods, as the real controller counted them.
    assert simbudgets.pdb_status(copy.world, budget) == {
        "currentHealthy": 2,
        "desiredHealthy": 2,
        "expectedPods": 2,
        "disruptionsAllowed": 0,
    }
    sim = SimStore(tmp_path / "home").create("prod", copy.world)
    (copied,) = [p for p in sim.inventory().pdbs if p.name == "db-expr"]
    assert copied.selector == next(p for p in dump.inventory.pdbs if p.name == "db-expr").selector
