"""Why the eviction of one CoreDNS pod fails name lookups from every node (issue 26, part 2):
the evidence, recorded beside each other on one clock while a CoreDNS pod is deleted as a
drain deletes it (graceful, its grace period honoured), the other replica still serving:

- the probers' failed requests (by name, at the web Service's ClusterIP), per second;
- the kube-dns EndpointSlice: when the old pod turned not ready, when it left;
- every node's datapath: when its kube-proxy rules (iptables nat) stopped naming the old
  pod's address, sampled every 0.2 s on each kind node;
- the old CoreDNS's own log (its lameduck, its shutdown) and when its container ended.

Written to ``dns-evidence.txt`` and ``dns-evidence.json`` in the artifacts directory. The
test asserts only that the evidence was taken (each source has its rows); the numbers go
to e2e/README.md.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import kindlab
import pytest

SAMPLE = 0.2
AFTER = 25.0  # seconds of recording after the delete: CoreDNS's 5 s lameduck and well past


class RuleSampler:
    """Every ``SAMPLE`` s, on each kind node: does its nat table still name ``address``; when
    does kube-proxy first send kube-dns traffic to an address it did not at the start (the
    replacement); when does Calico's felix first program a workload chain (``cali-tw-``) it
    had not at the start (the replacement's policy, on its node)."""

    def __init__(self, nodes: list[str], address: str) -> None:
        self.nodes, self.address = nodes, address
        self.last_seen: dict[str, float] = {}
        self.first_gone: dict[str, float] = {}
        self.dns_targets: dict[str, dict[str, float]] = {}  # node -> kube-dns address -> first seen
        self.chains: dict[str, dict[str, float]] = {}  # node -> felix workload chain -> first seen
        self.baseline: dict[str, float] = {}  # node -> end of its first sample: what was there before
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample, args=(n,), daemon=True) for n in nodes]

    def __enter__(self) -> RuleSampler:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _sample(self, node: str) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["docker", "exec", node, "iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=20
            ).stdout
            now = time.time()
            seen = self.dns_targets.setdefault(node, {})
            for line in out.splitlines():
                if "kube-system/kube-dns:dns" in line and "--to-destination" in line:
                    seen.setdefault(line.rsplit("--to-destination", 1)[1].split(":")[0].strip(), now)
            chains = self.chains.setdefault(node, {})
            for line in subprocess.run(
                ["docker", "exec", node, "iptables-save", "-t", "filter"], capture_output=True, text=True, timeout=20
            ).stdout.splitlines():
                if line.startswith(":cali-tw-"):
                    chains.setdefault(line.split()[0][1:], now)
            self.baseline.setdefault(node, now)
            if self.address in out:
                self.last_seen[node] = now
                self.first_gone.pop(node, None)
            elif out:
                self.first_gone.setdefault(node, now)
            self._stop.wait(SAMPLE)


def test_coredns_eviction_evidence(workload: kindlab.KindCluster, artifacts: Path) -> None:
    pods = [p for p in workload.pods("kube-system", "k8s-app=kube-dns") if not p["metadata"].get("deletionTimestamp")]
    if len(pods) < 2:
        pytest.skip("CoreDNS has fewer than two replicas: an eviction would take DNS down whole")
    victim = pods[0]
    name, address, node = victim["metadata"]["name"], victim["status"]["podIP"], victim["spec"]["nodeName"]
    nodes = [n["metadata"]["name"] for n in workload.nodes()]
    log_path = artifacts / "dns-coredns.log"
    kindlab.reset_probers(workload)
    time.sleep(3)
    with (
        kindlab.ProberLogs(workload, artifacts / "prober-logs-dns") as logs,
        kindlab.EndpointWatch(workload, [("kube-system", "kube-dns")]) as endpoints,
        RuleSampler(nodes, address) as rules,
        log_path.open("w") as log_file,
    ):
        follower = subprocess.Popen(
            [workload.lab.kubectl, "--kubeconfig", str(workload.kubeconfig), "--context", workload.context]
            + ["-n", "kube-system", "logs", "-f", "--timestamps", name],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        start = time.time()
        time.sleep(3)
        deleted = time.time()
        workload.kubectl("-n", "kube-system", "delete", "pod", name, "--wait=false")
        time.sleep(AFTER)
        follower.terminate()
    failures = [f for f in logs.failures() if kindlab.parse_time(f["ts"]) >= deleted - 3]
    per_second: dict[int, dict[str, int]] = {}
    for f in failures:
        second = int(kindlab.parse_time(f["ts"]) - deleted)
        kind = kindlab.target_kind(f.get("target", ""))
        per_second.setdefault(second, {}).setdefault(kind, 0)
        per_second[second][kind] += 1
    evidence: dict[str, Any] = {
        "pod": name,
        "address": address,
        "node": node,
        "deleted": deleted,
        "rulesGoneAfter": {n: round(t - deleted, 2) for n, t in sorted(rules.first_gone.items())},
        "rulesLastSeenAfter": {n: round(t - deleted, 2) for n, t in sorted(rules.last_seen.items())},
        "failuresPerSecond": {str(k): v for k, v in sorted(per_second.items())},
        # What joined after the delete: kube-proxy's new kube-dns targets, felix's new workload chains.
        "dnsTargetsAddedAfter": {
            n: {a: round(t - deleted, 2) for a, t in seen.items() if t > rules.baseline.get(n, start)}
            for n, seen in sorted(rules.dns_targets.items())
        },
        "workloadChainsAddedAfter": {
            n: {c: round(t - deleted, 2) for c, t in seen.items() if t > rules.baseline.get(n, start)}
            for n, seen in sorted(rules.chains.items())
        },
        "failures": len(failures),
        "errors": sorted({kindlab.short_error(f.get("error", "")) for f in failures}),
    }
    (artifacts / "dns-evidence.json").write_text(json.dumps(evidence, indent=1))
    rows = [(t, text) for t, text in endpoints.lines()]
    rows += [(deleted, f"{'':14} DELETE {name} ({address}, on {kindlab.short_node(node)})")]
    rows += [
        (t, f"{kindlab.short_node(n):<14} kube-proxy sends kube-dns traffic to new {a}")
        for n, seen in rules.dns_targets.items()
        for a, t in seen.items()
        if t > rules.baseline.get(n, start)
    ]
    rows += [
        (t, f"{kindlab.short_node(n):<14} felix programmed {c}")
        for n, seen in rules.chains.items()
        for c, t in seen.items()
        if t > rules.baseline.get(n, start)
    ]
    rows += [
        (t, f"{kindlab.short_node(n):<14} kube-proxy rules for {address} gone") for n, t in rules.first_gone.items()
    ]
    for line in log_path.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        try:
            rows.append((kindlab.parse_time(stamp), f"{'':14} coredns: {text[:100]}"))
        except ValueError:
            continue
    timeline = kindlab.failure_timeline(failures, [], rows)
    (artifacts / "dns-evidence.txt").write_text(json.dumps(evidence, indent=1) + "\n\n" + timeline + "\n")
    print(f"\nCoreDNS {name} deleted; evidence in {artifacts / 'dns-evidence.txt'}")
    print(json.dumps(evidence, indent=1))
    assert rules.last_seen, "the nat tables never named the pod's address: the sampler saw nothing"
    assert endpoints.lines(), "the kube-dns EndpointSlice watch saw nothing"
