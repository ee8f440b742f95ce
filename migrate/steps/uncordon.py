"""Uncordon: let pods back onto the node, only where the cordon is ours.

A node the plan found cordoned (``keep_cordoned``), or one cordoned by someone else since
(no ``cni-migrate.io/cordoned`` label, see ``steps.cordon``), stays cordoned. The node is
uncordoned before the label goes, so a crash in between is finished by running it again.
"""

from __future__ import annotations

from migrate.model import CORDON_LABEL
from migrate.plan import NodePlan
from migrate.steps import StepContext


def run(ctx: StepContext, node: NodePlan) -> str:
    if node.keep_cordoned:
        return "left cordoned: it was cordoned before the run"
    info = ctx.cluster.get_node(node.name)
    if CORDON_LABEL not in info.labels:
        if info.unschedulable:
            return "left cordoned: cordoned by someone else, not by this run"
        return "already schedulable"
    changed = ctx.cluster.set_unschedulable(node.name, False)
    ctx.cluster.set_node_label(node.name, CORDON_LABEL, None)
    return "uncordoned" if changed else "already schedulable"
