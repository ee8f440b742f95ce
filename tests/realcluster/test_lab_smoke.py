"""Smoke tests for the real control plane lab (tools/kube/lab, tools/kube/kubelab/)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

pytestmark = pytest.mark.realcluster


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def api(kube_lab) -> client.ApiClient:
    return config.new_client_from_config(str(kube_lab.kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    v1 = client.CoreV1Api(api)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        "default SA", lambda: v1.list_namespaced_service_account(name, field_selector="metadata.name=default").items
    )
    yield name
    v1.delete_namespace(name)


def _ready(node: client.V1Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def test_nodes_ready_with_realistic_node_info(kube_lab, api):
    nodes = client.CoreV1Api(api).list_node().items
    assert len(nodes) == 6
    assert all(_ready(n) for n in nodes)
    cps = [n for n in nodes if "node-role.kubernetes.io/control-plane" in (n.metadata.labels or {})]
    assert [n.metadata.name for n in cps] == ["control-plane-1"]
    for n in nodes:
        assert n.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        info = n.status.node_info
        assert info.kernel_version and info.os_image and info.operating_system == "linux"
        assert info.architecture == "amd64"
        assert info.kubelet_version == kube_lab.kubernetes_version
        assert n.status.allocatable["pods"] == "110"
    assert client.VersionApi(api).get_code().git_version == kube_lab.kubernetes_version


def test_add_node_with_old_kernel(kube_lab, kube_lab_module, api):
    v1 = client.CoreV1Api(api)
    spec = kube_lab_module.NodeSpec(name="old-kernel-1", kernel_version="4.19.0")
    kube_lab.add_nodes([spec])  # waits for Ready
    try:
        node = v1.read_node("old-kernel-1")
        assert _ready(node)
        assert node.status.node_info.kernel_version == "4.19.0"
        # the calico-node DaemonSet follows the new node
        wait_for(
            "calico-node on old-kernel-1",
            lambda: [
                p
                for p in v1.list_namespaced_pod("calico-system", field_selector="spec.nodeName=old-kernel-1").items
                if p.status.phase == "Running"
            ],
        )
    finally:
        kube_lab.delete_nodes(["old-kernel-1"])  # node + its pods, no 40s pod-GC wait
    assert not v1.list_namespaced_pod("calico-system", field_selector="spec.nodeName=old-kernel-1").items


def test_calico_and_cilium_fixtures(api):
    co = client.CustomObjectsApi(api)
    inst = co.get_cluster_custom_object("operator.tigera.io", "v1", "installations", "default")
    assert inst["spec"]["cni"]["type"] == "Calico"
    pool = co.get_cluster_custom_object("crd.projectcalico.org", "v1", "ippools", "default-ipv4-ippool")
    assert pool["spec"]["cidr"] == "192.168.0.0/16" and pool["spec"]["vxlanMode"] == "Always"
    ds = client.AppsV1Api(api).read_namespaced_daemon_set("calico-node", "calico-system")
    assert ds.status.number_ready == ds.status.desired_number_scheduled >= 6
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    co.create_cluster_custom_object(
        "cilium.io",
        "v2",
        "ciliumnodes",
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": name},
            "spec": {"ipam": {"podCIDRs": ["10.245.0.0/24"]}},
        },
    )
    co.delete_cluster_custom_object("cilium.io", "v2", "ciliumnodes", name)
    for version in ("v2", "v2alpha1"):
        co.create_namespaced_custom_object(
            "cilium.io",
            version,
            "kube-system",
            "ciliumnodeconfigs",
            {
                "apiVersion": f"cilium.io/{version}",
                "kind": "CiliumNodeConfig",
                "metadata": {"name": f"{name}-{version}"},
                "spec": {
                    "nodeSelector": {"matchLabels": {"io.cilium.migration/cilium-default": "true"}},
                    "defaults": {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist"},
                },
            },
        )
        co.delete_namespaced_custom_object(
            "cilium.io", version, "kube-system", "ciliumnodeconfigs", f"{name}-{version}"
        )


def test_deployment_pdb_and_eviction(api, namespace):
    apps, v1, policy = client.AppsV1Api(api), client.CoreV1Api(api), client.PolicyV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
                ),
            ),
        ),
    )
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=2, selector=client.V1LabelSelector(match_labels=labels)
            ),
        ),
    )

    def available() -> bool:
        d = apps.read_namespaced_deployment("web", namespace)
        return d.status.available_replicas == 3 and d.status.updated_replicas == 3

    wait_for("deployment available", available)
    pods = v1.list_namespaced_pod(namespace, label_selector="app=web").items
    assert all(p.spec.node_name and p.spec.node_name.startswith("worker-") for p in pods)  # CP is tainted
    assert all(p.status.phase == "Running" and p.status.pod_ip.startswith("192.168.") for p in pods)

    def disruptions_allowed(n: int) -> Callable[[], bool]:
        def check() -> bool:
            st = policy.read_namespaced_pod_disruption_budget("web", namespace).status
            return st is not None and st.current_healthy == 3 and st.disruptions_allowed == n

        return check

    wait_for("PDB disruptionsAllowed=1", disruptions_allowed(1))

    def evict(name: str) -> int:
        try:
            v1.create_namespaced_pod_eviction(
                name, namespace, client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
            )
            return 201
        except client.ApiException as exc:
            return exc.status

    first, second = pods[0].metadata.name, pods[1].metadata.name
    assert evict(first) == 201

    def replaced() -> bool:
        names = {p.metadata.name for p in v1.list_namespaced_pod(namespace, label_selector="app=web").items}
        return first not in names and len(names) == 3

    wait_for("evicted pod deleted (kwok) and replaced (ReplicaSet)", replaced)
    wait_for("deployment available again", available)
    wait_for("PDB disruptionsAllowed back to 1", disruptions_allowed(1))

    # no budget left: the Eviction API must refuse with 429 and keep the pod
    policy.patch_namespaced_pod_disruption_budget("web", namespace, {"spec": {"minAvailable": 3}})
    wait_for("PDB disruptionsAllowed=0", disruptions_allowed(0))
    assert evict(second) == 429
    assert v1.read_namespaced_pod(second, namespace).metadata.deletion_timestamp is None


def test_lab_down_from_another_process_leaves_nothing(kube_lab_module, kube_bin_dir, tmp_path):
    """`lab up` in a child process (which exits, leaving the lab running),
    then KubeLab(dir).down() here: every process is gone, files removed."""
    workdir = tmp_path / "lab"
    out = subprocess.run(
        [
            sys.executable,
            str(kube_lab_module.HERE / "lab.py"),
            "up",
            "--nodes",
            "2",
            "--no-fixtures",
            "--dir",
            str(workdir),
            "--bin-dir",
            str(kube_bin_dir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={workdir / 'kubeconfig'}"
    lab = kube_lab_module.KubeLab(workdir)
    pids = lab.pids()
    assert set(pids) == set(kube_lab_module.COMPONENTS)
    signalled = lab.down()
    assert sorted(signalled) == sorted(pids.values())
    assert not any(kube_lab_module.processes.alive(p) for p in pids.values())
    assert kube_lab_module.processes.marked_pids(workdir) == []
    assert not workdir.exists()
