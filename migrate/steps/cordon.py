"""Cordon: mark the node unschedulable so nothing new lands on it during its swap.

The node is first labelled ``cni-migrate.io/cordoned`` (the label says the cordon is
ours), then cordoned; a node found cordoned without that label was cordoned by someone
else, whenever that happened, and uncordon leaves it so. A crash between the two writes
leaves the label on a schedulable node: the step run again cordons it.
"""

from __future__ import annotations

from migrate.model import CORDON_LABEL
from migrate.plan import NodePlan
from migrate.steps import StepContext


def run(ctx: StepContext, node: NodePlan) -> str:
    info = ctx.cluster.get_node(node.name)
    if info.unschedulable and CORDON_LABEL not in info.labels:
        return "already cordoned by someone else: it stays cordoned after the run"
    ctx.cluster.set_node_label(node.name, CORDON_LABEL, "true")
    if ctx.cluster.set_unschedulable(node.name, True):
        return "cordoned"
    return "already cordoned"
