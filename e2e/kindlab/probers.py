"""The probers (labpod's DaemonSet, and the policy pair's clients): what each target
is, every prober's /stats at one moment (``Summary``), and their logs followed while a
scenario runs (``ProberLogs``: every failed request, also of probers since deleted)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cluster import KindCluster


def target_kind(target: str) -> str:
    """'dns' (a name did not resolve), 'service-ip' (the web Service at the ClusterIP its
    name resolved to: the datapath without DNS), 'peer' (a prober pod by IP) or 'service'
    (the web Service by name: a DNS lookup, then the datapath); 'solo' and 'solo-ip' the
    same for the single-replica solo Service (the surge's witness)."""
    if target.startswith("dns:"):
        return "dns"
    if target.startswith("svcip:"):
        return "solo-ip" if (urlsplit(target[6:]).hostname or "").startswith("solo.") else "service-ip"
    host = urlsplit(target).hostname or ""
    if host.startswith("solo."):
        return "solo"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "service"
    return "peer"


@dataclass(frozen=True)
class TargetStats:
    target: str
    kind: str
    requests: int
    failures: int
    longest_ms: int  # longest interruption, including one still in progress
    last_error: str


@dataclass(frozen=True)
class ProberReport:
    pod: str
    node: str
    targets: tuple[TargetStats, ...]


@dataclass(frozen=True)
class Summary:
    """Every prober's /stats at one moment."""

    reports: tuple[ProberReport, ...]

    def select(
        self,
        kinds: Iterable[str] = ("service", "peer", "dns"),
        exclude_nodes: Iterable[str] = (),
        exclude_targets: Iterable[str] = (),
    ) -> list[tuple[str, TargetStats]]:
        kinds, skip, gone = set(kinds), set(exclude_nodes), set(exclude_targets)
        return [
            (r.node, t)
            for r in self.reports
            if r.node not in skip
            for t in r.targets
            if t.kind in kinds and t.target not in gone
        ]

    def departed(self, live: Iterable[str]) -> list[str]:
        """Peer targets whose address no running prober has any more (``live``: their IPs):
        pods restarted onto new addresses or deleted, which a prober keeps probing until its
        next lookup of the peers' name (every 5 s); their failures are no interruption."""
        alive = set(live)
        return sorted({t.target for _, t in self.select(kinds=("peer",)) if urlsplit(t.target).hostname not in alive})

    def requests(self, **kw: Any) -> int:
        return sum(t.requests for _, t in self.select(**kw))

    def failed(self, **kw: Any) -> int:
        """Total failed requests."""
        return sum(t.failures for _, t in self.select(**kw))

    def longest_by_node(self, **kw: Any) -> dict[str, int]:
        """Per prober node: the longest interruption (ms) over its targets."""
        out = {r.node: 0 for r in self.reports if r.node not in set(kw.get("exclude_nodes", ()))}
        for node, t in self.select(**kw):
            out[node] = max(out[node], t.longest_ms)
        return out

    def interrupted(self, longer_than_ms: int, **kw: Any) -> list[str]:
        """Targets whose longest interruption (one in progress included) exceeds the given
        length, or that never answered: a broken path, not a lone timeout on a busy machine."""
        return [
            f"{node} -> {t.target}: {t.failures}/{t.requests} failed, longest {t.longest_ms} ms ({t.last_error})"
            for node, t in self.select(**kw)
            if t.longest_ms > longer_than_ms or (t.requests and t.failures == t.requests)
        ]

    def failures_lines(self, **kw: Any) -> list[str]:
        return [
            f"{node} -> {t.target}: {t.failures}/{t.requests} failed, longest {t.longest_ms} ms ({t.last_error})"
            for node, t in self.select(**kw)
            if t.failures
        ]

    def table(self) -> str:
        rows = [f"{'from node':<28} {'target':<44} {'req':>6} {'fail':>5} {'longest ms':>10}"]
        for r in sorted(self.reports, key=lambda r: r.node):
            for t in sorted(r.targets, key=lambda t: (t.kind, t.target)):
                rows.append(f"{r.node:<28} {t.target:<44} {t.requests:>6} {t.failures:>5} {t.longest_ms:>10}")
        return "\n".join(rows)


def parse_time(value: str) -> float:
    # Go's RFC 3339 with nanoseconds: keep microseconds for Python.
    from datetime import datetime

    value = value.replace("Z", "+00:00")
    head, _, rest = value.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        value = f"{head}.{digits[:6]}{tz}"
    return datetime.fromisoformat(value).timestamp()


def prober_pods(cluster: KindCluster) -> list[dict[str, Any]]:
    return [p for p in cluster.pods("e2e", "app=prober") if p["status"].get("phase") == "Running"]


def prober_ips(cluster: KindCluster) -> set[str]:
    return {p["status"]["podIP"] for p in prober_pods(cluster) if p["status"].get("podIP")}


def prober_summary(cluster: KindCluster) -> Summary:
    reports = []
    now = time.time()
    for pod in prober_pods(cluster):
        name = pod["metadata"]["name"]
        data = cluster.raw(f"/api/v1/namespaces/e2e/pods/{name}:8080/proxy/stats")
        targets = []
        for target, s in sorted((data.get("targets") or {}).items()):
            longest = int(s.get("longest_outage_ms", 0))
            if s.get("outage_since"):
                longest = max(longest, int((now - parse_time(s["outage_since"])) * 1000))
            targets.append(
                TargetStats(
                    target,
                    target_kind(target),
                    int(s.get("requests", 0)),
                    int(s.get("failures", 0)),
                    longest,
                    s.get("last_error", ""),
                )
            )
        reports.append(ProberReport(name, pod["spec"]["nodeName"], tuple(targets)))
    return Summary(tuple(reports))


def policy_clients(cluster: KindCluster) -> dict[str, TargetStats]:
    """The policy pair's clients: role (allowed-client, denied-client) -> their one target."""
    out = {}
    for pod in cluster.pods("e2e", "app=policy-client"):
        if pod["status"].get("phase") != "Running":
            continue
        data = cluster.raw(f"/api/v1/namespaces/e2e/pods/{pod['metadata']['name']}:8080/proxy/stats")
        for target, s in (data.get("targets") or {}).items():
            out[pod["metadata"]["labels"]["role"]] = TargetStats(
                target,
                target_kind(target),
                int(s.get("requests", 0)),
                int(s.get("failures", 0)),
                int(s.get("longest_outage_ms", 0)),
                s.get("last_error", ""),
            )
    return out


def reset_probers(cluster: KindCluster) -> None:
    for pod in prober_pods(cluster):
        cluster.post_raw(f"/api/v1/namespaces/e2e/pods/{pod['metadata']['name']}:8080/proxy/reset")


class ProberLogs:
    """Follows every prober pod's log while a scenario runs (``with ProberLogs(...) as logs``).

    Each failed request is one JSON line on a prober's stdout; a run restarts the probers
    (they are DaemonSet pods on the nodes it moves), and a deleted pod's log and /stats go
    with it, so this keeps following new prober pods (polled every 2 s) and keeps what
    every one of them said: ``failures()`` are all of the scenario's failed requests.
    """

    def __init__(self, cluster: KindCluster, directory: Path, poll: float = 2.0) -> None:
        self.cluster, self.dir, self.poll = cluster, directory, poll
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ProberLogs:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        time.sleep(1)  # the last lines in flight
        for proc in self._procs.values():
            proc.terminate()
        for proc in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                pods = prober_pods(self.cluster)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError):
                pods = []  # the API server is busy or restarting: ask again
            for pod in pods:
                name = pod["metadata"]["name"]
                if name in self._procs and self._procs[name].poll() is None:
                    continue
                # A pod seen before whose follower ended (its container restarted, or the
                # API server dropped the stream): follow it again, into a fresh file.
                self._files[name] = self._files.get(name, 0) + 1
                out = (self.dir / f"{name}.{self._files[name]}.log").open("wb")
                cmd = [self.cluster.lab.kubectl, "--kubeconfig", str(self.cluster.kubeconfig)]
                cmd += ["--context", self.cluster.context, "-n", "e2e", "logs", "-f", name]
                self._procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
            self._stop.wait(self.poll)

    def failures(self) -> list[dict[str, Any]]:
        """Every failure line seen, once each (a re-followed log repeats its start), by send time."""
        seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        for path in sorted(self.dir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and item.get("event") == "failure":
                    seen[(item.get("from_pod", ""), item.get("target", ""), item.get("ts", ""))] = item
        return sorted(seen.values(), key=lambda f: parse_time(f["ts"]))


def failure_counts(failures: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Failed requests per target kind (service, service-ip, peer, dns)."""
    out = {"service": 0, "service-ip": 0, "peer": 0, "dns": 0}
    for f in failures:
        kind = target_kind(f.get("target", ""))
        out[kind] = out.get(kind, 0) + 1
    return out
