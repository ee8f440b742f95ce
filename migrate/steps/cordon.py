"""Cordon: mark the node unschedulable so nothing new lands on it during its swap."""

from __future__ import annotations

from migrate.plan import NodePlan
from migrate.steps import StepContext


def run(ctx: StepContext, node: NodePlan) -> str:
    if ctx.cluster.set_unschedulable(node.name, True):
        return "cordoned"
    return "already cordoned"
