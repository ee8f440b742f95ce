"""Restart the pods left on a node so they are networked by the node's current CNI.

Shared by swap-cni and restore-cni. Only pods whose address is on the wrong side of the
Cilium cluster pool are restarted, so running it again after a crash restarts nothing
twice. Host-network pods and the CNI agents themselves are left alone.
"""

from __future__ import annotations

import ipaddress

from migrate.errors import NotFound
from migrate.model import PodInfo
from migrate.steps import StepContext

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
