"""Preflight checks: one small pure function per check, each returning findings.

A finding is blocking (``apply`` refuses the plan) or a warning (printed, recorded in the
plan, and in the runbook). Every finding says how to fix or override it. Checks read the
prefetched ``Inventory`` only; ``plan_findings`` runs node and workload checks, then the
capacity checks, which depend on which nodes go together. The planner writes them into the
plan; apply runs them again (``recheck``) on the live cluster before a new run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from migrate.cilium import CILIUM_DEFAULT_VXLAN_PORT, CILIUM_TUNNEL_PORT
from migrate.drain import DrainOptions, Verdict, noteworthy
from migrate.model import CORDON_LABEL, Inventory, NodeInfo, PDBInfo, PodInfo
from migrate.plan import NODE_POOL_PREFIX, Finding, Plan, PlanOptions, Severity

MIN_KERNEL = (5, 10)

Check = Callable[[Inventory, Sequence[NodeInfo], PlanOptions], list[Finding]]


def _names(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))


def kernel_tuple(version: str) -> tuple[int, int] | None:
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def node_ready(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    bad = _names(n.name for n in nodes if not n.ready)
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
    bad = _names(n.name for n in nodes if n.operating_system.lower() != "linux")
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
                _names(o.split(" ")[0] for o in old),
            )
        )
    if unknown:
        findings.append(
            Finding(
                "kernel-version",
                Severity.WARNING,
                f"kernel version unknown on: {', '.join(sorted(unknown))}",
                "check the nodes' kernels by hand (Cilium needs >= 5.10)",
                _names(unknown),
            )
        )
    return findings


def already_cordoned(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    by_hand = _names(n.name for n in nodes if n.unschedulable and CORDON_LABEL not in n.labels)
    by_a_run = _names(n.name for n in nodes if n.unschedulable and CORDON_LABEL in n.labels)
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
        Finding("drain-pods", Severity.BLOCKING, f"{msg}: {', '.join(sorted(pods))}", _fix(msg), _names(pods))
        for msg, pods in sorted(refused.items())
    ]
    findings += [
        Finding("drain-pods", Severity.WARNING, f"{msg}: {', '.join(sorted(pods))}", "", _names(pods))
        for msg, pods in sorted(warned.items())
    ]
    return findings


def _fix(message: str) -> str:
    if "--force" in message:
        return "give the pods a controller, delete them, or plan with --force"
    if "--delete-emptydir-data" in message:
        return "plan with --delete-emptydir-data if the data may be lost"
    return ""


def pdb_budgets(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    drained = {n.name for n in nodes}
    blocked = {pdb.namespace for pdb in inv.pdbs if pdb.disruptions_allowed <= 0}
    if not blocked:
        return []
    # A PDB selects by namespace and labels only, and a workload's pods share both: group the
    # pods once, so 2,000 zero-budget PDBs do not each scan every pod of the cluster (30 s of
    # a 1,000-node / 30,000-pod plan with 2,000 such PDBs before this; the whole plan 0.9 s after).
    groups: dict[str, dict[tuple[tuple[str, str], ...], list[PodInfo]]] = {}
    for pod in inv.pods:
        if pod.namespace in blocked and pod.node in drained and not pod.daemonset and not pod.mirror:
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


def network_policies(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    if not inv.policies:
        return []
    names = _names(f"{p.kind} {p.namespace + '/' if p.namespace else ''}{p.name}" for p in inv.policies)
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
    pdb_budgets,
    drain_verdicts,
    network_policies,
)


def run_checks(inv: Inventory, nodes: Sequence[NodeInfo], opts: PlanOptions) -> list[Finding]:
    findings: list[Finding] = []
    for check in NODE_CHECKS:
        findings.extend(check(inv, nodes, opts))
    return findings


def plan_findings(
    inv: Inventory, nodes: Sequence[NodeInfo], waves: Sequence[Sequence[str]], opts: PlanOptions
) -> list[Finding]:
    """Every finding for migrating ``nodes`` in these ``waves`` (node names): the node and
    workload checks, then those that depend on which nodes go together. What the planner
    writes into a plan, and what apply finds again on the live cluster before a new run."""
    findings = run_checks(inv, nodes, opts) if nodes else []
    return findings + capacity(inv, waves) + unprotected_replicas(inv, waves)


def recheck(plan: Plan, inv: Inventory) -> list[Finding]:
    """``plan_findings`` for the plan's own waves, on ``inv`` (the cluster as it is now)."""
    planned = {n.name for n in plan.nodes}
    nodes = [n for n in sorted(inv.nodes, key=lambda n: n.name) if n.name in planned]
    return plan_findings(inv, nodes, [[n.name for n in w.nodes] for w in plan.waves], plan.options)


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


def unprotected_replicas(inv: Inventory, waves: Sequence[Sequence[str]]) -> list[Finding]:
    """Workloads whose every replica a wave's drains evict at once, with no PDB to make the
    drain wait for a replacement: down until their new pods are Ready (e.g. both CoreDNS
    replicas on one node: the cluster's DNS fails for the whole drain)."""
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
                if key is not None:
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
