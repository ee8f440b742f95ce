"""The Kubernetes backend reads a list of many pages with the next page asked for while one
is decoded: every item arrives once and in order, whichever way the API server orders a
page's fields, and an error on a later page reaches the caller."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from migrate.backends.kubernetes import KubernetesCluster
from migrate.backends.kubernetes.api import PAGE
from migrate.errors import PermanentError


def node(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"node-{i:05d}", "uid": f"uid-{i}"}, "status": {}}


class Pages:
    """A list call over ``count`` nodes, served ``limit`` at a time as the API server does:
    built-in lists write kind, apiVersion and metadata before the items; custom resources
    (``items_first``) the items first."""

    def __init__(self, count: int, items_first: bool = False, fail_at: int | None = None) -> None:
        self.count, self.items_first, self.fail_at = count, items_first, fail_at
        self.asked: list[str | None] = []

    def __call__(self, *, limit: int, _continue: str | None, **_: Any) -> SimpleNamespace:
        self.asked.append(_continue)
        if self.fail_at is not None and len(self.asked) > self.fail_at:
            raise client.ApiException(status=403, reason="Forbidden")
        start = int(_continue or 0)
        end = min(start + limit, self.count)
        meta: dict[str, Any] = {"resourceVersion": "42"}
        if end < self.count:
            meta["continue"] = str(end)
            meta["remainingItemCount"] = self.count - end
        items = [node(i) for i in range(start, end)]
        body = (
            {"apiVersion": "v1", "items": items, "kind": "NodeList", "metadata": meta}
            if self.items_first
            else {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}
        )
        return SimpleNamespace(data=json.dumps(body, separators=(",", ":")).encode())


def cluster_over(pages: Pages) -> KubernetesCluster:
    cluster = KubernetesCluster(client.ApiClient(client.Configuration()), "test", retry_seconds=0)
    cluster.core = SimpleNamespace(list_node=pages)  # type: ignore[assignment]
    return cluster


@pytest.mark.parametrize("items_first", [False, True], ids=["metadata-first", "items-first"])
@pytest.mark.parametrize("count", [0, 1, PAGE, PAGE + 1, 5 * PAGE + 7])
def test_every_node_is_read_once_in_order(count: int, items_first: bool) -> None:
    pages = Pages(count, items_first)
    names = [n.name for n in cluster_over(pages).nodes()]
    assert names == [f"node-{i:05d}" for i in range(count)]
    assert len(pages.asked) == max(1, -(-count // PAGE))  # one request a page, none twice
    assert len(set(pages.asked)) == len(pages.asked)


def test_an_error_on_a_later_page_reaches_the_caller() -> None:
    pages = Pages(5 * PAGE, fail_at=3)
    with pytest.raises(PermanentError):
        cluster_over(pages).nodes()
