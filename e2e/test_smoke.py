"""Smoke: the cluster is what the migration tests need."""

from __future__ import annotations

import time

import kindlab


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


def test_policy_pair_allowed_client_gets_through(workload: kindlab.Cluster) -> None:
    """The policy pair is in place: the allowed client reaches the policy target. The denied
    one is denied only where a CNI enforces NetworkPolicy (Calico, issue 11); the lab's
    stand-in CNI enforces nothing, so here its result is only reported."""
    deadline = time.monotonic() + 30
    while True:
        clients = kindlab.policy_clients(workload)
        allowed = clients.get("allowed-client")
        if allowed and allowed.requests - allowed.failures >= 5 and "denied-client" in clients:
            break
        assert time.monotonic() < deadline, f"the allowed client did not get through: {clients}"
        time.sleep(1)
    denied = clients["denied-client"]
    print(f"\ndenied client: {denied.failures}/{denied.requests} failed ({denied.last_error or 'no error'})")
    if kindlab.runs_calico(workload):
        assert denied.requests and denied.failures == denied.requests, denied
