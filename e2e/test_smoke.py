"""Smoke: the cluster is what the migration tests need."""

from __future__ import annotations

import ipaddress
import json
import time

import kindlab
import pytest


def test_nodes_ready(cluster: kindlab.Cluster) -> None:
    nodes = cluster.nodes()
    assert len(nodes) == 4
    assert len(cluster.workers()) == 3
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        # the pod CIDRs come from the podSubnet Calico's IPPool will use
        assert node["spec"]["podCIDR"].startswith("192.168."), node["spec"]["podCIDR"]


def test_coredns_answers_from_a_pod(workload: kindlab.Cluster) -> None:
    """labpod is FROM scratch (no shell, no nslookup); the prober resolves names from its pod
    through the cluster DNS: every request to the web Service looks up
    web.e2e.svc.cluster.local (no keep-alive, Go's resolver does not cache), and its peers
    come from the headless name prober.e2e.svc.cluster.local."""
    # (during the warm-up the headless name may not resolve yet: "dns:" failures then)
    deadline = time.monotonic() + 30
    while True:
        summary = kindlab.prober_summary(workload)
        ok = [
            (r.node, t) for r in summary.reports for t in r.targets if t.kind == "service" and t.requests > t.failures
        ]
        peers = {r.node: sum(t.kind == "peer" for t in r.targets) for r in summary.reports}
        if len(ok) == 4 and all(n == 3 for n in peers.values()):
            break
        assert time.monotonic() < deadline, f"no DNS-resolved request from every node: {summary.table()}"
        time.sleep(2)


def test_prober_zero_failures(workload: kindlab.Cluster) -> None:
    time.sleep(3)  # warm-up: the first probes race DNS and endpoints
    kindlab.reset_probers(workload)
    time.sleep(20)
    summary = kindlab.prober_summary(workload)
    print("\n" + summary.table())
    assert len(summary.reports) == 4, "one prober per node"
    for r in summary.reports:
        kinds = {t.kind for t in r.targets}
        assert kinds >= {"service", "peer"}, (r.node, kinds)
        assert sum(t.kind == "peer" for t in r.targets) == 3, f"{r.node} sees 3 peers"
    assert summary.requests(kinds=("service",)) > 4 * 80
    assert summary.failed() == 0, summary.failures_lines()
    assert max(summary.longest_by_node().values()) == 0


# -- Calico (issue 11): only when the suite installed it (e2e/images/calico/build) ------------
POOL = ipaddress.ip_network("192.168.0.0/16")


def calico_only(cluster: kindlab.Cluster) -> None:
    if cluster.cni != "calico":
        pytest.skip(f"CNI is {cluster.cni}, not Calico (no Calico images: e2e/images/build's CALICO_ lines)")


def test_calico_node_ready_everywhere(cluster: kindlab.Cluster) -> None:
    calico_only(cluster)
    pods = cluster.pods("kube-system", "k8s-app=calico-node")
    nodes = {n["metadata"]["name"] for n in cluster.nodes()}
    ready = {p["spec"]["nodeName"] for p in pods if kindlab.pod_ready(p)}
    assert ready == nodes, f"calico-node Ready on {sorted(ready)} of {sorted(nodes)}"
    assert all(kindlab.pod_ready(p) for p in cluster.pods("kube-system", "k8s-app=calico-kube-controllers"))


def test_calico_ipam_gives_pod_ips(workload: kindlab.Cluster) -> None:
    """Every workload pod has its IP from the Calico IPPool, allocated by Calico IPAM: in a
    block affine to its own node (not from the node's podCIDR as host-local would)."""
    calico_only(workload)
    pools = workload.json("get", "ippools.crd.projectcalico.org")["items"]
    assert [(p["spec"]["cidr"], p["spec"].get("vxlanMode")) for p in pools] == [("192.168.0.0/16", "Always")]
    blocks: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for b in workload.json("get", "blockaffinities.crd.projectcalico.org")["items"]:
        blocks.setdefault(b["spec"]["node"], []).append(ipaddress.ip_network(b["spec"]["cidr"]))
    pods = [p for p in workload.pods("e2e") if not p["spec"].get("hostNetwork")]
    assert len(pods) >= 3 + 2 + 4
    for p in pods:
        ip, node = ipaddress.ip_address(p["status"]["podIP"]), p["spec"]["nodeName"]
        assert ip in POOL, (p["metadata"]["name"], str(ip))
        assert any(ip in b for b in blocks.get(node, [])), f"{p['metadata']['name']} {ip}: no block of {node}"
        assert p["metadata"].get("annotations", {}).get("cni.projectcalico.org/podIP"), p["metadata"]["name"]


def test_calico_vxlan_carries_cross_node_traffic(workload: kindlab.Cluster) -> None:
    """Every node has vxlan.calico and routes the other nodes' blocks through it; after the
    probers have talked to their peers on the other nodes, every tunnel has sent and received."""
    calico_only(workload)
    time.sleep(3)
    for node in sorted(n["metadata"]["name"] for n in workload.nodes()):
        routes = kindlab.run(["docker", "exec", node, "ip", "-4", "route", "show"]).stdout
        via_vxlan = [r for r in routes.splitlines() if "dev vxlan.calico" in r and r.split()[0].startswith("192.168.")]
        assert len(via_vxlan) >= 3, f"{node}: routes over vxlan.calico: {via_vxlan}\n{routes}"
        link_cmd = ["docker", "exec", node, "ip", "-j", "-d", "-s", "link", "show", "vxlan.calico"]
        link = json.loads(kindlab.run(link_cmd).stdout)[0]
        assert link["linkinfo"]["info_kind"] == "vxlan"
        assert link["linkinfo"]["info_data"]["port"] == 4789
        stats = link["stats64"]
        assert stats["tx"]["packets"] > 0 and stats["rx"]["packets"] > 0, (node, stats)


POLICY_NS = "e2e-policy"
POLICY = """
apiVersion: v1
kind: Namespace
metadata: {name: e2e-policy}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: e2e-policy, labels: {app: server}}
spec:
  containers:
    - name: server
      image: LABPOD_IMAGE
      imagePullPolicy: IfNotPresent
      args: ["serve"]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: e2e-policy}
spec:
  selector: {app: server}
  ports: [{port: 80, targetPort: 8080}]
---
# only clients labelled role=allowed may reach the server
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-allow-allowed, namespace: e2e-policy}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {role: allowed}}}]
      ports: [{port: 8080}]
"""
CLIENT = """
apiVersion: v1
kind: Pod
metadata: {name: ROLE, namespace: e2e-policy, labels: {role: ROLE}}
spec:
  containers:
    - name: client
      image: LABPOD_IMAGE
      imagePullPolicy: IfNotPresent
      args: ["probe", "-interval", "200ms", "-timeout", "1s", "-target", "http://server.e2e-policy.svc.cluster.local/"]
"""


def test_policy_pair_allowed_client_gets_through(workload: kindlab.Cluster) -> None:
    """A NetworkPolicy admits one client and not another: Calico enforces both halves (the
    stand-in CNI enforces no policy, so the test needs Calico). The namespace is removed
    afterwards: the plan test expects no NetworkPolicy in the cluster."""
    calico_only(workload)
    image = workload.lab.labpod_image
    manifest = POLICY + "".join("---" + CLIENT.replace("ROLE", r) for r in ("allowed", "denied"))
    try:
        workload.kubectl("apply", "-f", "-", input=manifest.replace("LABPOD_IMAGE", image))
        workload.kubectl(
            "-n", POLICY_NS, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s", timeout=150
        )
        time.sleep(3)  # warm-up: DNS and the Service's endpoints
        for role in ("allowed", "denied"):
            workload.post_raw(f"/api/v1/namespaces/{POLICY_NS}/pods/{role}:8080/proxy/reset")
        time.sleep(10)
        stats = {
            role: workload.raw(f"/api/v1/namespaces/{POLICY_NS}/pods/{role}:8080/proxy/stats")["targets"]
            for role in ("allowed", "denied")
        }
        print("\n" + json.dumps(stats, indent=1))
        (allowed,) = stats["allowed"].values()
        (denied,) = stats["denied"].values()
        assert allowed["requests"] >= 20 and allowed["failures"] == 0, allowed
        assert denied["requests"] >= 5 and denied["failures"] == denied["requests"], denied
    finally:
        workload.kubectl("delete", "namespace", POLICY_NS, "--ignore-not-found", "--timeout=120s", timeout=150)
