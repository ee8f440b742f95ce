"""Preflight checks of the Cilium taking over: installed (or to be installed) in migration
mode, its agents Ready, the CiliumNodeConfig API served, a cluster pool of new address space
big enough for every node, a tunnel port apart from Calico's, and the policies it does not
enforce while in migration mode."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from migrate.cilium import CILIUM_DEFAULT_VXLAN_PORT, CILIUM_TUNNEL_PORT
from migrate.model import Inventory, NodeInfo
from migrate.plan import NODE_POOL_PREFIX, Finding, PlanOptions, Severity
from migrate.preflight.check import subjects


def cilium_state(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    c = inv.cilium
    if not c.installed and opts.install_cilium_chart:
        return [
            Finding(
                "cilium-installed",
                Severity.WARNING,
                f"Cilium is not installed; apply installs it in migration mode before the first node "
                f"(helm upgrade --install cilium, chart {opts.install_cilium_chart} "
                f"{opts.install_cilium_version}, the values written next to the plan)",
                "apply needs Helm 3 on PATH (or --helm PATH), the chart reachable from where it runs, and an "
                "identity allowed to install it (ClusterRoles, a DaemonSet and Deployments in kube-system: more "
                "than deploy/rbac.yaml grants)",
            )
        ]
    if not c.installed:
        return [
            Finding(
                "cilium-installed",
                Severity.WARNING,
                "Cilium is not installed; install it in migration mode before apply",
                "helm install cilium with the values written next to the plan, or plan with --install-cilium",
            )
        ]
    if not c.migration_mode:
        return [
            Finding(
                "cilium-installed",
                Severity.BLOCKING,
                f"Cilium is installed but not in migration mode ({'; '.join(c.mode_gaps) or 'its configuration'}: "
                "it would take over every node)",
                "reinstall Cilium with the migration values written next to the plan",
            )
        ]
    return []


def cilium_agents(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    c = inv.cilium
    if not c.installed or c.agents_ready >= c.agents_desired:
        return []
    return [
        Finding(
            "cilium-agents",
            Severity.WARNING,
            f"{c.agents_ready} of {c.agents_desired} Cilium agent pods are Ready; a node whose agent is not "
            "Ready fails its swap",
            "kubectl -n kube-system get pods -l k8s-app=cilium -o wide; fix the failing agents before the window",
        )
    ]


def node_config_api(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if not inv.cilium.installed or inv.cilium.node_config_api:
        return []
    return [
        Finding(
            "cilium-node-config",
            Severity.BLOCKING,
            "the cluster serves no CiliumNodeConfig API (cilium.io/v2 or v2alpha1); the per-node "
            "migration needs it (Cilium >= 1.13)",
            "upgrade Cilium, or install its CRDs",
        )
    ]


def pool_overlap(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """Cilium's cluster pool must be new address space: no Calico IPPool, Service range or
    node address inside it."""
    cilium = ipaddress.ip_network(opts.cilium_pool_cidr, strict=False)
    clashes = []
    for what, name, cidr in (
        *(("Calico IPPool", p.name, p.cidr) for p in inv.calico_pools),
        *(("Service range", c, c) for c in inv.service_cidrs),
        *(("node", n.name, a) for n in inv.nodes for a in n.addresses),
    ):
        try:
            if ipaddress.ip_network(cidr, strict=False).overlaps(cilium):
                clashes.append(f"{what} {name}" + (f" ({cidr})" if cidr != name else ""))
        except (ValueError, TypeError):
            continue  # unparsable, or another address family: not an overlap
    if not clashes:
        return []
    return [
        Finding(
            "cilium-pool",
            Severity.BLOCKING,
            f"Cilium's cluster pool {cilium} overlaps {', '.join(clashes)}",
            "plan with --cilium-pool-cidr set to a range used by neither Calico, Services nor nodes",
            tuple(clashes),
        )
    ]


def pool_size(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """Every node of the cluster (the excluded and the control plane too: after finalize all
    run Cilium) needs a block of Cilium's pool; a pool too small leaves the last ones
    without pod addresses."""
    pool = ipaddress.ip_network(opts.cilium_pool_cidr, strict=False)
    blocks = 2 ** max(NODE_POOL_PREFIX - pool.prefixlen, 0)
    if blocks >= len(inv.nodes):
        return []
    return [
        Finding(
            "cilium-pool",
            Severity.BLOCKING,
            f"Cilium's cluster pool {pool} holds {blocks} node block(s) of /{NODE_POOL_PREFIX}; "
            f"the cluster has {len(inv.nodes)} nodes",
            f"plan with a larger --cilium-pool-cidr (at least a /{_prefix_for(len(inv.nodes))})",
        )
    ]


def _prefix_for(nodes: int) -> int:
    return NODE_POOL_PREFIX - max(nodes - 1, 0).bit_length()


def tunnel_port(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """Both overlays run side by side during the migration: their VXLAN ports must differ."""
    if not any(p.vxlan_mode.lower() != "never" for p in inv.calico_pools):
        return []
    if inv.cilium.installed:
        port = inv.cilium.tunnel_port or CILIUM_DEFAULT_VXLAN_PORT
        where = "the installed Cilium's tunnel port"
    else:
        port = CILIUM_TUNNEL_PORT
        where = "the tunnel port in the planned Cilium values"
    if port != inv.calico_vxlan_port:
        return []
    return [
        Finding(
            "tunnel-port",
            Severity.BLOCKING,
            f"{where} is {port}, the port Calico's VXLAN uses: the two overlays would take each other's packets",
            f"install Cilium with tunnelPort {CILIUM_TUNNEL_PORT if port != CILIUM_TUNNEL_PORT else 8474} "
            "(the values written next to the plan), or move Calico's FelixConfiguration vxlanPort",
        )
    ]


def network_policies(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if not inv.policies:
        return []
    names = subjects(p.shown for p in inv.policies)
    return [
        Finding(
            "network-policy",
            Severity.WARNING,
            f"{len(names)} network policies are not enforced by Cilium during the migration "
            f"(policyEnforcementMode=never): {', '.join(names)}",
            "plan for unenforced policy during the window; Cilium enforces Kubernetes NetworkPolicies "
            "after finalize; Calico's own policies die with Calico: 'cni-migrate policy-report --write DIR' "
            "translates those it can into Cilium policies and says why the others cannot be",
            names,
        )
    ]
