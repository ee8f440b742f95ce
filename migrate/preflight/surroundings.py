"""Preflight checks of what runs around the migration and can undo it (issue 26, the
field's pain points): an autoscaler that removes the nodes a wave cordons and drains,
kube-proxy treating Cilium's pods as outside the cluster, and policies that name the
Calico pool's addresses, which the pods leave."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from migrate.model import Inventory, NodeInfo
from migrate.plan import Finding, PlanOptions, Severity
from migrate.preflight.check import subjects

# Pod labels an autoscaler's controller runs with: (label, value contains).
AUTOSCALER_LABELS = (
    ("app", "cluster-autoscaler"),
    ("k8s-app", "cluster-autoscaler"),
    ("app.kubernetes.io/name", "cluster-autoscaler"),
    ("app.kubernetes.io/name", "karpenter"),
)


def autoscaler(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """A cordoned, drained node is what an autoscaler removes first: the cluster autoscaler
    scales down empty nodes, Karpenter consolidates them, and the node would vanish between
    the drain and the swap."""
    running = subjects(
        p.key
        for p in inv.pods
        if not p.finished and any(value in p.labels.get(key, "") for key, value in AUTOSCALER_LABELS)
    )
    exposed = subjects(n.name for n in nodes if not n.autoscaler_protected)
    if not running or not exposed:
        return []
    return [
        Finding(
            "autoscaler",
            Severity.WARNING,
            f"an autoscaler runs ({', '.join(running)}) and may remove nodes the migration cordons and "
            f"drains; {len(exposed)} node(s) to migrate are not protected from it: {', '.join(exposed)}",
            "annotate them for the window: kubectl annotate node NODE "
            "cluster-autoscaler.kubernetes.io/scale-down-disabled=true (Karpenter: karpenter.sh/do-not-disrupt=true), "
            "and remove the annotation after finalize",
            exposed,
        )
    ]


def kube_proxy_cluster_cidr(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """kube-proxy masquerades Service traffic from sources outside its clusterCIDR (and, with
    detectLocalMode ClusterCIDR, tells local traffic by it): pods in a Cilium pool it does
    not cover reach Services from their node's address, and policies that select them by
    label stop matching that traffic."""
    if not inv.kube_proxy_cluster_cidr or not nodes:
        return []
    pool = ipaddress.ip_network(opts.cilium_pool_cidr, strict=False)
    covering = []
    for text in inv.kube_proxy_cluster_cidr.split(","):
        try:
            cidr = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        if cidr.version == pool.version and pool.subnet_of(cidr):  # type: ignore[arg-type]
            covering.append(cidr)
    if covering:
        return []
    return [
        Finding(
            "kube-proxy-cluster-cidr",
            Severity.WARNING,
            f"kube-proxy's clusterCIDR {inv.kube_proxy_cluster_cidr} does not cover Cilium's pool "
            f"{opts.cilium_pool_cidr}: migrated pods' Service traffic is masqueraded to their node's address",
            "add Cilium's pool to kube-proxy's clusterCIDR (kube-system/kube-proxy config.conf or --cluster-cidr) "
            "and restart kube-proxy before the window, or plan with a --cilium-pool-cidr inside it",
            (opts.cilium_pool_cidr,),
        )
    ]


def policy_addresses(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    """A policy that allows or denies by addresses in Calico's pool, and not in Cilium's,
    stops matching the pods that move: the rule silently means nothing after the swap."""
    pools = []
    for pool in inv.calico_pools:
        try:
            pools.append(ipaddress.ip_network(pool.cidr, strict=False))
        except ValueError:
            continue
    cilium = ipaddress.ip_network(opts.cilium_pool_cidr, strict=False)
    stale = []
    for policy in inv.policies:
        for text in policy.cidrs:
            try:
                cidr = ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            if cidr.version != cilium.version or cilium.subnet_of(cidr):  # type: ignore[arg-type]
                continue  # also names where the pods go (0.0.0.0/0, 10.0.0.0/8): still matches
            if any(cidr.version == p.version and cidr.overlaps(p) for p in pools):  # type: ignore[arg-type]
                stale.append(f"{policy.shown} ({text})")
                break
    if not stale or not nodes:
        return []
    names = subjects(stale)
    return [
        Finding(
            "policy-addresses",
            Severity.WARNING,
            f"{len(names)} policies name addresses in Calico's pool, which migrated pods leave for Cilium's "
            f"{opts.cilium_pool_cidr}: {', '.join(names)}",
            "select those pods by label instead, or add Cilium's pool beside Calico's to each rule before the window",
            names,
        )
    ]


def admission_webhooks(inv: Inventory, waves: Sequence[Sequence[str]]) -> list[Finding]:
    """An admission webhook with failurePolicy Fail whose every answering pod a wave's drains
    evict at once: until a replacement is Ready, the API server refuses what the webhook
    guards, which can be the very pods the drain is waiting to re-create."""
    flagged: dict[str, tuple[int, str]] = {}
    for hook in inv.webhooks:
        if hook.failure_policy != "Fail" or hook.shown in flagged:
            continue
        backing = [
            p
            for p in inv.pods
            if p.namespace == hook.namespace
            and not p.finished
            and p.node
            and all(p.labels.get(k) == v for k, v in hook.selector.items())
        ]
        if not backing:
            continue  # down already, or served from elsewhere: not the migration's doing
        nodes = {p.node for p in backing}
        for index, wave in enumerate(waves, 1):
            if nodes <= set(wave):
                flagged[hook.shown] = (index, "+".join(sorted(n or "" for n in nodes)))
                break
    if not flagged:
        return []
    listed = "; ".join(f"{shown} (wave {wave}, on {nodes})" for shown, (wave, nodes) in sorted(flagged.items()))
    return [
        Finding(
            "admission-webhooks",
            Severity.WARNING,
            f"a wave drains every pod that answers these webhooks (failurePolicy Fail), so the API server "
            f"refuses what they guard until a replacement is Ready: {listed}",
            "run a second replica on a node of another wave (with a PodDisruptionBudget), or exclude their "
            "nodes from the wave with --exclude-node and migrate them apart",
            tuple(sorted(flagged)),
        )
    ]
