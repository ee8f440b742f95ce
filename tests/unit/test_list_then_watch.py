"""The Kubernetes backend's one list-then-watch loop: it lists, watches from the list's
resourceVersion (then from the last event's), re-lists when a watch expires, and stops at
an answer, the deadline, or a stop request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from migrate.backends.kubernetes.watching import Collection, list_then_watch
from migrate.errors import TemporaryError


def obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class FakeApi:
    """Serves scripted lists and watches; a watch script item that is an exception is raised."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.asked: list[tuple[str, str]] = []  # ("list", "") or ("watch", from version)

    def list_all(self, what: str, fn: Any, *args: Any, convert: Any = None, **kw: Any) -> tuple[list[Any], str]:
        self.asked.append(("list", ""))
        return self.lists.pop(0)

    def watch(self, what: str, fn: Any, *args: Any, resource_version: str, timeout: float, **kw: Any) -> Iterator[Any]:
        self.asked.append(("watch", resource_version))
        for event in self.watches.pop(0) if self.watches else []:
            if isinstance(event, Exception):
                raise event
            yield event


PODS = Collection("pods", lambda **_: None, ("ns",), {"label_selector": "a=b"})


def named(name: str):
    return lambda kind, o: o if kind != "DELETED" and o["metadata"]["name"] == name else None


def test_an_answer_in_the_list_needs_no_watch() -> None:
    api = FakeApi([([obj("a", "5"), obj("b", "6")], "7")], [])
    assert list_then_watch(api, PODS, named("b"), deadline=time.monotonic() + 5) == obj("b", "6")  # type: ignore[arg-type]
    assert api.asked == [("list", "")]


def test_an_expired_watch_relists_and_a_quiet_end_watches_on_from_the_last_event() -> None:
    api = FakeApi(
        [([], "10"), ([obj("x", "20")], "21")],
        [
            [("ADDED", obj("x", "11")), TemporaryError("expired", expired=True)],
            [("MODIFIED", obj("x", "22"))],
            [("ADDED", obj("a", "23"))],
        ],
    )
    assert list_then_watch(api, PODS, named("a"), deadline=time.monotonic() + 5) == obj("a", "23")  # type: ignore[arg-type]
    assert api.asked == [("list", ""), ("watch", "10"), ("list", ""), ("watch", "21"), ("watch", "22")]


def test_the_deadline_ends_the_wait_without_an_answer() -> None:
    api = FakeApi([([], "1")] * 100, [])
    assert list_then_watch(api, PODS, named("a"), deadline=time.monotonic() + 0.05) is None  # type: ignore[arg-type]


def test_objects_already_read_are_watched_from_and_read_again_their_own_way() -> None:
    api = FakeApi([], [[TemporaryError("dropped")], [("MODIFIED", obj("p", "9"))]])
    again = []

    def read() -> tuple[list[dict[str, Any]], str]:
        again.append(1)
        return [obj("p", "8")], "8"

    found = list_then_watch(
        api,  # type: ignore[arg-type]
        PODS,
        lambda kind, o: o if o["metadata"]["resourceVersion"] == "9" else None,
        deadline=time.monotonic() + 5,
        first=([obj("p", "3")], "3"),
        read=read,
    )
    assert found == obj("p", "9")
    assert api.asked == [("watch", "3"), ("watch", "8")] and again == [1]


def test_a_follower_stops_when_asked() -> None:
    api = FakeApi([([obj("a", "1")], "1")], [])
    listed: list[int] = []
    result = list_then_watch(
        api,  # type: ignore[arg-type]
        PODS,
        lambda kind, o: None,
        on_list=lambda items: listed.append(len(items)),
        stop=lambda: len(api.asked) == 3,
        watch_seconds=10,
    )
    assert result is None and listed == [1]
    assert api.asked == [("list", ""), ("watch", "1"), ("watch", "1")]
