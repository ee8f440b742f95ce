"""Restart the pods left on a node so they are networked by the node's current CNI; and the
parts swap-cni and restore-cni share around it: restarting the node's Cilium agent, and
finishing on the CNI the step wanted (checked, rebooted if the plan asks, pods restarted).

Shared by swap-cni and restore-cni. Only pods whose address is on the wrong side of the
Cilium cluster pool are restarted, so running it again after a crash restarts nothing
twice. Host-network pods and the CNI agents themselves are left alone.
"""

from __future__ import annotations

import ipaddress

from migrate.errors import NotFound, StepFailed
from migrate.model import Cni, PodInfo
from migrate.steps import StepContext
from migrate.steps.reboot import reboot

AGENT_PREFIXES = ("cilium-", "calico-node-")


def in_pool(pod: PodInfo, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(pod.ip) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


def restart_pods(ctx: StepContext, node: str, *, want_cilium: bool) -> int:
    """Delete pods networked by the other CNI; their controllers re-create them."""
    restarted = 0
    for pod in ctx.cluster.pods_on_node(node):
        if pod.host_network or pod.mirror or pod.deleting or not pod.ip:
            continue
        if pod.name.startswith(AGENT_PREFIXES):
            continue
        if in_pool(pod, ctx.options.cilium_pool_cidr) == want_cilium:
            continue
        try:
            ctx.cluster.delete_pod(pod)
            restarted += 1
        except NotFound:
            continue  # already gone: nothing to restart
    return restarted


def restart_agent(ctx: StepContext, node: str, agent: PodInfo | None) -> str:
    """Delete the node's Cilium agent (when it has one) and wait for its successor Ready."""
    if agent is not None:
        ctx.cluster.delete_pod(agent)
    ctx.check_stop(node)
    ctx.cluster.wait_cilium_agent_ready(node, agent.uid if agent else "", ctx.agent_timeout)
    return "cilium agent restarted"


def finish_on(ctx: StepContext, node: str, cni: Cni, failure: str, parts: list[str]) -> str:
    """The step's summary once the node is on ``cni``: ``StepFailed`` (``failure``, with
    ``{node}`` and ``{found}``) when it is not, then the reboot the plan asks for and the
    restart of the pods the other CNI networked."""
    found = ctx.cluster.node_cni(node)
    if found is not cni:
        raise StepFailed(
            failure.format(node=node, found=found.value),
            node=node,
            check="cni",
            observed=found.value,
            expected=cni.value,
        )
    if ctx.options.reboot:
        parts.append(reboot(ctx, node))
    restarted = restart_pods(ctx, node, want_cilium=cni is Cni.CILIUM)
    parts.append(f"{restarted} pod(s) restarted")
    return ", ".join(parts)
