"""Node Events are sent from their own thread: a slow or failing API never holds up or
fails a step, and closing sends what is queued."""

from __future__ import annotations

import threading

from migrate.output import NodeEvents
from migrate.ports import Event


class SlowCluster:
    """record_event blocks until released; can fail every call."""

    def __init__(self, fail: bool = False) -> None:
        self.posted: list[tuple[str, str, str, bool]] = []
        self.release = threading.Event()
        self.fail = fail

    def record_event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("API down")
        self.posted.append((node, reason, message, warning))


def started(node: str) -> Event:
    return Event("step-started", "p1", node=node, step="drain", phase="apply")


def test_events_queue_while_the_api_is_slow_and_close_sends_them_in_order() -> None:
    cluster = SlowCluster()
    events = NodeEvents(cluster)  # type: ignore[arg-type]
    for i in range(5):
        events(started(f"n{i}"))  # returns although no post has finished
    events(Event("step-finished", "p1", node="n0", step="drain", phase="apply", outcome="failed", message="x"))
    events(Event("node-state", "p1", node="n0", outcome="rolled-back"))
    events(Event("run-started", "p1"))  # not about a node: not posted
    events(Event("wait", "p1", node="n0"))  # progress chatter: not posted
    assert cluster.posted == []
    cluster.release.set()
    events.close()
    assert [p[0] for p in cluster.posted] == ["n0", "n1", "n2", "n3", "n4", "n0", "n0"]
    assert cluster.posted[0] == ("n0", "MigrationStepStarted", "cni-migrate plan p1: apply drain started", False)
    assert cluster.posted[5] == ("n0", "MigrationStepFailed", "cni-migrate plan p1: apply drain: x", True)
    assert cluster.posted[6][1:3] == ("MigrationNodeRolledBack", "cni-migrate plan p1: rolled-back")


def test_a_full_queue_drops_and_counts_and_a_failing_api_fails_nothing() -> None:
    cluster = SlowCluster(fail=True)
    events = NodeEvents(cluster, limit=2)  # type: ignore[arg-type]
    for i in range(10):
        events(started(f"n{i}"))
    # The sender holds one, the queue two: the other seven were dropped.
    assert 7 <= events.dropped <= 8
    cluster.release.set()
    events.close()  # the failures are swallowed
    assert cluster.posted == []
    events(started("later"))  # a closed sink starts again
    cluster.fail = False
    events.close()
    assert cluster.posted == [("later", "MigrationStepStarted", "cni-migrate plan p1: apply drain started", False)]
