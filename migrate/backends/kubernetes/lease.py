"""The executor lock on a real cluster: a coordination.k8s.io Lease in the tool's namespace,
taken with a create (or a resourceVersion-checked replace of an expired one), renewed from a
thread while the run holds it, and the fence every request of the run passes.

The timing follows client-go's leader election (a 15 s lease given up 10 s after its last
renewal, renewed every 2 s), with a longer Lease: a migration needs no quick failover, and
an API server restarting (about 20 s in the lab, more on a loaded control plane) must not
stop the run.

    T                   a renewal gets through (renewTime T, leaseDurationSeconds D: 60)
    every 2 s (D/30)    the next renewal: one replace at the resourceVersion this holder
                        last wrote, so a Lease anyone else wrote since is never renewed
    T + 2D/3 (40 s)     the holder's deadline: if no renewal got through since T, the Lease
                        is lost; from then on every request fails with LeaseLost unsent
    T + D (60 s)        the Lease expires: another executor may take it over

So an API server away for less than about 38 s is ridden out (requests retry meanwhile),
and an executor cut off for longer stops 20 s before anyone else may start; once it has
lost the Lease it sends nothing more: no journal save, no Event, no release (a write; the
Lease expires on its own). While held, the Lease is ``cluster.rest.fence``: each request
asks ``remaining()`` first and waits no longer than that for its answer, so a request in
flight cannot outlive the holder's time either. A renewal that finds another holder loses
the Lease at once.

Time is read from CLOCK_BOOTTIME, which keeps counting while the machine sleeps (a laptop
suspended mid-run) and, like the monotonic clock, while the process is stopped (SIGSTOP).
What no client-side fence can stop: a request past the fence when the process froze (the
milliseconds between the fence's answer and the request on the wire) is sent when it thaws;
a renewal is then refused by the Lease's resourceVersion, a journal save by the journal's,
once the new holder has written them; any other write would go through. Helm (apply --install-cilium)
runs as one step: the Lease is checked when the step starts, not by helm itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kubernetes import client

from migrate.backends.rbac import TOOL_NAMESPACE
from migrate.errors import ClusterError, Conflict, LeaseLost, LockHeld, NotFound, PermanentError, TemporaryError

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

RENEW_EVERY = 1 / 30  # of the duration, between renewals (client-go's retry period: 2 s)
DEADLINE = 2 / 3  # of the duration after the last renewal sent: the holder stops acting

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def boottime() -> float:
    """Seconds on a clock that counts a machine's sleep too (CLOCK_BOOTTIME on Linux)."""
    return time.clock_gettime(_BOOTTIME)


class LeaseLock:
    """At most one executor per cluster: a coordination.k8s.io/v1 Lease, renewed in the
    background, taken over from another holder only after it expired."""

    NAME = "cni-migrate-executor"

    def __init__(
        self,
        cluster: KubernetesCluster,
        holder: str,
        duration: int = 60,
        on_lost: Callable[[str], None] | None = None,
        clock: Callable[[], float] = boottime,
    ) -> None:
        self.cluster = cluster
        self.holder = holder
        self.duration = duration
        self.on_lost = on_lost
        self._clock = clock
        self._stop = threading.Event()
        self._deadline = 0.0  # on ``clock``: until when this holder may act
        self._renewed = ""  # the renewTime of the last renewal that got through
        self._version = ""  # the Lease's resourceVersion as this holder last wrote it
        self._acquired = ""  # its acquireTime
        self._lost = ""  # why the Lease was lost; "" while it is held (or not yet taken)

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

    def _read(self, **kwargs: Any) -> dict[str, Any]:
        c = self.cluster
        return c.rest.json("get lease", self._api().read_namespaced_lease, self.NAME, TOOL_NAMESPACE, **kwargs)

    def _write(self, what: str, body: dict[str, Any], sent: float, **kwargs: Any) -> None:
        """Create (no resourceVersion) or replace the Lease with ``body``, built at ``sent``:
        once it is in, this holder may act until ``sent`` + two thirds of the duration."""
        api, rest = self._api(), self.cluster.rest
        if "resourceVersion" in body["metadata"]:
            args: tuple[Any, ...] = (api.replace_namespaced_lease, self.NAME, TOOL_NAMESPACE, body)
        else:
            args = (api.create_namespaced_lease, TOOL_NAMESPACE, body)
        kwargs.setdefault("fenced", False)  # taking it: this holder has no fence yet
        written = rest.json(what, *args, **kwargs)
        self._deadline = sent + self.duration * DEADLINE
        self._renewed = body["spec"]["renewTime"]
        self._acquired = body["spec"]["acquireTime"]
        self._version = str(written["metadata"]["resourceVersion"])

    def acquire(self) -> None:
        c = self.cluster
        c.ensure_namespace()
        try:
            current = self._read(fenced=False)
        except NotFound:
            try:
                sent = self._clock()
                self._write("create lease", self._body(), sent)
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
            sent = self._clock()
            self._write("take lease", self._body(current["metadata"]["resourceVersion"]), sent)
        except Conflict:
            raise LockHeld("another executor took the lease at the same moment; try again") from None

    def holder_now(self) -> str | None:
        """Who holds the Lease and has renewed it in time ("X, renewed T"), or None: a
        read only, for status."""
        try:
            current = self._read(fenced=False)
        except NotFound:
            return None
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or expired(spec):
            return None
        return f"{holder}, lease renewed {spec.get('renewTime')}"

    def remaining(self) -> float:
        """Seconds this holder may still act: the fence every request of the run asks first.
        Raises LeaseLost once that time is up or another executor took the Lease."""
        if not self._lost:
            left = self._deadline - self._clock()
            if left > 0:
                return left
            age = self._clock() - (self._deadline - self.duration * DEADLINE)
            self._lost = (
                f"its last renewal ({self._renewed}) is {age:.0f}s old: the API server was out of reach, or this "
                "process did not run (stopped, or the machine asleep)"
            )
        raise LeaseLost(
            f"lost the executor lease {TOOL_NAMESPACE}/{self.NAME}: {self._lost}; this executor sends nothing "
            f"more (another may take the lease over {self.duration}s after its last renewal); continue with "
            "'cni-migrate resume' (from this state home at once, from another once the lease has expired)"
        )

    def renew(self) -> None:
        """One attempt, bounded by the time left; raises LeaseLost (time is up), LockHeld
        (another holder) or a ClusterError (try again)."""
        self.remaining()
        sent = self._clock()
        body = self._body(self._version)
        body["spec"]["acquireTime"] = self._acquired
        # Fenced like every request of the run: asked again just before it is sent, so a
        # renewal the process froze in the middle of is not sent once it thaws too late.
        try:
            self._write("renew lease", body, sent, fenced=True, retry=False)
        except Conflict:
            # Written since by someone: another executor that took it over, or a renewal of
            # ours whose answer was lost. Only the second is renewed, at its version, next time.
            current = self._read(retry=False)
            holder = (current.get("spec") or {}).get("holderIdentity") or ""
            if holder != self.holder:
                raise LockHeld(f"another executor ({holder or 'nobody'}) took the lease over") from None
            self._version = current["metadata"]["resourceVersion"]
            raise

    def release(self) -> None:
        try:
            current = self._read(fenced=False)
            if (current.get("spec") or {}).get("holderIdentity") == self.holder:
                body = self._body(current["metadata"]["resourceVersion"], holder="")
                replace = self._api().replace_namespaced_lease
                self.cluster.rest.call("release lease", replace, self.NAME, TOOL_NAMESPACE, body, fenced=False)
        except (NotFound, Conflict, TemporaryError, PermanentError):
            pass  # it expires by itself; releasing early is only a courtesy

    def _renew_loop(self) -> None:
        gap = self.duration * RENEW_EVERY
        while not self._stop.wait(gap):
            try:
                self.renew()
                gap = self.duration * RENEW_EVERY
            except LeaseLost:
                break  # the deadline passed: ``remaining`` said why
            except LockHeld as exc:
                self._lost = exc.message
                break
            except ClusterError:
                # Not through this time: again at the next tick, and at the deadline at the latest.
                try:
                    gap = min(self.duration * RENEW_EVERY, self.remaining())
                except LeaseLost:
                    break
        if self._lost and not self._stop.is_set() and self.on_lost:
            self.on_lost(self._lost)

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        self._stop.clear()
        self._lost = ""
        rest = self.cluster.rest
        rest.fence = self
        renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            try:
                self.remaining()
            except LeaseLost:
                pass  # lost: the fence stays, and nothing more is sent (not even the release)
            else:
                rest.fence = None
                self.release()


def expired(spec: dict[str, Any]) -> bool:
    renew = spec.get("renewTime")
    if not renew:
        return True
    renewed = datetime.fromisoformat(renew.replace("Z", "+00:00"))
    return datetime.now(UTC) > renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
