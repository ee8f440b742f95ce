"""The one list-then-watch loop of the Kubernetes backend: every wait (pods gone, a new
Cilium agent Ready, a node back from its reboot, a helper pod finished) and the traffic
watch's informer go through ``list_then_watch``.

The loop: read the collection (a list; or what the caller already holds, e.g. a pod it has
just created), remember its resourceVersion, watch from there, and follow the version of
every event seen. A watch that ends on its own is opened again from the last version; one
that expires (410) or drops re-reads the collection first. It stops when a callback returns
a value, the deadline passes, or ``stop`` says so. Errors of a read are the caller's (``Api``
has retried them already); a watch's temporary errors only make the loop re-read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from migrate.errors import TemporaryError

if TYPE_CHECKING:
    from migrate.backends.kubernetes.api import Api

T = TypeVar("T")
Objects = tuple[list[dict[str, Any]], str]  # items and the resourceVersion they were read at


@dataclass(frozen=True)
class Collection:
    """What to list and watch: a list call of the client with its positional arguments (a
    namespace) and selectors. ``what`` names it in requests' errors ("list pods: ...")."""

    what: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    selectors: Mapping[str, str] = field(default_factory=dict)  # label_selector, field_selector

    def read(self, rest: Api) -> Objects:
        # ``convert`` is named so the type checker knows no selector stands in for it.
        return rest.list_all(f"list {self.what}", self.fn, *self.args, convert=None, **self.selectors)


def list_then_watch(
    rest: Api,
    collection: Collection,
    on_event: Callable[[str, dict[str, Any]], T | None],
    *,
    on_list: Callable[[list[dict[str, Any]]], T | None] | None = None,
    deadline: float | None = None,
    stop: Callable[[], bool] | None = None,
    watch_seconds: float | None = None,
    first: Objects | None = None,
    read: Callable[[], Objects] | None = None,
) -> T | None:
    """Until ``on_list`` or ``on_event`` returns something other than None (returned), the
    monotonic ``deadline`` passes or ``stop()`` is true (None returned).

    ``on_list``: the items of each read (default: ``on_event("ADDED", item)`` for each, the
    first answer counts); ``first``: items already read, watched from without a list;
    ``read``: how to read again (default: list the collection); ``watch_seconds``: the
    length of each watch (default: the time left)."""
    if deadline is None and watch_seconds is None:
        raise ValueError("list_then_watch needs a deadline or a watch length")

    def listed(items: list[dict[str, Any]]) -> T | None:
        if on_list is not None:
            return on_list(items)
        for item in items:
            answer = on_event("ADDED", item)
            if answer is not None:
                return answer
        return None

    def going() -> bool:
        return (deadline is None or time.monotonic() < deadline) and not (stop is not None and stop())

    def length() -> float:
        if watch_seconds is not None:
            return watch_seconds
        return (deadline or 0.0) - time.monotonic()

    reread = read or (lambda: collection.read(rest))
    objects = first
    while going():
        items, version = objects if objects is not None else reread()
        answer = listed(items)
        if answer is not None:
            return answer
        try:
            while going():
                for kind, obj in rest.watch(
                    f"watch {collection.what}",
                    collection.fn,
                    *collection.args,
                    resource_version=version,
                    timeout=length(),
                    **collection.selectors,
                ):
                    version = obj["metadata"].get("resourceVersion", version)
                    answer = on_event(kind, obj)
                    if answer is not None:
                        return answer
        except TemporaryError:
            objects = None  # expired or dropped: read again, then watch from there
    return None
