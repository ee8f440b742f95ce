"""Support for tests on the real control plane: the lab module, the same scenario as the
simulated default world expressed as Kubernetes objects, and waits with deadlines."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from migrate.backends import simworld

REPO = Path(__file__).resolve().parent.parent
LAB_PACKAGE = REPO / "tools" / "kube" / "kubelab"

CILIUM_CONFIG = {
    # What Cilium's Helm chart renders for the migration values cni-migrate prescribes.
    "custom-cni-conf": "true",
    "cni-exclusive": "false",
    "enable-policy": "never",
    "ipam": "cluster-pool",
    "cluster-pool-ipv4-cidr": "10.245.0.0/16",
    "tunnel-port": "8473",
    "enable-host-legacy-routing": "true",
}


def lab_module() -> ModuleType:
    """The lab's package (tools/kube/kubelab: ``KubeLab``, ``NodeSpec``, ...), imported
    once by path: tools/kube is not put on sys.path."""
    name = "kubelab"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, LAB_PACKAGE / "__init__.py", submodule_search_locations=[str(LAB_PACKAGE)]
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def bin_dir() -> Path:
    if not os.environ.get("CNI_MIGRATE_KUBE_BIN") and shutil.which("go") is None:
        pytest.skip("real control plane: no Go toolchain and CNI_MIGRATE_KUBE_BIN not set")
    return Path(lab_module().build(quiet=True))


def kubectl_bin() -> str:
    """kubectl of the lab's Kubernetes release, built by tools/kube/build kubectl (cached)."""
    proc = subprocess.run(
        [str(REPO / "tools" / "kube" / "build"), "kubectl"], stdout=subprocess.PIPE, text=True, check=True
    )
    return str(Path(proc.stdout.strip().splitlines()[-1]) / "kubectl")


def helm_bin() -> Path:
    """Helm, built from its pinned Go module by e2e/images/tools/build (cached);
    ``$CNI_MIGRATE_HELM`` names a prebuilt one instead."""
    if os.environ.get("CNI_MIGRATE_HELM"):
        return Path(os.environ["CNI_MIGRATE_HELM"])
    if shutil.which("go") is None:
        pytest.skip("helm is built from Go modules: no Go toolchain")
    proc = subprocess.run(
        [str(REPO / "e2e" / "images" / "tools" / "build")], stdout=subprocess.PIPE, text=True, check=True
    )
    return Path(proc.stdout.strip().splitlines()[-1]) / "helm"


def cilium_chart(version: str) -> Path:
    """Cilium's Helm chart of ``version``, from the Go module of the same release (the
    module proxy serves it; no chart is kept in this repository)."""
    if shutil.which("go") is None:
        pytest.skip("the Cilium chart comes from its Go module: no Go toolchain")
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/cilium/cilium@v{version}"],
        cwd=REPO / "tests",  # not inside any go.mod of the repository
        env={**os.environ, "GOFLAGS": "", "GOTOOLCHAIN": "local"},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(json.loads(proc.stdout)["Dir"]) / "install" / "kubernetes" / "cilium"


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def node_specs(world: simworld.World, overrides: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    """kwok nodes named and shaped like the simulated world's nodes."""
    lab = lab_module()
    specs = []
    for name, n in sorted(world["nodes"].items(), key=lambda kv: kv[1]["index"]):
        spec = lab.NodeSpec(
            name=name,
            control_plane=name.startswith("cp-"),
            kernel_version=n["kernel"],
            cpu=str(n["cpu"] // 1000),
            memory=f"{n['memory'] // 2**20}Mi",
            pods=str(n["maxPods"]),
        )
        for field, value in (overrides or {}).get(name, {}).items():
            setattr(spec, field, value)
        specs.append(spec)
    return specs


def workload_manifests(world: simworld.World) -> list[dict[str, Any]]:
    """The simulated world's workloads, PDBs, Services and bare pod as Kubernetes objects (and
    Cilium's agent DaemonSet and config, unless the world has no Cilium installed)."""
    installed = world["cilium"]["installed"]
    docs: list[dict[str, Any]] = []
    if installed:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                "data": {**CILIUM_CONFIG, "cluster-pool-ipv4-cidr": world["cilium"]["poolCIDR"]},
            }
        )
    namespaces = sorted({w["namespace"] for w in world["workloads"]} | {p["namespace"] for p in world["pdbs"]})
    docs += [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in namespaces
        if ns not in ("kube-system", "default", "calico-system")
    ]
    for w in world["workloads"]:
        if (w["namespace"], w["name"]) == simworld.CALICO_DS:
            continue  # the lab installs calico-node itself
        if (w["namespace"], w["name"]) == simworld.AGENT_DS and not installed:
            continue
        labels = dict(w["labels"])
        if (w["namespace"], w["name"]) == simworld.AGENT_DS:
            labels = {"k8s-app": "cilium"}
        container: dict[str, Any] = {"name": "main", "image": f"example.invalid/{w['name']}:1"}
        if w["cpu"]:
            container["resources"] = {"requests": {"cpu": f"{w['cpu']}m", "memory": f"{w['memory'] // 2**20}Mi"}}
        pod_spec: dict[str, Any] = {"containers": [container]}
        if w["emptydir"]:
            pod_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
            container["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
        if w["hostNetwork"]:
            pod_spec["hostNetwork"] = True
        if w["kind"] == "DaemonSet":
            pod_spec["tolerations"] = [{"operator": "Exists"}]
        spec: dict[str, Any] = {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        }
        if w["kind"] != "DaemonSet":
            spec["replicas"] = w["replicas"]
        if w["kind"] == "StatefulSet":
            spec["serviceName"] = w["name"]
            spec["podManagementPolicy"] = "Parallel"
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": w["kind"],
                "metadata": {"name": w["name"], "namespace": w["namespace"]},
                "spec": spec,
            }
        )
    for pdb in world["pdbs"]:
        docs.append(pdb_manifest(pdb))
    for svc in world.get("services", ()):
        ports = [{"name": f"udp-{n}", "protocol": "UDP", "port": n} for n in svc["udpPorts"]]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc["name"], "namespace": svc["namespace"]},
                "spec": {"selector": svc["selector"], "ports": ports},
            }
        )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": "default", "labels": {"run": "debug"}},
            "spec": {"nodeName": "worker-1", "containers": [{"name": "debug", "image": "example.invalid/x:1"}]},
        }
    )
    return docs


def pdb_manifest(pdb: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": pdb["selector"]}}
    for key in ("minAvailable", "maxUnavailable"):
        if key in pdb:
            value = pdb[key]
            spec[key] = value if value.endswith("%") else int(value)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": pdb["name"], "namespace": pdb["namespace"]},
        "spec": spec,
    }


def policy_manifests(world: simworld.World) -> list[dict[str, Any]]:
    """The simulated world's policies as Kubernetes objects, with the Calico policy CRDs they
    need (the lab's Calico serves IPPools only): the same policies on both backends."""
    crds = [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.crd.projectcalico.org"},
            "spec": {
                "group": "crd.projectcalico.org",
                "scope": scope,
                "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        }
        for kind, plural, scope in (
            ("NetworkPolicy", "networkpolicies", "Namespaced"),
            ("GlobalNetworkPolicy", "globalnetworkpolicies", "Cluster"),
        )
    ]
    policies = [simworld.policy_object(entry) for entry in world["policies"]]
    for policy in policies:
        if policy["apiVersion"] == "networking.k8s.io/v1":
            policy["spec"].setdefault("podSelector", {})
    return [*crds, *policies]
