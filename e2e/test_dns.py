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
import time
from pathlib import Path
from typing import Any

import kindlab
import pytest

SAMPLE = 0.2
CONNTRACK_EVERY = 5  # rounds of SAMPLE s
SETTLE = 3.0  # s after the endpoint left: every kube-proxy has synced and flushed (1 s sync)
AFTER = 25.0  # seconds of recording after the delete: CoreDNS's 5 s lameduck and well past


class RuleSampler(kindlab.Sampler):
    """Every ``SAMPLE`` s, on each kind node: does its nat table still name ``address``; when
    does kube-proxy first send kube-dns traffic to an address it did not at the start (the
    replacement); when does Calico's felix first program a workload chain (``cali-tw-``) it
    had not at the start (the replacement's policy, on its node); and how many UDP conntrack
    entries still translate to ``address`` (``conntrack -L --reply-src``): a query whose
    5-tuple matches one of them goes to the old pod whatever the rules say."""

    def __init__(self, nodes: list[str], address: str) -> None:
        self.nodes, self.address = nodes, address
        self.last_seen: dict[str, float] = {}
        self.first_gone: dict[str, float] = {}
        self.dns_targets: dict[str, dict[str, float]] = {}  # node -> kube-dns address -> first seen
        self.chains: dict[str, dict[str, float]] = {}  # node -> felix workload chain -> first seen
        self.baseline: dict[str, float] = {}  # node -> end of its first sample: what was there before
        self.conntrack: dict[str, list[tuple[float, int]]] = {}  # node -> (time, entries to the address)
        super().__init__(nodes)

    def _run(self, node: str) -> None:
        rounds = 0
        while not self._stop.is_set():
            rounds += 1
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
            # Listing thousands of entries costs the node CPU: once a second, not every round.
            tracked = (
                subprocess.run(
                    ["docker", "exec", node, "conntrack", "-L", "-p", "udp", "--reply-src", self.address],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                if rounds % CONNTRACK_EVERY == 1
                else None
            )
            if tracked is not None and tracked.returncode == 0:
                self.conntrack.setdefault(node, []).append((time.time(), len(tracked.stdout.splitlines())))
            self.baseline.setdefault(node, now)
            if self.address in out:
                self.last_seen[node] = now
                self.first_gone.pop(node, None)
            elif out:
                self.first_gone.setdefault(node, now)
            self._stop.wait(SAMPLE)

    def conntrack_rows(self, since: float) -> list[tuple[float, str]]:
        """Timeline rows where a node's count of entries to the old address changed by more
        than a tenth (or reached 0), so the table stays readable."""
        rows: list[tuple[float, str]] = []
        for node, samples in self.conntrack.items():
            last = -1
            for t, n in samples:
                if t < since - 1:
                    continue
                if last < 0 or (n == 0) != (last == 0) or abs(n - last) > max(last, 1) / 10:
                    rows.append((t, f"{kindlab.short_node(node):<14} conntrack: {n} UDP entries to {self.address}"))
                    last = n
        return rows


HANDOFF_LABEL = "cni-migrate.io/handoff"


@pytest.mark.parametrize("how", ["delete", "handoff", "terminate-then-handoff"])
def test_coredns_eviction_evidence(workload: kindlab.KindCluster, artifacts: Path, how: str) -> None:
    """``delete``: the pod is deleted as a drain's eviction deletes it. ``handoff``: first taken
    out of its Service while it still answers (its ``k8s-app`` label replaced, so the
    EndpointSlice drops it, kube-proxy flushes the UDP conntrack entries to it, and its
    ReplicaSet lets it go and starts a replacement), deleted only once the EndpointSlice no
    longer lists it and ``SETTLE`` s more have passed. ``terminate-then-handoff``: deleted
    first (its endpoint turns terminating: kube-proxy stops choosing it, flushes nothing),
    relabelled as soon as the EndpointSlice shows it terminating, i.e. the flush comes when
    no new query is sent to it any more, within its lameduck."""
    pods = [p for p in workload.pods("kube-system", "k8s-app=kube-dns") if not p["metadata"].get("deletionTimestamp")]
    if len(pods) < 2:
        pytest.skip("CoreDNS has fewer than two replicas: an eviction would take DNS down whole")
    victim = pods[0]
    name, address, node = victim["metadata"]["name"], victim["status"]["podIP"], victim["spec"]["nodeName"]
    nodes = [n["metadata"]["name"] for n in workload.nodes()]
    log_path = artifacts / f"dns-{how}-coredns.log"
    kindlab.reset_probers(workload)
    time.sleep(3)
    marks: list[tuple[float, str]] = []
    with (
        kindlab.ProberLogs(workload, artifacts / f"prober-logs-dns-{how}") as logs,
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
        began = time.time()
        if how == "handoff":
            workload.kubectl("-n", "kube-system", "label", "pod", name, "k8s-app-", f"{HANDOFF_LABEL}=kube-dns")
            marks.append((time.time(), f"{'':14} RELABEL {name}: out of kube-dns and its ReplicaSet"))
            gone = wait_endpoint_gone(endpoints, address, began, timeout=60)
            marks.append((gone, f"{'':14} endpoint {address} left kube-dns; waiting {SETTLE:.0f} s"))
            time.sleep(SETTLE)
        deleted = time.time()
        workload.kubectl("-n", "kube-system", "delete", "pod", name, "--wait=false")
        marks.append((deleted, f"{'':14} DELETE {name} ({address}, on {kindlab.short_node(node)})"))
        if how == "terminate-then-handoff":
            terminating = wait_endpoint(endpoints, f"{address}@", "terminating", deleted, timeout=30)
            marks.append((terminating, f"{'':14} endpoint {address} terminating"))
            workload.kubectl("-n", "kube-system", "label", "pod", name, "k8s-app-", f"{HANDOFF_LABEL}=kube-dns")
            marks.append((time.time(), f"{'':14} RELABEL {name}: out of kube-dns (terminating)"))
        time.sleep(AFTER)
        follower.terminate()
    failures = [f for f in logs.failures() if kindlab.parse_time(f["ts"]) >= began - 3]
    per_second: dict[int, dict[str, int]] = {}
    for f in failures:
        second = int(kindlab.parse_time(f["ts"]) - began)
        kind = kindlab.target_kind(f.get("target", ""))
        per_second.setdefault(second, {}).setdefault(kind, 0)
        per_second[second][kind] += 1
    evidence: dict[str, Any] = {
        "how": how,
        "pod": name,
        "address": address,
        "node": node,
        "began": began,
        "deletedAfter": round(deleted - began, 2),
        "rulesGoneAfter": {n: round(t - began, 2) for n, t in sorted(rules.first_gone.items())},
        "rulesLastSeenAfter": {n: round(t - began, 2) for n, t in sorted(rules.last_seen.items())},
        "failuresPerSecond": {str(k): v for k, v in sorted(per_second.items())},
        # UDP conntrack entries that still translate to the old pod, per node: at the start,
        # at the delete, and when each node first had none.
        "conntrack": {
            n: {
                "atStart": next((c for t, c in samples if t >= began), None),
                "atDelete": next((c for t, c in samples if t >= deleted), None),
                "firstZeroAfter": next((round(t - began, 2) for t, c in samples if t >= began and c == 0), None),
            }
            for n, samples in sorted(rules.conntrack.items())
        },
        # What joined after the start: kube-proxy's new kube-dns targets, felix's new workload chains.
        "dnsTargetsAddedAfter": {
            n: {a: round(t - began, 2) for a, t in seen.items() if t > rules.baseline.get(n, start)}
            for n, seen in sorted(rules.dns_targets.items())
        },
        "workloadChainsAddedAfter": {
            n: {c: round(t - began, 2) for c, t in seen.items() if t > rules.baseline.get(n, start)}
            for n, seen in sorted(rules.chains.items())
        },
        "failures": len(failures),
        "errors": sorted({kindlab.short_error(f.get("error", "")) for f in failures}),
    }
    (artifacts / f"dns-{how}-evidence.json").write_text(json.dumps(evidence, indent=1))
    rows = [(t, text) for t, text in endpoints.lines()] + marks + rules.conntrack_rows(began)
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
    (artifacts / f"dns-{how}-evidence.txt").write_text(json.dumps(evidence, indent=1) + "\n\n" + timeline + "\n")
    print(f"\nCoreDNS {name} ({how}); evidence in {artifacts / f'dns-{how}-evidence.txt'}")
    print(json.dumps(evidence, indent=1))
    assert rules.last_seen, "the nat tables never named the pod's address: the sampler saw nothing"
    assert endpoints.lines(), "the kube-dns EndpointSlice watch saw nothing"
    assert rules.conntrack, "conntrack listed nothing on any node: the sampler could not count entries"


def wait_endpoint(endpoints: kindlab.EndpointWatch, marker: str, state: str, since: float, timeout: float) -> float:
    """When the watched endpoints first show ``marker`` (``address@``) in ``state`` after ``since``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t, _svc, eps in list(endpoints.changes):
            if t >= since and any(e.startswith(marker) and state in e for e in eps.split(", ")):
                return t
        time.sleep(0.1)
    raise AssertionError(f"{marker} never {state} in kube-dns's EndpointSlice within {timeout:.0f} s")


def wait_endpoint_gone(endpoints: kindlab.EndpointWatch, address: str, since: float, timeout: float) -> float:
    """When the watched kube-dns endpoints first no longer name ``address`` after ``since``
    (the watch's own record, checked as it grows)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t, _svc, eps in list(endpoints.changes):
            if t >= since and f"{address}@" not in eps:
                return t
        time.sleep(0.1)
    raise AssertionError(f"{address} still in kube-dns's EndpointSlice after {timeout:.0f} s")
