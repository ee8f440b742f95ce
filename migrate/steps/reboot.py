"""Reboot a node through a node task, once, and wait for it to come back Ready.

Shared by swap-cni and restore-cni when the plan says ``reboot`` (``plan --reboot-nodes``):
a reboot clears what a CNI leaves in the kernel (routes, interfaces, iptables rules) and
restarts every pod sandbox on the new CNI. The reboot is the host's init's (``systemctl
reboot``, or ``shutdown -r now``), with a bounded sysrq fallback armed on the host (the
Kubernetes backend's ``hostreboot``); once the node is back, which of the two ran is read
from the node and written in the step's message, so the journal says it. Idempotent across a crash: before asking for
the reboot the node is labelled with its current boot ID; a node whose boot ID has moved
on since is not rebooted again, only waited for.
"""

from __future__ import annotations

from migrate.ports import Event, NodeTask
from migrate.steps import StepContext

REBOOT_LABEL = "cni-migrate.io/reboot-from-boot"


def reboot(ctx: StepContext, node: str) -> str:
    cluster = ctx.cluster
    info = cluster.get_node(node)
    marker = info.labels.get(REBOOT_LABEL)
    if marker is None:
        marker = info.boot_id or "unknown"
        cluster.set_node_label(node, REBOOT_LABEL, marker)
    if info.boot_id in (marker, ""):
        ctx.check_stop(node)
        asked = cluster.run_node_task(node, NodeTask.REBOOT, ctx.agent_timeout)
        ctx.emit(
            Event("wait", ctx.plan_id, node=node, message=f"{asked}; waiting up to {ctx.agent_timeout:g}s for it back")
        )
        said = "rebooted"
    else:
        said = "reboot found done"
    back = cluster.wait_node_rebooted(node, marker, ctx.agent_timeout)
    # Which way it went (the init's reboot, or the sysrq fallback), as the node recorded it.
    how = cluster.run_node_task(node, NodeTask.REBOOT_RECORD, ctx.agent_timeout)
    cluster.set_node_label(node, REBOOT_LABEL, None)
    return f"{said} (boot {back.boot_id[:8] or '?'}; {how})"
