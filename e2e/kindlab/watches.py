"""What the machine and the cluster did while a scenario ran, for the timeline: the CPUs
(``CpuSampler``, from /proc) and the Services' endpoints (``EndpointWatch``). Each is a
``Sampler``: one background thread per target, started by ``with`` and stopped at its end."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cluster import KindCluster
from .timeline import short_node


class Sampler:
    """Runs ``self._run(target)`` in a daemon thread per target while the ``with`` block
    runs; ``_run`` loops until ``self._stop`` is set (waiting on it, never sleeping)."""

    join_timeout = 15.0

    def __init__(self, targets: Sequence[Any]) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in targets]

    def __enter__(self) -> Any:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.join_timeout)

    def _run(self, target: Any) -> None:
        raise NotImplementedError


class CpuSampler(Sampler):
    """What the machine's CPUs did while a scenario ran (``with CpuSampler() as cpu``): every
    ``interval`` s, how busy they were, how many tasks waited to run, and the commands that
    used the most CPU. The kind nodes are containers on this one kernel, so /proc shows
    every node's processes: the lab's 4 nodes share the machine's cores, which a real
    cluster's nodes do not."""

    join_timeout = 30.0

    def __init__(self, interval: float = 5.0, top: int = 4) -> None:
        self.interval, self.top = interval, top
        self.samples: list[tuple[float, float, int, list[tuple[str, float]]]] = []
        super().__init__(["cpu"])

    @staticmethod
    def _totals() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    @staticmethod
    def _per_process() -> dict[str, tuple[str, int]]:
        """pid -> (command, CPU jiffies so far); kernel workers all count as "kworker"."""
        out: dict[str, tuple[str, int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue  # the process ended
            comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
            if comm.startswith("kworker/"):
                comm = "kworker"  # its name says the work item of the moment
            out[stat.parent.name] = (comm, int(rest[11]) + int(rest[12]))  # utime + stime
        return out

    def _run(self, target: str) -> None:
        total, idle = self._totals()
        procs = self._per_process()
        cores = os.cpu_count() or 1
        while not self._stop.wait(self.interval):
            total2, idle2 = self._totals()
            procs2 = self._per_process()
            span = max(total2 - total, 1)
            busy = 100.0 * (1 - (idle2 - idle) / span)
            used: dict[str, float] = {}
            for pid, (comm, jiffies) in procs2.items():
                before = procs.get(pid)
                delta = jiffies - before[1] if before and before[0] == comm else jiffies
                used[comm] = used.get(comm, 0.0) + 100.0 * cores * delta / span  # % of one core
            ranked = sorted(used.items(), key=lambda x: -x[1])
            runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
            self.samples.append((time.time(), busy, runnable, [(c, u) for c, u in ranked[: self.top] if u >= 1]))
            total, idle, procs = total2, idle2, procs2

    def lines(self) -> list[tuple[float, str]]:
        """Timeline rows: (time, "cpu 97% busy, 14 runnable: clang 61%, cilium-agent 38%, ...")."""
        return [
            (t, f"{'':14} cpu {busy:3.0f}% busy, {runnable:2d} runnable: " + ", ".join(f"{c} {u:.0f}%" for c, u in top))
            for t, busy, runnable, top in self.samples
        ]


class EndpointWatch(Sampler):
    """Watches the EndpointSlices of some Services while a scenario runs and keeps every
    change: which addresses each Service had, on which node, ready or terminating, and when
    (``with EndpointWatch(cluster, [("e2e", "web"), ("kube-system", "kube-dns")]) as eps``)."""

    def __init__(self, cluster: KindCluster, services: Sequence[tuple[str, str]]) -> None:
        self.cluster, self.services = cluster, list(services)
        self.changes: list[tuple[float, str, str]] = []  # (time, service, its endpoints)
        super().__init__(self.services)

    def _run(self, target: tuple[str, str]) -> None:
        namespace, service = target
        from kubernetes import client, config, watch

        api = client.DiscoveryV1Api(
            config.new_client_from_config(config_file=str(self.cluster.kubeconfig), context=self.cluster.context)
        )
        slices: dict[str, list[str]] = {}
        last = ""
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    api.list_namespaced_endpoint_slice,
                    namespace,
                    label_selector=f"kubernetes.io/service-name={service}",
                    timeout_seconds=5,  # comes back to look at the stop flag
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "DELETED":
                        slices.pop(obj.metadata.name, None)
                    else:
                        slices[obj.metadata.name] = [describe_endpoint(e) for e in obj.endpoints or []]
                    now = ", ".join(sorted(x for eps in slices.values() for x in eps)) or "none"
                    if now != last:
                        self.changes.append((time.time(), service, now))
                        last = now
            except Exception:  # noqa: BLE001 - the API server is busy or restarting: watch again
                self._stop.wait(1)

    def lines(self) -> list[tuple[float, str]]:
        """Timeline rows: (time, "endpoints web: 10.245.1.5@worker2, 192.168.3.4@worker3 terminating")."""
        return [(t, f"{'':14} endpoints {svc}: {eps}") for t, svc, eps in self.changes]


def describe_endpoint(endpoint: Any) -> str:
    """``10.245.1.5@worker2``, with ``not-ready`` / ``terminating`` when so."""
    conditions = endpoint.conditions
    state = ""
    if conditions is not None and conditions.terminating:
        state = " terminating"
    elif conditions is not None and conditions.ready is False:
        state = " not-ready"
    return f"{(endpoint.addresses or ['?'])[0]}@{short_node(endpoint.node_name or '?')}{state}"
