"""Swap CNI: move one (cordoned, drained) node from Calico to Cilium.

Cilium's per-node migration: label the node so the ``cilium-default`` CiliumNodeConfig
selects it, restart the node's Cilium agent so it takes over the node's CNI
configuration, wait for the new agent to be Ready, then restart the pods still on the node
so they get Cilium addresses (after a reboot, when the plan asks for one). Each part
checks the live state first.
"""

from __future__ import annotations

from migrate.errors import StepFailed
from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import NodePlan
from migrate.steps import StepContext
from migrate.steps.reboot import reboot
from migrate.steps.restart import restart_pods


def run(ctx: StepContext, node: NodePlan) -> str:
    cluster = ctx.cluster
    labelled = cluster.set_node_label(node.name, MIGRATION_LABEL, "true")
    agent = cluster.cilium_agent(node.name)
    parts = ["labelled" if labelled else "label present"]
    if labelled or cluster.node_cni(node.name) is not Cni.CILIUM or agent is None or not agent.ready:
        if agent is not None:
            cluster.delete_pod(agent)
        ctx.check_stop(node.name)
        cluster.wait_cilium_agent_ready(node.name, agent.uid if agent else "", ctx.agent_timeout)
        parts.append("cilium agent restarted")
    cni = cluster.node_cni(node.name)
    if cni is not Cni.CILIUM:
        raise StepFailed(
            f"{node.name}: CNI is still {cni.value} after the Cilium agent restart",
            node=node.name,
            check="cni",
            observed=cni.value,
            expected="cilium",
        )
    if ctx.options.reboot:
        parts.append(reboot(ctx, node.name))
    restarted = restart_pods(ctx, node.name, want_cilium=True)
    parts.append(f"{restarted} pod(s) restarted")
    return ", ".join(parts)
