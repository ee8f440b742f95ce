"""PodDisruptionBudgets in the simulated world, as the disruption controller computes their
status and as the eviction subresource decides with them: which budgets select a pod, and
which one refuses its eviction now. Pure functions of the ``World`` dict; nothing changes."""

from __future__ import annotations

import math
from typing import Any

from migrate.backends.simworld import World
from migrate.model import LabelSelector, frozen_map


# -- disruption budgets --------------------------------------------------------------------
def _scaled(value: str, total: int) -> int:
    if value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def pdb_status(world: World, pdb: dict[str, Any]) -> dict[str, int]:
    """currentHealthy, desiredHealthy, expectedPods and disruptionsAllowed, as the
    disruption controller computes them (expected from the owning controllers' scale)."""
    selector = pdb_selector(pdb)
    selected = [
        p for p in world["pods"].values() if p["namespace"] == pdb["namespace"] and selector.matches(p["labels"])
    ]
    owners = {(p["owner"]["kind"], p["owner"]["name"]) for p in selected if p["owner"]}
    expected = sum(
        w["replicas"]
        for w in world["workloads"]
        if (w["kind"], w["name"]) in owners and w["namespace"] == pdb["namespace"]
    )
    expected = expected or len(selected)
    healthy = sum(1 for p in selected if p["ready"])
    if "minAvailable" in pdb:
        desired = _scaled(pdb["minAvailable"], expected)
    else:
        desired = max(expected - _scaled(pdb["maxUnavailable"], expected), 0)
    return {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": max(healthy - desired, 0),
    }


def pdb_selector(pdb: dict[str, Any]) -> LabelSelector:
    """A world PDB's selector: ``selector`` (matchLabels) and, optionally, ``matchExpressions``
    as [key, operator, [values]] rows (In, NotIn, Exists, DoesNotExist)."""
    return LabelSelector(
        match_labels=frozen_map(pdb["selector"]),
        match_expressions=tuple((k, op, tuple(values)) for k, op, values in pdb.get("matchExpressions") or ()),
    )


def selecting_pdbs(world: World, pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in world["pdbs"] if p["namespace"] == pod["namespace"] and pdb_selector(p).matches(pod["labels"])]


def blocking_pdb(world: World, pod: dict[str, Any]) -> str | None:
    """The PDB that refuses evicting ``pod`` now, or None when eviction is allowed."""
    for pdb in selecting_pdbs(world, pod):
        status = pdb_status(world, pdb)
        if pod["ready"] and status["disruptionsAllowed"] < 1:
            return f"{pdb['namespace']}/{pdb['name']}"
        if not pod["ready"] and status["currentHealthy"] < status["desiredHealthy"]:
            return f"{pdb['namespace']}/{pdb['name']}"
    return None
