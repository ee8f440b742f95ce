"""What a preflight check is: a pure function of the inventory, the nodes to migrate and the
plan's options to findings; and how a finding lists its subjects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from migrate.model import Inventory, NodeInfo
from migrate.plan import Finding, PlanOptions

Check = Callable[[Inventory, Sequence[NodeInfo], PlanOptions], list[Finding]]


def subjects(items: Iterable[str]) -> tuple[str, ...]:
    """A finding's subjects: each once, sorted."""
    return tuple(sorted(set(items)))
