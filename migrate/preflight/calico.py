"""Preflight checks of the Calico being replaced: installed at all, on the dataplane the
per-node migration needs, BGP routes that go away with it, and an address autodetection
that would pick Cilium's interfaces."""

from __future__ import annotations

import re
from collections.abc import Sequence

from migrate.model import Inventory, NodeInfo
from migrate.plan import Finding, PlanOptions, Severity


def calico_installed(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if inv.calico_install != "none":
        return []
    return [
        Finding(
            "calico-installed",
            Severity.BLOCKING,
            "no Calico install found (no operator.tigera.io Installation, no calico-node DaemonSet in "
            "kube-system or calico-system): cni-migrate moves clusters from Calico to Cilium",
            "check the kubeconfig context; a cluster on another CNI needs another procedure",
        )
    ]


def calico_dataplane(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if inv.calico_dataplane.lower() != "bpf":
        return []
    return [
        Finding(
            "calico-dataplane",
            Severity.BLOCKING,
            "Calico uses its eBPF dataplane; the per-node migration needs Calico on the "
            "Linux routing (iptables) dataplane",
            "switch Calico to the iptables dataplane before migrating",
        )
    ]


def calico_bgp(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """BGP-routed pools: Cilium's migration mode is an overlay, and nothing advertises the
    Cilium pool; routes that peers learnt from Calico go away with it."""
    routed = [p.name for p in inv.calico_pools if p.vxlan_mode.lower() == "never" and p.ipip_mode.lower() == "never"]
    if not inv.calico_bgp and not routed:
        return []
    detail = f"; IPPool(s) without encapsulation rely on it: {', '.join(routed)}" if routed else ""
    return [
        Finding(
            "calico-bgp",
            Severity.WARNING,
            f"Calico runs BGP{detail}. Cilium's migration mode uses its own VXLAN overlay between "
            "nodes; pod routes Calico advertised to routers outside the cluster disappear when Calico "
            "is removed",
            "if anything outside the cluster routes to pod IPs, plan Cilium's BGP control plane (or "
            "egress via node IPs) before finalize; traffic inside the cluster is covered by the overlays",
            tuple(routed),
        )
    ]


# Calico's first-found skips docker*, cali*, veth*, tunl*, ... by default, but not Cilium's
# interfaces: a node could then advertise Cilium's host address as its own.
CILIUM_INTERFACES = ("cilium_host", "cilium_net", "cilium_vxlan")


def _picks_cilium(method: str) -> bool:
    kind, _, arg = method.partition("=")
    try:
        if kind == "first-found":
            return True
        if kind == "interface":
            return any(re.search(arg, i) for i in CILIUM_INTERFACES)
        if kind == "skip-interface":
            return not all(any(re.search(r, i) for r in arg.split(",")) for i in CILIUM_INTERFACES)
    except re.error:
        return True  # Calico would not accept it either: say so
    return False  # kubernetes-internal-ip, can-reach=, cidr=: never an interface by name


def calico_autodetection(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    method = inv.calico_autodetection
    if not method or inv.calico_install == "none" or not _picks_cilium(method):
        return []
    if inv.calico_install == "operator":
        fix = (
            "kubectl patch installation default --type=merge -p "
            '\'{"spec":{"calicoNetwork":{"nodeAddressAutodetectionV4":{"kubernetes":"NodeInternalIP"}}}}\''
        )
    else:
        fix = "kubectl -n kube-system set env daemonset/calico-node IP_AUTODETECTION_METHOD=kubernetes-internal-ip"
    return [
        Finding(
            "calico-autodetection",
            Severity.WARNING,
            f"Calico detects node addresses with {method!r}, which can pick Cilium's cilium_host interface "
            "once Cilium runs on the node; Calico would then advertise the wrong node address",
            fix,
        )
    ]
