"""The planner: inventory + options -> plan. Pure: no I/O, no clock, deterministic.

Waves:
1. a canary wave of up to ``options.canary`` workers (the first by name that fit together);
2. the other workers, first-fit into waves of at most ``max_unavailable`` nodes, where a
   node joins a wave only if, for every PodDisruptionBudget, the wave's pods under that
   budget stay within what the budget allows at once (a lone node is always allowed: its
   drain then proceeds one eviction at a time as the budget recovers);
3. control-plane nodes last, one per wave.
Then each node's drain is told which Deployments it surges (``migrate.surge``).
Nodes already on Cilium are excluded with that reason, so planning again after a
finished run yields an empty plan that says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from migrate.errors import BadInput
from migrate.model import CORDON_LABEL, MIGRATION_LABEL, Cni, Inventory, NodeInfo, PDBInfo, PodInfo
from migrate.plan import ClusterSnapshot, NodePlan, Plan, PlanOptions, Target, Wave
from migrate.preflight import plan_findings
from migrate.surge import Surges, decide


def build_plan(inv: Inventory, options: PlanOptions, target: Target) -> Plan:
    known = {n.name for n in inv.nodes}
    unknown = sorted(set(options.exclude_nodes) - known)
    if unknown:
        raise BadInput(f"--exclude-node names unknown node(s): {', '.join(unknown)}")

    excluded: list[tuple[str, str]] = []
    candidates: list[NodeInfo] = []
    for node in sorted(inv.nodes, key=lambda n: n.name):
        if node.name in options.exclude_nodes:
            excluded.append((node.name, "excluded with --exclude-node"))
        elif node.labels.get(MIGRATION_LABEL) == "true" and node.cni is not Cni.CALICO:
            # Backends that cannot read a node's CNI cheaply report UNKNOWN: the label,
            # which only a finished swap leaves behind, decides.
            excluded.append((node.name, "already migrated to Cilium"))
        else:
            candidates.append(node)

    waves = _waves(inv, candidates, options)
    names = [[n.name for n in w.nodes] for w in waves]
    surges = decide(inv, names, options) if options.surge else Surges()
    waves = [replace(w, nodes=tuple(replace(n, surge=surges.on(n.name)) for n in w.nodes)) for w in waves]
    findings = plan_findings(inv, candidates, names, options, surges)
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


def _node_plan(node: NodeInfo) -> NodePlan:
    # A cordon of an unfinished run (its label) is not the operator's: the run lifts it.
    held = node.unschedulable and CORDON_LABEL not in node.labels
    return NodePlan(name=node.name, control_plane=node.control_plane, keep_cordoned=held)


def _waves(inv: Inventory, nodes: Sequence[NodeInfo], options: PlanOptions) -> list[Wave]:
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

    def fits(used: Counter[str], mine: Counter[str], members: list[NodeInfo]) -> bool:
        return not members or all(used[k] + v <= budgets[k] for k, v in mine.items())

    loads = {n.name: load(n) for n in workers}
    canary: list[NodeInfo] = []
    canary_used: Counter[str] = Counter()
    rest: list[NodeInfo] = []
    for node in workers:
        if len(canary) < options.canary and fits(canary_used, loads[node.name], canary):
            canary.append(node)
            canary_used.update(loads[node.name])
        else:
            rest.append(node)

    waves: list[list[NodeInfo]] = [canary] if canary else []
    open_waves: list[tuple[list[NodeInfo], Counter[str]]] = []
    for node in rest:
        mine = loads[node.name]
        for members, used in open_waves:
            if fits(used, mine, members):
                members.append(node)
                used.update(mine)
                break
        else:
            members = [node]
            waves.append(members)
            open_waves.append((members, Counter(mine)))
        open_waves = [(m, u) for m, u in open_waves if len(m) < options.max_unavailable]

    waves.extend([n] for n in control)
    return [
        Wave(index=i + 1, nodes=tuple(_node_plan(n) for n in members), canary=bool(canary) and i == 0)
        for i, members in enumerate(waves)
    ]
