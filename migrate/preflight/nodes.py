"""Preflight checks of the nodes themselves (Ready, Linux, a kernel Cilium runs on, cordoned
before the run) and of the identity running the tool (the permissions the run needs)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from migrate.model import CORDON_LABEL, Inventory, NodeInfo
from migrate.plan import Finding, PlanOptions, Severity
from migrate.preflight.check import subjects

MIN_KERNEL = (5, 10)


def kernel_tuple(version: str) -> tuple[int, int] | None:
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def node_ready(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    bad = subjects(n.name for n in nodes if not n.ready)
    if not bad:
        return []
    return [
        Finding(
            "node-ready",
            Severity.BLOCKING,
            f"{len(bad)} node(s) are NotReady: {', '.join(bad)}",
            "repair the node(s) or leave them out with --exclude-node",
            bad,
        )
    ]


def node_os(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    bad = subjects(n.name for n in nodes if n.operating_system.lower() != "linux")
    if not bad:
        return []
    return [
        Finding(
            "node-os",
            Severity.BLOCKING,
            f"Cilium runs on Linux nodes only; not Linux: {', '.join(bad)}",
            "leave them out with --exclude-node",
            bad,
        )
    ]


def kernel_version(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    old, unknown = [], []
    for n in nodes:
        if n.operating_system.lower() != "linux":
            continue
        parsed = kernel_tuple(n.kernel_version)
        if parsed is None:
            unknown.append(n.name)
        elif parsed < MIN_KERNEL:
            old.append(f"{n.name} ({n.kernel_version})")
    findings = []
    if old:
        findings.append(
            Finding(
                "kernel-version",
                Severity.BLOCKING,
                f"Cilium needs Linux kernel >= 5.10; older: {', '.join(sorted(old))}",
                "upgrade the kernel or leave the node(s) out with --exclude-node",
                subjects(o.split(" ")[0] for o in old),
            )
        )
    if unknown:
        findings.append(
            Finding(
                "kernel-version",
                Severity.WARNING,
                f"kernel version unknown on: {', '.join(sorted(unknown))}",
                "check the nodes' kernels by hand (Cilium needs >= 5.10)",
                subjects(unknown),
            )
        )
    return findings


def already_cordoned(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    by_hand = subjects(n.name for n in nodes if n.unschedulable and CORDON_LABEL not in n.labels)
    by_a_run = subjects(n.name for n in nodes if n.unschedulable and CORDON_LABEL in n.labels)
    findings = []
    if by_hand:
        findings.append(
            Finding(
                "node-cordoned",
                Severity.WARNING,
                f"already cordoned before the run; left cordoned afterwards: {', '.join(by_hand)}",
                "uncordon them first if they should take pods after the migration",
                by_hand,
            )
        )
    if by_a_run:
        findings.append(
            Finding(
                "node-cordoned",
                Severity.WARNING,
                f"cordoned by an unfinished cni-migrate run (label {CORDON_LABEL}): {', '.join(by_a_run)}",
                "finish that run first: 'cni-migrate resume' or 'cni-migrate rollback' with its plan file",
                by_a_run,
            )
        )
    return findings


def permissions(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if not inv.missing_permissions:
        return []
    return [
        Finding(
            "rbac",
            Severity.BLOCKING,
            f"missing permissions: {', '.join(inv.missing_permissions)}",
            "bind the ClusterRole in deploy/rbac.yaml to the user running cni-migrate",
            tuple(inv.missing_permissions),
        )
    ]
