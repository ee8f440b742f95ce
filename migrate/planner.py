"""The planner: inventory + options -> plan. Pure: no I/O, no clock, deterministic.

Waves:
1. a canary wave of up to ``options.canary`` workers (the first by name that fit together);
2. the other workers, first-fit into waves of at most ``max_unavailable`` nodes, where a
   node joins a wave only if, for every PodDisruptionBudget, the wave's pods under that
   budget stay within what the budget allows at once (a lone node is always allowed: its
   drain then proceeds one eviction at a time as the budget recovers);
3. control-plane nodes last, one per wave.
Nodes are taken in natural order of their names (worker-2 before worker-10). Nodes already
on Cilium are excluded with that reason, so planning again after a finished run yields an
empty plan that says why. Where the waves come out smaller than the options asked (a
canary larger than the workers, budgets that keep nodes apart), a warning finding says
so and why (``_adjustments``): the planner never changes the operator's numbers silently.
Then each node's drain is told which Deployments it surges (``migrate.surge``) and whose
pods it hands off from their UDP Services (``migrate.handoff``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from migrate import handoff
from migrate.errors import BadInput
from migrate.model import CORDON_LABEL, MIGRATION_LABEL, Cni, Inventory, NodeInfo, PDBInfo, PodInfo
from migrate.plan import ClusterSnapshot, Finding, NodePlan, Plan, PlanOptions, Severity, Target, Wave
from migrate.preflight import plan_findings
from migrate.surge import Surges, decide

# The checks of the planner's own findings (``_adjustments``): how the plan came out, not a
# state of the cluster, so apply's live recheck does not look for them again.
ADJUSTMENT_CHECKS = frozenset({"canary-size", "wave-size"})


def build_plan(inv: Inventory, options: PlanOptions, target: Target) -> Plan:
    known = {n.name for n in inv.nodes}
    unknown = sorted(set(options.exclude_nodes) - known)
    if unknown:
        raise BadInput(f"--exclude-node names unknown node(s): {', '.join(unknown)}")

    excluded: list[tuple[str, str]] = []
    candidates: list[NodeInfo] = []
    for node in sorted(inv.nodes, key=lambda n: natural_key(n.name)):
        if node.name in options.exclude_nodes:
            excluded.append((node.name, "excluded with --exclude-node"))
        elif node.labels.get(MIGRATION_LABEL) == "true" and node.cni is not Cni.CALICO:
            # Backends that cannot read a node's CNI cheaply report UNKNOWN: the label,
            # which only a finished swap leaves behind, decides.
            excluded.append((node.name, "already migrated to Cilium"))
        else:
            candidates.append(node)

    refused: dict[int, set[str]] = {}  # wave index -> the PDBs that kept a node out of it
    waves = _waves(inv, candidates, options, refused)
    names = [[n.name for n in w.nodes] for w in waves]
    surges = decide(inv, names, options) if options.surge else Surges()
    handoffs = handoff.decide(inv, names, surges) if options.handoff else {}
    waves = [
        replace(w, nodes=tuple(replace(n, surge=surges.on(n.name), handoff=handoffs.get(n.name, ())) for n in w.nodes))
        for w in waves
    ]
    findings = plan_findings(inv, candidates, names, options, surges)
    findings += _adjustments(candidates, waves, options, refused)
    return Plan(
        target=target,
        cluster=ClusterSnapshot(
            fingerprint=inv.identity.fingerprint,
            kube_system_uid=inv.identity.kube_system_uid,
            server=inv.identity.server,
            nodes=tuple(sorted((n.name, n.uid) for n in inv.nodes)),
            node_config_api=inv.cilium.node_config_api or "cilium.io/v2",
        ),
        options=options,
        waves=tuple(waves),
        findings=tuple(findings),
        excluded=tuple(excluded),
    )


def natural_key(name: str) -> tuple[tuple[int | str, ...], str]:
    """Sort key: digit runs compare as numbers (worker-2 before worker-10), then the name."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)), name


def _node_plan(node: NodeInfo) -> NodePlan:
    # A cordon of an unfinished run (its label) is not the operator's: the run lifts it.
    held = node.unschedulable and CORDON_LABEL not in node.labels
    return NodePlan(name=node.name, control_plane=node.control_plane, keep_cordoned=held)


def _waves(inv: Inventory, nodes: Sequence[NodeInfo], options: PlanOptions, refused: dict[int, set[str]]) -> list[Wave]:
    """The waves; ``refused`` gets, per wave index, the PDBs that kept a node out of it."""
    workers = [n for n in nodes if not n.control_plane]
    control = [n for n in nodes if n.control_plane]

    budgets = {pdb.key: max(pdb.disruptions_allowed, 1) for pdb in inv.pdbs}
    pdbs_by_ns: dict[str, list[PDBInfo]] = {}
    for pdb in inv.pdbs:
        pdbs_by_ns.setdefault(pdb.namespace, []).append(pdb)

    selected: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, ...]] = {}

    def pdbs_of(pod: PodInfo) -> tuple[str, ...]:
        if pod.namespace not in pdbs_by_ns:
            return ()
        # Pods of one workload share namespace and labels: match each combination once.
        key = (pod.namespace, tuple(pod.labels.items()))
        if key not in selected:
            selected[key] = tuple(p.key for p in pdbs_by_ns.get(pod.namespace, ()) if p.selects(pod))
        return selected[key]

    def load(node: NodeInfo) -> Counter[str]:
        """How many pods of each PDB this node's drain would disrupt."""
        counts: Counter[str] = Counter()
        for pod in inv.evictable_on(node.name):
            for key in pdbs_of(pod):
                counts[key] += 1
        return counts

    def over(used: Counter[str], mine: Counter[str], members: list[NodeInfo]) -> set[str]:
        """The budgets a node's pods would exceed in a wave of ``members`` (none in an empty wave)."""
        return {k for k, v in mine.items() if used[k] + v > budgets[k]} if members else set()

    loads = {n.name: load(n) for n in workers}
    canary: list[NodeInfo] = []
    canary_used: Counter[str] = Counter()
    rest: list[NodeInfo] = []
    for node in workers:
        refusing = over(canary_used, loads[node.name], canary) if len(canary) < options.canary else None
        if refusing is not None and not refusing:
            canary.append(node)
            canary_used.update(loads[node.name])
        else:
            if refusing:
                refused.setdefault(1, set()).update(refusing)
            rest.append(node)

    waves: list[list[NodeInfo]] = [canary] if canary else []
    open_waves: list[tuple[int, list[NodeInfo], Counter[str]]] = []
    for node in rest:
        mine = loads[node.name]
        for index, members, used in open_waves:
            refusing = over(used, mine, members)
            if not refusing:
                members.append(node)
                used.update(mine)
                break
            refused.setdefault(index, set()).update(refusing)
        else:
            members = [node]
            waves.append(members)
            open_waves.append((len(waves), members, Counter(mine)))
        open_waves = [(i, m, u) for i, m, u in open_waves if len(m) < options.max_unavailable]

    waves.extend([n] for n in control)
    return [
        Wave(index=i + 1, nodes=tuple(_node_plan(n) for n in members), canary=bool(canary) and i == 0)
        for i, members in enumerate(waves)
    ]


def _adjustments(
    candidates: Sequence[NodeInfo], waves: Sequence[Wave], options: PlanOptions, refused: dict[int, set[str]]
) -> list[Finding]:
    """Warnings for each place the waves differ from what the options asked, and why."""
    workers = sum(1 for n in candidates if not n.control_plane)
    findings = []
    canary = waves[0] if waves and waves[0].canary else None
    if 0 < workers < options.canary:
        findings.append(
            Finding(
                "canary-size",
                Severity.WARNING,
                f"--canary {options.canary} asks for more workers than the plan migrates ({workers}): "
                f"the canary wave has {len(canary.nodes) if canary else 0}",
                "plan with a smaller --canary to make the canary a sample of the cluster",
            )
        )
    if canary is not None and len(canary.nodes) < min(options.canary, workers):
        pdbs = sorted(refused.get(canary.index, ()))
        findings.append(
            Finding(
                "canary-size",
                Severity.WARNING,
                f"the canary wave has {len(canary.nodes)} worker(s), not "
                f"{f'--canary {options.canary}' if options.canary <= workers else f'all {workers}'}: "
                f"PodDisruptionBudget(s) {', '.join(pdbs)} allow no more of their pods down at once",
                "raise those budgets (more replicas or a larger maxUnavailable) for the window, or accept "
                "a smaller canary",
                tuple(pdbs),
            )
        )
    small = [
        w
        for w in waves
        if not w.canary
        and not w.nodes[0].control_plane
        and len(w.nodes) < options.max_unavailable
        and w.index in refused
    ]
    if small:
        pdbs = sorted({k for w in small for k in refused[w.index]})
        sizes = ", ".join(f"wave {w.index}: {len(w.nodes)}" for w in small[:5]) + (", ..." if len(small) > 5 else "")
        findings.append(
            Finding(
                "wave-size",
                Severity.WARNING,
                f"{len(small)} wave(s) have fewer nodes than --max-unavailable {options.max_unavailable} ({sizes}): "
                f"PodDisruptionBudget(s) {', '.join(pdbs)} allow no more of their pods down at once",
                "raise those budgets (more replicas or a larger maxUnavailable) for the window, or accept more waves",
                tuple(pdbs),
            )
        )
    return findings
