"""The ground floor of the Kubernetes backend: every API request goes through ``Api``.

Errors are translated here, at one boundary, onto the MigrateError tree: 404 NotFound, 409
Conflict, 429/5xx/timeouts TemporaryError (with Retry-After), 401/403/422 PermanentError;
``call`` retries temporary errors with tenacity. Every request is counted (``requests``, and
by client method ``calls``). Lists are paged (``limit`` / ``continue``), read ahead and
decoded as plain JSON; ``watch`` yields events from a resourceVersion and raises an expired
watch (410) as a TemporaryError so callers re-list.

While an executor holds its Lease, ``fence`` is that Lease (``lease.LeaseLock``): every
request asks it first how long the holder may still act, is not sent when the answer is
"no longer" (``LeaseLost``), and waits for no answer, or between retries, past that time.
The Lease's own requests are the only ones sent unfenced.
"""

from __future__ import annotations

import collections
import gc
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import tenacity
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from migrate.errors import ClusterError, Conflict, LeaseLost, NotFound, PermanentError, TemporaryError

T = TypeVar("T")
PAGE = 500
Timeout = float | tuple[float, float]  # the client's _request_timeout: total, or (connect, read)


class Fence(Protocol):
    def remaining(self) -> float:
        """Seconds the executor may still act; raises LeaseLost when it may not."""
        ...


class Api:
    """Requests to one API server, with the client's configuration; thread-safe."""

    def __init__(self, api: client.ApiClient, *, retry_seconds: float = 120.0, request_timeout: float = 30.0) -> None:
        self.client = api
        self.retry_seconds = retry_seconds
        self.request_timeout = request_timeout
        self.requests = 0  # API requests made, for benchmarks and tests
        self.calls: collections.Counter[str] = collections.Counter()  # the same, by client method
        self._requests_lock = threading.Lock()  # the nodes of a wave call from their own threads
        self.fence: Fence | None = None  # the executor's Lease while it holds one (module docstring)

    def count(self, call: str) -> None:
        with self._requests_lock:
            self.requests += 1
            self.calls[call] += 1

    def call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        retry: bool = True,
        retry_seconds: float | None = None,
        fenced: bool = True,
        **kwargs: Any,
    ) -> T:
        """``fn`` called, its errors translated, temporary ones retried (``retry``) for
        ``retry_seconds``; ``fenced=False`` only for the Lease's own requests."""
        timeout: Timeout = kwargs.pop("_request_timeout", self.request_timeout)
        fence = self.fence if fenced else None

        def once() -> T:
            # Asked before every attempt: a lost Lease sends nothing more, and no request
            # waits for its answer past the time the holder may act.
            left = fence.remaining() if fence is not None else None
            self.count(getattr(fn, "__name__", "call"))
            try:
                return fn(*args, _request_timeout=capped(timeout, left), **kwargs)
            except TRANSPORT_ERRORS as exc:
                raise translate(exc, what) from exc

        def wait(state: tenacity.RetryCallState) -> float:
            delay = wait_delay(state)
            if fence is None:
                return delay
            try:
                return min(delay, fence.remaining())
            except LeaseLost:
                return 0.0  # the next attempt raises it at once

        if not retry:
            return once()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TemporaryError),
            stop=tenacity.stop_after_delay(self.retry_seconds if retry_seconds is None else retry_seconds),
            wait=wait,
            reraise=True,
        )
        return retrying(once)

    def json(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(self.body(what, fn, *args, **kwargs))  # type: ignore[no-any-return]

    def body(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """The response body of a call, undecoded."""
        return self.call(what, fn, *args, _preload_content=False, **kwargs).data  # type: ignore[no-any-return]

    def list_all(
        self, what: str, fn: Callable[..., Any], *args: Any, convert: Callable[[Any], Any] | None = None, **kwargs: Any
    ) -> tuple[list[Any], str]:
        """All items of a list call, a page at a time; returns (items, resourceVersion).
        ``convert`` turns each page's items into smaller objects as they arrive, so only a few
        pages of raw JSON are held at a time (30,000 raw pods are most of a plan's memory)."""
        items: list[Any] = []
        version = ""
        with collector_paused():
            for page in self.pages(what, fn, *args, **kwargs):
                raw = page.get("items") or []
                items.extend(map(convert, raw) if convert else raw)
                version = (page.get("metadata") or {}).get("resourceVersion", "")
        return items, version

    def pages(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The decoded pages of a list call. A list of several pages is read ahead: a thread
        asks for the next page as soon as this one's continue token is known (from its head,
        before it is decoded), so the API server encodes one page while we decode the one
        before (at 30,000 pods the two take about as long)."""

        def fetch(token: str | None) -> tuple[bytes | dict[str, Any], str]:
            body = self.body(what, fn, *args, limit=PAGE, _continue=token, **kwargs)
            head = list_head(body)
            if head is not None:
                return body, head.get("continue") or ""
            page = json.loads(body)  # not in the usual order: decode it here to find the token
            return page, (page.get("metadata") or {}).get("continue") or ""

        def decoded(page: bytes | dict[str, Any]) -> dict[str, Any]:
            return json.loads(page) if isinstance(page, bytes) else page

        first, token = fetch(None)
        if not token:
            yield decoded(first)
            return
        ahead: queue.Queue[tuple[bytes | dict[str, Any] | Exception | None, bool]] = queue.Queue(maxsize=2)
        stop = threading.Event()

        def read_ahead(token: str) -> None:
            try:
                while token and not stop.is_set():
                    page, token = fetch(token)
                    offer(ahead, (page, False), stop)
                offer(ahead, (None, True), stop)
            except Exception as exc:  # noqa: BLE001 - handed to the reader, raised there
                offer(ahead, (exc, True), stop)

        reader = threading.Thread(target=read_ahead, args=(token,), name="list-read-ahead", daemon=True)
        reader.start()
        try:
            yield decoded(first)
            while True:
                page, last = ahead.get()
                if isinstance(page, Exception):
                    raise page
                if page is not None:
                    yield decoded(page)
                if last:
                    return
        finally:
            # Done, or the reader gave up: either way the read-ahead stops (a request it has
            # under way ends on its own; its page is dropped).
            stop.set()

    def list_custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        try:
            items, _ = self.list_all(
                f"list {plural}.{group}",
                client.CustomObjectsApi(self.client).list_cluster_custom_object,
                group,
                version,
                plural,
            )
            return items
        except NotFound:
            return []  # the CRD is not installed: nothing of that kind exists

    def watch(
        self, what: str, fn: Callable[..., Any], *args: Any, resource_version: str, timeout: float, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after ``resource_version`` until ``timeout``; raises NotFound-like 410 as
        TemporaryError("expired") so callers re-list."""
        # A half-open connection must not outlive the server-side timeout: the client gives up
        # a little later and the caller re-lists.
        limit: Timeout = (10, max(timeout, 1) + 15)
        left = self.fence.remaining() if self.fence is not None else None
        if left is not None:
            # Under a Lease the server ends the watch a second before the holder's time is up
            # (the caller watches again, asking the fence again); a silent connection is given
            # up at that time.
            timeout = min(timeout, left - 1)
            limit = capped(limit, left)
        w = watch.Watch()
        self.count("watch " + getattr(fn, "__name__", "call"))
        try:
            for event in w.stream(
                fn,
                *args,
                resource_version=resource_version,
                timeout_seconds=max(int(timeout), 1),
                allow_watch_bookmarks=True,
                _request_timeout=limit,
                **kwargs,
            ):
                kind = event["type"]
                obj = event["raw_object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise TemporaryError(f"{what}: watch expired", delay=0.0, expired=True)
                    raise TemporaryError(f"{what}: watch error {obj.get('message', '')}")
                if kind == "BOOKMARK":
                    # Only a resourceVersion, no object: callers re-list on expiry instead.
                    continue
                yield kind, obj
        except TRANSPORT_ERRORS as exc:
            raise translate(exc, what) from exc
        finally:
            w.stop()


def capped(timeout: Timeout, left: float | None) -> Timeout:
    """A request's timeout cut to ``left`` seconds (None: as it is)."""
    if left is None:
        return timeout
    if isinstance(timeout, tuple):
        return (min(timeout[0], left), min(timeout[1], left))
    return min(timeout, left)


def translate(exc: Exception, what: str) -> ClusterError:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(reason, urllib3.exceptions.SSLError):
        # A certificate problem does not go away by retrying.
        return PermanentError(f"{what}: TLS failed: {str(reason or exc).splitlines()[0][:200]}")
    if isinstance(exc, ApiException):
        status = exc.status or 0
        message = status_message(exc) or exc.reason or str(status)
        text = f"{what}: {message} (HTTP {status})"
        if status == 404:
            return NotFound(text)
        if status == 409:
            return Conflict(text)
        if status == 429 or status >= 500 or status == 0:
            return TemporaryError(text, delay=retry_after(exc))
        return PermanentError(text, status=status)
    return TemporaryError(f"{what}: {type(exc).__name__}: {exc}", delay=1.0)


def status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


def retry_after(exc: ApiException) -> float:
    try:
        return max(float((exc.headers or {}).get("Retry-After", 1)), 0.1)
    except (TypeError, ValueError):
        return 1.0


TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError)


def wait_delay(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    server = exc.delay if isinstance(exc, TemporaryError) else 1.0
    return min(max(server, 0.2 * 2 ** (state.attempt_number - 1)), 10.0)


LIST_HEAD = re.compile(rb'^\{"kind":"[A-Za-z]*List","apiVersion":"[^"]*","metadata":(\{[^{}]*\})')


def list_head(body: bytes) -> dict[str, Any] | None:
    """The ListMeta (resourceVersion, continue) of a built-in list's body, read from its head
    without decoding the items: the API server writes kind, apiVersion and metadata first.
    None when the body does not start that way (custom resources put items first)."""
    found = LIST_HEAD.match(body[:4096])
    return json.loads(found.group(1)) if found else None  # type: ignore[no-any-return]


_collector = {"holds": 0, "paused": False}


_collector_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while lists are decoded (the reads of every thread
    that asks, until the last is done). Decoding 30,000 pods makes millions of dicts and lists,
    each allocation counting towards a collection that walks everything still alive: measured
    at 1,000 nodes / 32,000 pods, 5.1 s to decode and map the pods with it on, 2.1 s with it
    off. Decoded JSON holds no reference cycles: reference counting frees all of it anyway."""
    with _collector_lock:
        if _collector["holds"] == 0 and gc.isenabled():
            gc.disable()
            _collector["paused"] = True
        _collector["holds"] += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector["holds"] -= 1
            if _collector["holds"] == 0 and _collector["paused"]:
                _collector["paused"] = False
                gc.enable()


def offer(ahead: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` once there is room, unless the reader has gone (``stop``)."""
    while not stop.is_set():
        try:
            ahead.put(item, timeout=0.2)
            return
        except queue.Full:
            continue
