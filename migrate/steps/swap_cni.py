"""Swap CNI: move one (cordoned, drained) node from Calico to Cilium.

Cilium's per-node migration: label the node so the ``cilium-default`` CiliumNodeConfig
selects it, restart the node's Cilium agent so it takes over the node's CNI
configuration, wait for the new agent to be Ready, then restart the pods still on the node
so they get Cilium addresses (after a reboot, when the plan asks for one). Each part
checks the live state first.
"""

from __future__ import annotations

from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import NodePlan
from migrate.steps import StepContext
from migrate.steps.restart import finish_on, restart_agent


def run(ctx: StepContext, node: NodePlan) -> str:
    cluster = ctx.cluster
    labelled = cluster.set_node_label(node.name, MIGRATION_LABEL, "true")
    agent = cluster.cilium_agent(node.name)
    parts = ["labelled" if labelled else "label present"]
    if labelled or cluster.node_cni(node.name) is not Cni.CILIUM or agent is None or not agent.ready:
        parts.append(restart_agent(ctx, node.name, agent))
    return finish_on(ctx, node.name, Cni.CILIUM, "{node}: CNI is still {found} after the Cilium agent restart", parts)
