"""Restore CNI: put one node back on Calico (our rollback; Cilium's guide has none).

Remove the migration label, restart the node's Cilium agent so it lets go of the node,
restore Calico's CNI configuration through a node task (Cilium's conflist set aside,
Calico's ``*.cilium_bak`` renamed back), restart pods that have Cilium addresses, and
verify Calico is the node's CNI again. Safe to run on a node that never left Calico.
"""

from __future__ import annotations

from migrate.errors import StepFailed
from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import NodePlan
from migrate.ports import NodeTask
from migrate.steps import StepContext
from migrate.steps.reboot import reboot
from migrate.steps.restart import restart_pods


def run(ctx: StepContext, node: NodePlan) -> str:
    cluster = ctx.cluster
    unlabelled = cluster.set_node_label(node.name, MIGRATION_LABEL, None)
    parts = ["label removed" if unlabelled else "no label"]
    if unlabelled or cluster.node_cni(node.name) is not Cni.CALICO:
        agent = cluster.cilium_agent(node.name)
        if agent is not None:
            cluster.delete_pod(agent)
        ctx.check_stop(node.name)
        cluster.wait_cilium_agent_ready(node.name, agent.uid if agent else "", ctx.agent_timeout)
        parts.append("cilium agent restarted")
    if cluster.node_cni(node.name) is not Cni.CALICO:
        parts.append(cluster.run_node_task(node.name, NodeTask.RESTORE_CALICO_CNI, ctx.agent_timeout))
    cni = cluster.node_cni(node.name)
    if cni is not Cni.CALICO:
        raise StepFailed(
            f"{node.name}: CNI is {cni.value} after restoring Calico's configuration",
            node=node.name,
            check="cni",
            observed=cni.value,
            expected="calico",
        )
    if ctx.options.reboot:
        parts.append(reboot(ctx, node.name))
    restarted = restart_pods(ctx, node.name, want_cilium=False)
    parts.append(f"{restarted} pod(s) restarted")
    return ", ".join(parts)
