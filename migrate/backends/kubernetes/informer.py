"""The traffic watch's informer: its probers and reports kept by one list + watch each for
the whole run, so a validation reads them without a request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrate import traffic
from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.errors import ClusterError, LeaseLost

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


class TrafficCache:
    """The traffic watch's probers and reports, kept by one list + watch each for the whole
    run (an informer), so a validation costs no request: it waits until every prober that
    runs has written again, or its timeout. Watch threads are daemons that re-list when a
    watch expires or drops, and end within ``WATCH_SECONDS`` of ``close``."""

    WATCH_SECONDS = 10

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.changed = threading.Condition()
        self.reports: dict[str, tuple[traffic.Report, int]] = {}  # node -> (report, writes seen)
        self.probers: dict[str, str] = {}  # node -> prober pod, starting or running
        self.listed = {"reports": False, "probers": False}
        self._closed = threading.Event()
        core = cluster.core
        follows: list[tuple[str, Callable[..., Any], str, Callable[[str, dict[str, Any]], None]]] = [
            ("reports", core.list_namespaced_config_map, f"{traffic.REPORT_LABEL}=true", self._report),
            ("probers", core.list_namespaced_pod, f"{traffic.APP_LABEL}={traffic.NAME}", self._prober),
        ]
        for follow in follows:
            threading.Thread(target=self._follow, args=follow, name=f"traffic-{follow[0]}", daemon=True).start()

    def close(self) -> None:
        self._closed.set()

    def _follow(
        self, what: str, fn: Callable[..., Any], selector: str, apply: Callable[[str, dict[str, Any]], None]
    ) -> None:
        def listed(items: list[dict[str, Any]]) -> None:
            with self.changed:
                (self.reports if what == "reports" else self.probers).clear()
                for obj in items:
                    apply("ADDED", obj)
                self.listed[what] = True
                self.changed.notify_all()

        def seen(kind: str, obj: dict[str, Any]) -> None:
            with self.changed:
                apply(kind, obj)
                self.changed.notify_all()

        followed = Collection(f"traffic {what}", fn, (traffic.NAMESPACE,), {"label_selector": selector})
        while not self._closed.is_set():
            try:
                list_then_watch(
                    self.cluster.rest,
                    followed,
                    seen,
                    on_list=listed,
                    stop=self._closed.is_set,
                    watch_seconds=self.WATCH_SECONDS,
                )
            except ClusterError:
                # Refused, or the API server gone past the list's retries: list again after a
                # moment. Waiters keep their own timeout, and a prober that stays unseen is
                # reported silent.
                self._closed.wait(0.5)
            except LeaseLost:
                return  # the run is over and may send nothing more: its waiters time out

    def _report(self, kind: str, obj: dict[str, Any]) -> None:
        report = traffic.Report.from_data(obj.get("data") or {})
        if kind == "DELETED":
            self.reports.pop(report.node, None)
        else:
            seen = self.reports.get(report.node, (report, 0))[1]
            self.reports[report.node] = (report, seen + 1)

    def _prober(self, kind: str, obj: dict[str, Any]) -> None:
        node, name = (obj.get("spec") or {}).get("nodeName"), obj["metadata"]["name"]
        if not node:
            return
        alive = (obj.get("status") or {}).get("phase", "Pending") in ("Pending", "Running")
        if kind != "DELETED" and alive and not obj["metadata"].get("deletionTimestamp"):
            self.probers[node] = name
        elif self.probers.get(node) == name:
            del self.probers[node]

    def _wait(self, timeout: float, done: Callable[[], bool]) -> None:
        with self.changed:
            self.changed.wait_for(lambda: all(self.listed.values()) and done(), timeout)

    def first_reports(self, timeout: float) -> tuple[dict[str, str], list[str]]:
        """Wait until every prober has reported once: (probers, nodes still silent)."""
        self._wait(timeout, lambda: bool(self.probers) and set(self.probers) <= set(self.reports))
        with self.changed:
            return dict(self.probers), sorted(set(self.probers) - set(self.reports))

    def fresh_reports(self, timeout: float, node: str) -> tuple[list[traffic.Report], list[str]]:
        """Wait until every prober has written again since now (or ``timeout``): those running
        now or when the wait began, and ``node``'s. A swap restarts its node's prober pod, so a
        node may have none running for a moment (the old one terminating, the DaemonSet's
        next not yet created): the validated node's verdict needs its own fresh report, and
        every window wants each node's evidence. (Their reports, and the nodes whose prober
        did not write.)"""
        with self.changed:
            before = {n: seen for n, (_, seen) in self.reports.items()}
            running = set(self.probers)

        def written(name: str) -> bool:
            return self.reports.get(name, (None, 0))[1] > before.get(name, 0)

        def awaited() -> set[str]:
            return {*running, *self.probers, node}

        self._wait(timeout, lambda: all(written(n) for n in awaited()))
        with self.changed:
            silent = sorted(n for n in awaited() if not written(n))
            return [r for n, (r, _) in sorted(self.reports.items()) if n in awaited()], silent
