"""The executor Lease as a fence (migrate/backends/kubernetes/lease.py): while held, every
request of the run asks it first; past the holder's deadline (two thirds of the Lease after
the last renewal that got through) nothing more is sent, and a lost Lease is not released.
Over an in-memory Lease with resourceVersion compare-and-swap and a clock the test moves
(the renewer's own attempts, every 2 s of real time, fail while the test moves it);
``tests/realcluster/test_lease_real.py`` has the same on a real control plane."""

from __future__ import annotations

import copy
import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from migrate.backends.kubernetes import KubernetesCluster
from migrate.backends.kubernetes.lease import LeaseLock
from migrate.errors import Conflict, LeaseLost, LockHeld

UNAVAILABLE = client.ApiException(status=503, reason="ServiceUnavailable")


class Leases:
    """The three Lease calls of the coordination API, one Lease, resourceVersion checked."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.writes: list[dict[str, Any]] = []
        self.fail: Exception | None = None  # every call raises it, while set

    def _reply(self) -> SimpleNamespace:
        return SimpleNamespace(data=json.dumps(self.lease).encode())  # as read with _preload_content=False

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> SimpleNamespace:
        if self.fail is not None:
            raise self.fail
        if self.lease is None:
            raise client.ApiException(status=404, reason="NotFound")
        return self._reply()

    def store(self, body: dict[str, Any]) -> SimpleNamespace:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.writes.append(copy.deepcopy(body))
        return self._reply()

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> SimpleNamespace:
        if self.fail is not None:
            raise self.fail
        if self.lease is not None:
            raise client.ApiException(status=409, reason="AlreadyExists")
        return self.store(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> SimpleNamespace:
        if self.fail is not None:
            raise self.fail
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise client.ApiException(status=409, reason="Conflict")
        return self.store(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Requests:
    """A client call that records the timeout each request was sent with."""

    def __init__(self) -> None:
        self.timeouts: list[Any] = []

    def __call__(self, **kwargs: Any) -> str:
        self.timeouts.append(kwargs["_request_timeout"])
        return "ok"


def cluster_with(leases: Leases) -> KubernetesCluster:
    cluster = KubernetesCluster(client.ApiClient(client.Configuration()), "test", retry_seconds=0)
    cluster.coordination = leases  # type: ignore[assignment]
    cluster._namespace_made = True
    return cluster


def lock_over(leases: Leases, clock: Clock) -> tuple[KubernetesCluster, LeaseLock]:
    """A 30 s Lease over ``leases`` (its holder's deadline: 20 s after a renewal), on ``clock``."""
    cluster = cluster_with(leases)
    return cluster, LeaseLock(cluster, "me", duration=30, clock=clock)


def test_requests_wait_no_longer_than_the_holder_may_act_and_are_not_sent_after_its_deadline() -> None:
    leases, clock, requests = Leases(), Clock(), Requests()
    cluster, lock = lock_over(leases, clock)
    with pytest.raises(LeaseLost), lock.hold():
        leases.fail = UNAVAILABLE  # the renewer's attempts, on the real clock, do not get through
        assert cluster.rest.call("patch", requests) == "ok"
        clock.now += 15  # 5 s left of the 20
        cluster.rest.call("patch", requests)
        assert requests.timeouts == [20.0, 5.0]
        clock.now += 5
        cluster.rest.call("patch", requests)
    assert len(requests.timeouts) == 2, "a request was sent after the deadline"
    assert [w["spec"]["holderIdentity"] for w in leases.writes] == ["me"], "a lost Lease was released"
    with pytest.raises(LeaseLost, match="is 20s old"):
        cluster.rest.call("patch", requests)  # and nothing more in this process


def test_a_renewal_moves_the_deadline_and_a_clean_end_releases_the_lease() -> None:
    leases, clock, requests = Leases(), Clock(), Requests()
    cluster, lock = lock_over(leases, clock)
    with lock.hold():
        leases.fail = UNAVAILABLE
        clock.now += 19
        leases.fail = None
        lock.renew()
        leases.fail = UNAVAILABLE
        clock.now += 19
        cluster.rest.call("patch", requests)
        assert requests.timeouts == [1.0]
        leases.fail = None
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == ""
    assert cluster.rest.fence is None
    cluster.rest.call("patch", requests)  # no longer fenced: the Lease was given back


def test_a_renewal_that_finds_another_holder_loses_the_lease_at_once() -> None:
    leases, clock = Leases(), Clock()
    cluster, lock = lock_over(leases, clock)
    lock.acquire()
    assert leases.lease is not None
    taken = copy.deepcopy(leases.lease)
    taken["spec"]["holderIdentity"] = "another machine"
    leases.store(taken)  # its takeover: a write, at a new resourceVersion
    with pytest.raises(LockHeld, match="another machine"):
        lock.renew()


def test_a_renewal_whose_answer_was_lost_is_renewed_at_its_version_next_time() -> None:
    leases, clock = Leases(), Clock()
    cluster, lock = lock_over(leases, clock)
    lock.acquire()
    assert leases.lease is not None
    leases.store(copy.deepcopy(leases.lease))  # ours, written; the answer never came back
    with pytest.raises(Conflict):
        lock.renew()
    clock.now += 2
    lock.renew()
    assert lock.remaining() == 20.0


def test_renewals_that_fail_lose_the_lease_at_the_deadline_and_say_so() -> None:
    """The renewer in its thread, on the real clock: a 1.5 s Lease (renewed every 0.1 s)
    whose renewals fail is lost 1 s after it was taken, and the run is told (``on_lost``)."""
    leases = Leases()
    cluster = cluster_with(leases)
    told = threading.Event()
    why: list[str] = []
    lock = LeaseLock(cluster, "me", duration=1.5, on_lost=lambda w: (why.append(w), told.set()))  # type: ignore[arg-type]
    with pytest.raises(LeaseLost), lock.hold():
        leases.fail = UNAVAILABLE
        assert told.wait(10), "the renewer never gave up"
        cluster.rest.call("patch", Requests())
    assert "last renewal" in why[0]
