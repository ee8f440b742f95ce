"""Preflight checks: one small pure function per check, each returning findings.

A finding is blocking (``apply`` refuses the plan) or a warning (printed, recorded in the
plan, and in the runbook). Every finding says how to fix or override it. Checks read the
prefetched ``Inventory`` only; ``plan_findings`` runs node and workload checks, then the
capacity checks, which depend on which nodes go together. The planner writes them into the
plan; apply runs them again (``recheck``) on the live cluster before a new run.

The checks live by family: ``nodes`` (Ready, Linux, kernel, cordoned; permissions),
``calico`` (installed, dataplane, BGP, autodetection), ``cilium`` (migration mode, agents,
node-config API, pool, tunnel port, unenforced policies), ``workloads`` (drain verdicts,
PDB budgets, capacity, unprotected replicas) and ``surroundings`` (an autoscaler, kube-proxy's
clusterCIDR, policies naming Calico's addresses, admission webhooks a wave takes down);
``check`` says what a check is. This module holds the order they run in and the entry points
callers use.
"""

from __future__ import annotations

from collections.abc import Sequence

from migrate.model import Inventory, NodeInfo
from migrate.plan import Finding, Plan, PlanOptions
from migrate.preflight.calico import calico_autodetection, calico_bgp, calico_dataplane, calico_installed
from migrate.preflight.check import Check
from migrate.preflight.cilium import (
    cilium_agents,
    cilium_state,
    network_policies,
    node_config_api,
    pool_overlap,
    pool_size,
    tunnel_port,
)
from migrate.preflight.nodes import already_cordoned, kernel_tuple, kernel_version, node_os, node_ready, permissions
from migrate.preflight.surroundings import admission_webhooks, autoscaler, kube_proxy_cluster_cidr, policy_addresses
from migrate.preflight.workloads import capacity, drain_verdicts, evictable, pdb_budgets, unprotected_replicas
from migrate.surge import Surges, decide

__all__ = [
    "NODE_CHECKS",
    "admission_webhooks",
    "Check",
    "already_cordoned",
    "autoscaler",
    "calico_autodetection",
    "calico_bgp",
    "calico_dataplane",
    "calico_installed",
    "capacity",
    "cilium_agents",
    "cilium_state",
    "drain_verdicts",
    "evictable",
    "kernel_tuple",
    "kernel_version",
    "kube_proxy_cluster_cidr",
    "network_policies",
    "node_config_api",
    "node_os",
    "node_ready",
    "pdb_budgets",
    "permissions",
    "plan_findings",
    "policy_addresses",
    "pool_overlap",
    "pool_size",
    "recheck",
    "run_checks",
    "tunnel_port",
    "unprotected_replicas",
]

NODE_CHECKS: tuple[Check, ...] = (
    permissions,
    node_ready,
    node_os,
    kernel_version,
    already_cordoned,
    calico_installed,
    calico_dataplane,
    calico_bgp,
    calico_autodetection,
    cilium_state,
    cilium_agents,
    node_config_api,
    pool_overlap,
    pool_size,
    tunnel_port,
    drain_verdicts,
    network_policies,
    policy_addresses,
    kube_proxy_cluster_cidr,
    autoscaler,
)


def run_checks(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    findings: list[Finding] = []
    for check in NODE_CHECKS:
        findings.extend(check(inv, nodes, opts))
    return findings


def plan_findings(
    inv: Inventory,
    nodes: Sequence[NodeInfo],
    waves: Sequence[Sequence[str]],
    opts: PlanOptions,
    surges: Surges | None = None,
) -> list[Finding]:
    """Every finding for migrating ``nodes`` in these ``waves`` (node names): the node and
    workload checks, then those that depend on which nodes go together. What the planner
    writes into a plan, and what apply finds again on the live cluster before a new run.
    ``surges``: which drains surge what (``migrate.surge``); decided here when not given."""
    if surges is None:
        surges = decide(inv, waves, opts) if opts.surge else Surges()
    findings = run_checks(inv, nodes, opts) if nodes else []
    if nodes:
        findings += pdb_budgets(inv, nodes, opts, surges)
    return (
        findings
        + list(surges.findings)
        + capacity(inv, waves)
        + unprotected_replicas(inv, waves, surges)
        + admission_webhooks(inv, waves)
    )


def recheck(plan: Plan, inv: Inventory) -> list[Finding]:
    """``plan_findings`` for the plan's own waves, on ``inv`` (the cluster as it is now),
    with the surges the plan was reviewed with: a drain surges only what its plan names."""
    planned = {n.name for n in plan.nodes}
    nodes = [n for n in sorted(inv.nodes, key=lambda n: n.name) if n.name in planned]
    waves = [[n.name for n in w.nodes] for w in plan.waves]
    decided = decide(inv, waves, plan.options) if plan.options.surge else Surges()
    reviewed = Surges({n.name: n.surge for n in plan.nodes if n.surge}, decided.findings)
    return plan_findings(inv, nodes, waves, plan.options, reviewed)
