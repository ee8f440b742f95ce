"""Restore CNI: put one node back on Calico (our rollback; Cilium's guide has none).

Remove the migration label, restart the node's Cilium agent so it lets go of the node,
restore Calico's CNI configuration through a node task (Cilium's conflist set aside,
Calico's ``*.cilium_bak`` renamed back), restart pods that have Cilium addresses, and
verify Calico is the node's CNI again. Safe to run on a node that never left Calico.
"""

from __future__ import annotations

from migrate.model import MIGRATION_LABEL, Cni
from migrate.plan import NodePlan
from migrate.ports import NodeTask
from migrate.steps import StepContext
from migrate.steps.restart import finish_on, restart_agent


def run(ctx: StepContext, node: NodePlan) -> str:
    cluster = ctx.cluster
    unlabelled = cluster.set_node_label(node.name, MIGRATION_LABEL, None)
    parts = ["label removed" if unlabelled else "no label"]
    if unlabelled or cluster.node_cni(node.name) is not Cni.CALICO:
        parts.append(restart_agent(ctx, node.name, cluster.cilium_agent(node.name)))
    if cluster.node_cni(node.name) is not Cni.CALICO:
        parts.append(cluster.run_node_task(node.name, NodeTask.RESTORE_CALICO_CNI, ctx.agent_timeout))
    return finish_on(ctx, node.name, Cni.CALICO, "{node}: CNI is {found} after restoring Calico's configuration", parts)
