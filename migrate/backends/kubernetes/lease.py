"""The executor lock on a real cluster: a coordination.k8s.io Lease in the tool's namespace,
taken with a create (or a resourceVersion-checked replace of an expired one) and renewed
from a thread while the run holds it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.errors import ClusterError, Conflict, LockHeld, NotFound, PermanentError, TemporaryError

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster


class LeaseLock:
    """At most one executor per cluster: a coordination.k8s.io/v1 Lease, renewed in the
    background, taken over from another holder only after it expired."""

    NAME = "cni-migrate-executor"

    def __init__(
        self, cluster: KubernetesCluster, holder: str, duration: int = 30, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self.cluster = cluster
        self.holder = holder
        self.duration = duration
        self.on_lost = on_lost
        self._stop = threading.Event()

    def _api(self) -> client.CoordinationV1Api:
        return self.cluster.coordination

    def _body(self, rv: str | None = None, holder: str | None = None) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        meta: dict[str, Any] = {"name": self.NAME, "namespace": TOOL_NAMESPACE}
        if rv:
            meta["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.holder if holder is None else holder,
                "leaseDurationSeconds": self.duration,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def acquire(self) -> None:
        c = self.cluster
        c.ensure_namespace()
        try:
            current = c.rest.json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        except NotFound:
            try:
                c.rest.call("create lease", self._api().create_namespaced_lease, TOOL_NAMESPACE, self._body())
                return
            except Conflict:
                raise LockHeld("another executor took the lease at the same moment; try again") from None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.holder and not expired(spec):
            raise LockHeld(
                f"another executor ({holder}) holds the lease {TOOL_NAMESPACE}/{self.NAME} "
                f"until it expires (renewed {spec.get('renewTime')}, {spec.get('leaseDurationSeconds')}s)"
            )
        try:
            c.rest.call(
                "take lease",
                self._api().replace_namespaced_lease,
                self.NAME,
                TOOL_NAMESPACE,
                self._body(current["metadata"]["resourceVersion"]),
            )
        except Conflict:
            raise LockHeld("another executor took the lease at the same moment; try again") from None

    def holder_now(self) -> str | None:
        """Who holds the Lease and has renewed it in time ("X, renewed T"), or None: a
        read only, for status."""
        try:
            current = self.cluster.rest.json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        except NotFound:
            return None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or expired(spec):
            return None
        return f"{holder}, lease renewed {spec.get('renewTime')}"

    def renew(self) -> None:
        c = self.cluster
        current = c.rest.json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
        if (current.get("spec") or {}).get("holderIdentity") != self.holder:
            raise LockHeld("the executor lease was taken over by another executor")
        body = self._body(current["metadata"]["resourceVersion"])
        body["spec"]["acquireTime"] = current["spec"].get("acquireTime")
        c.rest.call("renew lease", self._api().replace_namespaced_lease, self.NAME, TOOL_NAMESPACE, body)

    def release(self) -> None:
        try:
            current = self.cluster.rest.json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE)
            if (current.get("spec") or {}).get("holderIdentity") == self.holder:
                self.cluster.rest.call(
                    "release lease",
                    self._api().replace_namespaced_lease,
                    self.NAME,
                    TOOL_NAMESPACE,
                    self._body(current["metadata"]["resourceVersion"], holder=""),
                )
        except (NotFound, Conflict, TemporaryError, PermanentError):
            pass  # it expires by itself; releasing early is only a courtesy

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            try:
                self.renew()
            except LockHeld as exc:
                if self.on_lost:
                    self.on_lost(exc.message)
                return
            except ClusterError:
                continue  # try again at the next tick; the lease lasts three ticks

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        self._stop.clear()
        renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            self.release()


def expired(spec: dict[str, Any]) -> bool:
    renew = spec.get("renewTime")
    if not renew:
        return True
    renewed = datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return datetime.now(UTC) > renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
