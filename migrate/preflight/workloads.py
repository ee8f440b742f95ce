"""Preflight checks of the workloads the drains move: pods the drain refuses or warns about,
PodDisruptionBudgets that allow no disruption, spare capacity for each wave's pods, and
workloads a wave would take down whole. ``capacity`` and ``unprotected_replicas`` depend on
which nodes go together, so they take the waves, not the nodes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from migrate.drain import DrainOptions, Verdict, noteworthy
from migrate.model import Inventory, NodeInfo, PDBInfo, PodInfo
from migrate.plan import Finding, PlanOptions, Severity
from migrate.preflight.check import subjects
from migrate.surge import NO_SURGES, Surges


def drain_verdicts(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    drain_opts = DrainOptions(force=opts.force, delete_emptydir_data=opts.delete_emptydir_data)
    refused: dict[str, list[str]] = {}
    warned: dict[str, list[str]] = {}
    for node in nodes:
        for v in noteworthy(inv.pods_on(node.name), drain_opts):
            if v.verdict is Verdict.REFUSE:
                refused.setdefault(v.message, []).append(v.pod.key)
            elif v.verdict is Verdict.WARN:
                warned.setdefault(v.message, []).append(v.pod.key)
    findings = [
        Finding("drain-pods", Severity.BLOCKING, f"{msg}: {', '.join(sorted(pods))}", _fix(msg), subjects(pods))
        for msg, pods in sorted(refused.items())
    ]
    findings += [
        Finding("drain-pods", Severity.WARNING, f"{msg}: {', '.join(sorted(pods))}", "", subjects(pods))
        for msg, pods in sorted(warned.items())
    ]
    return findings


def _fix(message: str) -> str:
    if "--force" in message:
        return "give the pods a controller, delete them, or plan with --force"
    if "--delete-emptydir-data" in message:
        return "plan with --delete-emptydir-data if the data may be lost"
    return ""


def pdb_budgets(
    inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions, surges: Surges = NO_SURGES
) -> list[Finding]:
    """Budgets that allow no disruption now and cover pods a drain would evict (a surged
    Deployment's pods are retired by its scale, not evicted: ``migrate.surge``)."""
    drained = {n.name for n in nodes}
    blocked = {pdb.namespace for pdb in inv.pdbs if pdb.disruptions_allowed <= 0}
    if not blocked:
        return []
    # A PDB selects by namespace and labels only, and a workload's pods share both: group the
    # pods once, so 2,000 zero-budget PDBs do not each scan every pod of the cluster (30 s of
    # a 1,000-node / 30,000-pod plan with 2,000 such PDBs before this; the whole plan 0.9 s after).
    groups: dict[str, dict[tuple[tuple[str, str], ...], list[PodInfo]]] = {}
    for pod in inv.pods:
        if (
            pod.namespace in blocked
            and pod.node in drained
            and not pod.daemonset
            and not pod.mirror
            and not surges.covers(pod)
        ):
            labels = tuple(sorted(pod.labels.items()))
            groups.setdefault(pod.namespace, {}).setdefault(labels, []).append(pod)
    findings = []
    for pdb in sorted(inv.pdbs, key=lambda p: p.key):
        if pdb.disruptions_allowed > 0:
            continue
        covered = [p.key for pods in groups.get(pdb.namespace, {}).values() if pdb.selects(pods[0]) for p in pods]
        if not covered:
            continue
        findings.append(
            Finding(
                "pdb-budget",
                Severity.BLOCKING,
                f"PodDisruptionBudget {pdb.key} allows no disruption now "
                f"(healthy {pdb.current_healthy}, needs {pdb.desired_healthy}); "
                f"it covers {len(covered)} pod(s) on nodes to drain",
                f"scale up the workload or relax {pdb.key} for the window",
                (pdb.key,),
            )
        )
    return findings


def evictable(pods: Iterable[PodInfo]) -> list[PodInfo]:
    return [p for p in pods if not p.daemonset and not p.mirror and not p.finished]


def capacity(inv: Inventory, waves: Sequence[Sequence[str]]) -> list[Finding]:
    """Can the pods of each wave fit on the nodes that stay schedulable meanwhile?"""
    # Nodes that can take evicted pods: Ready, schedulable, and without a NoSchedule or
    # NoExecute taint (ordinary workloads do not tolerate the control-plane taint).
    usable = [
        n
        for n in inv.nodes
        if n.ready
        and not n.unschedulable
        and n.operating_system.lower() == "linux"
        and not any(t.effect in ("NoSchedule", "NoExecute") for t in n.taints)
    ]
    # One pass over each node's pods (at 5,000 nodes there are 150,000): what it has free,
    # and what its drain would move (pods with an owner to re-create them elsewhere).
    free: dict[str, tuple[int, int, int]] = {}
    for n in usable:
        pods = inv.pods_on(n.name)
        used_cpu = used_mem = 0
        for p in pods:
            used_cpu += p.cpu_millis
            used_mem += p.memory_bytes
        free[n.name] = (n.cpu_millis - used_cpu, n.memory_bytes - used_mem, n.max_pods - len(pods))
    total_cpu = sum(f[0] for f in free.values())
    total_mem = sum(f[1] for f in free.values())
    total_pods = sum(f[2] for f in free.values())
    nothing = (0, 0, 0)
    short: list[str] = []
    short_nodes: set[str] = set()
    for wave in waves:
        need_cpu = need_mem = moving = 0
        for name in wave:
            for p in inv.evictable_on(name):
                if p.owner is not None:
                    need_cpu += p.cpu_millis
                    need_mem += p.memory_bytes
                    moving += 1
        have_cpu = total_cpu - sum(free.get(name, nothing)[0] for name in wave)
        have_mem = total_mem - sum(free.get(name, nothing)[1] for name in wave)
        have_pods = total_pods - sum(free.get(name, nothing)[2] for name in wave)
        if need_cpu > have_cpu or need_mem > have_mem or moving > have_pods:
            short.append(
                f"{'+'.join(wave)} (needs {need_cpu}m CPU/{need_mem // 2**20}Mi, "
                f"{moving} pods; free elsewhere {max(have_cpu, 0)}m/"
                f"{max(have_mem, 0) // 2**20}Mi, {max(have_pods, 0)} pods)"
            )
            short_nodes.update(wave)
    if not short:
        return []
    return [
        Finding(
            "capacity",
            Severity.BLOCKING,
            f"not enough spare capacity to drain: {'; '.join(short)}",
            "add nodes, lower --max-unavailable, or scale workloads down for the window",
            tuple(sorted(short_nodes)),
        )
    ]


# Controllers that keep several replicas of one workload (the simulated cluster's pods name
# their Deployment directly, a real cluster's their ReplicaSet).
REPLICATED = ("ReplicaSet", "StatefulSet", "Deployment")


def _replica_of(pod: PodInfo) -> tuple[str, str, str] | None:
    """(namespace, controller kind, name) of a serving replica, None for any other pod."""
    if pod.owner is None or pod.owner.kind not in REPLICATED or not pod.ready or pod.deleting:
        return None
    return pod.namespace, pod.owner.kind, pod.owner.name


def unprotected_replicas(inv: Inventory, waves: Sequence[Sequence[str]], surges: Surges = NO_SURGES) -> list[Finding]:
    """Workloads whose every replica a wave's drains evict at once, with no PDB to make the
    drain wait for a replacement: down until their new pods are Ready (e.g. both CoreDNS
    replicas on one node: the cluster's DNS fails for the whole drain). A Deployment whose
    drains surge is not: its replacements are Ready first."""
    # Ready pods per workload, one pass over the cluster's pods.
    replicas: dict[tuple[str, str, str], int] = {}
    for pod in inv.pods:
        key = _replica_of(pod)
        if key is not None:
            replicas[key] = replicas.get(key, 0) + 1
    pdbs: dict[str, list[PDBInfo]] = {}
    for pdb in inv.pdbs:
        pdbs.setdefault(pdb.namespace, []).append(pdb)
    flagged: dict[tuple[str, str, str], tuple[int, str]] = {}
    for wave in waves:
        moving: dict[tuple[str, str, str], list[PodInfo]] = {}
        for name in wave:
            for pod in inv.evictable_on(name):
                key = _replica_of(pod)
                if key is not None and not surges.covers(pod):
                    moving.setdefault(key, []).append(pod)
        for key, pods in moving.items():
            if len(pods) < 2 or len(pods) < replicas[key] or key in flagged:
                continue
            if any(pdb.selects(pods[0]) for pdb in pdbs.get(key[0], ())):
                continue  # the drain waits for the budget: one replica at a time
            flagged[key] = (len(pods), "+".join(sorted({p.node or "" for p in pods})))
    if not flagged:
        return []
    listed = "; ".join(
        f"{kind} {ns}/{name} ({n} of {n}, on {nodes})" for (ns, kind, name), (n, nodes) in sorted(flagged.items())
    )
    return [
        Finding(
            "unprotected-replicas",
            Severity.WARNING,
            f"a drain evicts every replica of these at once, and no PodDisruptionBudget makes it wait "
            f"for a replacement, so each is down until its new pods are Ready: {listed}",
            "add a PodDisruptionBudget (minAvailable: 1) for each, or spread its replicas over nodes "
            "of different waves; the drain then evicts them one at a time",
            tuple(f"{ns}/{name}" for ns, _, name in sorted(flagged)),
        )
    ]
