"""Uncordon: let pods back onto the node, unless it was cordoned before the run."""

from __future__ import annotations

from migrate.plan import NodePlan
from migrate.steps import StepContext


def run(ctx: StepContext, node: NodePlan) -> str:
    if node.keep_cordoned:
        return "left cordoned: it was cordoned before the run"
    if ctx.cluster.set_unschedulable(node.name, False):
        return "uncordoned"
    return "already schedulable"
