"""Surge before evict: which drains bring a workload's replacements up elsewhere before they
retire its pods on the node, decided from the inventory (pure, no I/O).

A drain evicts through the Eviction API, so a PodDisruptionBudget that allows no disruption
stops it for good (a single replica under ``minAvailable: 1``, ``maxUnavailable: 0``), and a
workload with no budget whose every Ready replica is on the wave's nodes is down until its
new pods are Ready. ``kubectl drain`` has no answer to either (kubernetes/kubernetes#66811).
A Deployment can run more pods than its replicas for a while, so its drain surges:

1. scale the Deployment to ``replicas + k`` (k: its pods on the node), writing the original
   count in the same request (annotation ``cni-migrate.io/surge``, ``model.SurgeRecord``):
   no kill can separate the change from its record;
2. wait until ``replicas`` Ready pods run off the node (the node is cordoned, so the new
   ones land elsewhere);
3. give the node's pods the lowest ``controller.kubernetes.io/pod-deletion-cost``;
4. scale back to the original count and drop the record, in one request: the ReplicaSet
   controller deletes the lowest-cost pods first among Ready ones, i.e. the node's.

Why scale back instead of evicting once the budget allows: the disruption controller
counts a Deployment's expected pods from its scale, so with ``maxUnavailable: 0`` (or a
percentage) a surge raises the desired count with the healthy one and the eviction is still
refused; retiring by scale-down removes exactly the node's pods, with their replacements
already Ready, whatever the budget's form. A pod another disruption made unready ranks
before cost, so the drain's eviction loop then evicts what is left under the budget as ever.

Not surged, each with a finding that says so and what to do: StatefulSets (a pod's identity
is unique: its replacement cannot run beside it; their downtime is estimated instead),
autoscaled Deployments (the HorizontalPodAutoscaler owns the replicas and would undo a
surge), Deployments under GitOps self-heal (the controller reverts the change), Deployments
mid-rollout (a scale is spread over old and new ReplicaSets), and, with ``--max-surge N``,
what would exceed N extra pods in one wave. ``--without-surge`` turns it off.

The plan lists, per node, the Deployments its drain surges as the cluster stands; a run
surges a listed Deployment wherever a drain finds its pods (a surged pod moves, and a later
wave's drain may find it again). A Deployment that is stranded only by the run's own moves
(two replicas with no budget that end up on one node) is not surged: the
``unprotected-replicas`` finding asks for a budget, which makes the drain wait instead.

``steps/surge.py`` carries the four steps out; a run that starts (apply, resume, rollback)
first puts back any surge a killed run left (``steps/surge.restore_all``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from migrate.model import DeploymentInfo, Inventory, PDBInfo, PodInfo
from migrate.plan import Finding, PlanOptions, Severity

# The lowest pod-deletion-cost (an int32): the ReplicaSet controller removes these first.
RETIRE_COST = -(2**31)


def deployment_of(pod: PodInfo) -> tuple[str, str] | None:
    """(namespace, name) of the Deployment a pod belongs to, from its controller: a
    ReplicaSet named ``<deployment>-<pod-template-hash>`` (the simulation names the
    Deployment itself). None for any other pod."""
    owner = pod.owner
    if owner is None:
        return None
    if owner.kind == "Deployment":
        return pod.namespace, owner.name
    if owner.kind == "ReplicaSet":
        suffix = pod.labels.get("pod-template-hash", "")
        if suffix and owner.name.endswith("-" + suffix):
            return pod.namespace, owner.name[: -len(suffix) - 1]
    return None


# The marks GitOps controllers leave on what they apply (self-heal is a setting of the
# controller's own object, not visible here: a mark means "may be reverted").
GITOPS_MARKS = (
    ("argocd.argoproj.io/tracking-id", "Argo CD"),  # annotation tracking (Argo CD 3's default)
    ("argocd.argoproj.io/instance", "Argo CD"),  # label tracking with Argo CD's own key
    ("kustomize.toolkit.fluxcd.io/name", "Flux"),  # a Flux Kustomization applied it
    ("helm.toolkit.fluxcd.io/name", "Flux"),  # a Flux HelmRelease applied it
)


def gitops_manager(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """The GitOps controller whose mark an object carries ("Argo CD", "Flux"), "" if none.
    (``app.kubernetes.io/instance``, Argo CD's old default, is not a mark: Helm sets it too.)"""
    for key, manager in GITOPS_MARKS:
        if key in labels or key in annotations:
            return manager
    return ""


@dataclass(frozen=True)
class Surges:
    """Per node, the Deployments (``namespace/name``) its drain surges; and the findings."""

    by_node: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()

    def on(self, node: str) -> tuple[str, ...]:
        return self.by_node.get(node, ())

    def covers(self, pod: PodInfo) -> bool:
        """The pod is retired by its node's surge, not evicted."""
        found = deployment_of(pod)
        return found is not None and f"{found[0]}/{found[1]}" in self.by_node.get(pod.node or "", ())


NO_SURGES = Surges()


@dataclass(frozen=True)
class _Risk:
    node: str
    deployment: DeploymentInfo
    pods: tuple[PodInfo, ...]
    why: str


def decide(inv: Inventory, waves: Sequence[Sequence[str]], opts: PlanOptions) -> Surges:
    """Which drains surge which Deployments, and the findings about what cannot surge."""
    deployments = {(d.namespace, d.name): d for d in inv.deployments}
    autoscaled = {(a.namespace, a.target_name): a.key for a in inv.autoscalers if a.target_kind == "Deployment"}
    risks = _at_risk(inv, waves, deployments)
    by_node: dict[str, list[str]] = {}
    notes: dict[str, list[str]] = {"autoscaled": [], "gitops": [], "rollout": [], "limit": []}
    for wave in waves:
        extra = 0
        for risk in (r for r in risks if r.node in wave):
            d = risk.deployment
            shown = f"Deployment {d.key} on {risk.node} ({risk.why})"
            if (d.namespace, d.name) in autoscaled:
                notes["autoscaled"].append(
                    f"{shown}: scaled by HorizontalPodAutoscaler {autoscaled[d.namespace, d.name]}"
                )
            elif d.gitops:
                notes["gitops"].append(f"{shown}: managed by {d.gitops}")
            elif not d.settled:
                notes["rollout"].append(shown)
            elif opts.max_surge and extra + len(risk.pods) > opts.max_surge:
                notes["limit"].append(
                    f"{shown}: {len(risk.pods)} more pod(s) would exceed --max-surge {opts.max_surge}"
                )
            else:
                extra += len(risk.pods)
                by_node.setdefault(risk.node, []).append(d.key)
    findings = _findings(notes) + statefulset_downtime(inv, waves)
    return Surges({n: tuple(sorted(set(keys))) for n, keys in by_node.items()}, tuple(findings))


def _at_risk(
    inv: Inventory, waves: Sequence[Sequence[str]], deployments: Mapping[tuple[str, str], DeploymentInfo]
) -> list[_Risk]:
    """Deployments whose pods a drain would strand: a budget allowing no disruption selects
    them, or no budget does and none of their Ready replicas runs off the wave's nodes."""
    ready_on = _ready_nodes(inv, deployment_of)
    pdbs: dict[str, list[PDBInfo]] = {}
    for pdb in inv.pdbs:
        pdbs.setdefault(pdb.namespace, []).append(pdb)
    risks: list[_Risk] = []
    for wave in waves:
        members = set(wave)
        for node in sorted(wave):
            groups: dict[tuple[str, str], list[PodInfo]] = {}
            for pod in inv.evictable_on(node):
                key = deployment_of(pod)
                if key is not None and key in deployments and not pod.deleting:
                    groups.setdefault(key, []).append(pod)
            for key, pods in sorted(groups.items()):
                budgets = [p for p in pdbs.get(key[0], ()) if p.selects(pods[0])]
                closed = [p.key for p in budgets if p.disruptions_allowed <= 0]
                if closed:
                    why = f"PodDisruptionBudget {', '.join(closed)} allows no disruption"
                elif not budgets and not (set(ready_on.get(key, ())) - members):
                    d = deployments[key]
                    why = "its only replica" if d.replicas <= 1 else "every Ready replica is in this wave"
                else:
                    continue
                risks.append(_Risk(node, deployments[key], tuple(pods), why))
    return risks


def _ready_nodes(
    inv: Inventory, workload_of: Callable[[PodInfo], tuple[str, str] | None]
) -> dict[tuple[str, str], list[str]]:
    """Per workload (``workload_of`` a pod: its namespace and name, None for no workload
    of the kind), the node of each of its Ready replicas, one entry a replica."""
    found: dict[tuple[str, str], list[str]] = {}
    for pod in inv.pods:
        key = workload_of(pod)
        if key is not None and pod.ready and not pod.deleting and pod.node:
            found.setdefault(key, []).append(pod.node)
    return found


def _statefulset_of(pod: PodInfo) -> tuple[str, str] | None:
    return (pod.namespace, pod.owner.name) if pod.owner is not None and pod.owner.kind == "StatefulSet" else None


def _findings(notes: Mapping[str, list[str]]) -> list[Finding]:
    texts = {
        "autoscaled": (
            "not surged, their autoscaler owns the replicas and would undo a surge",
            "raise the HorizontalPodAutoscaler's minReplicas by one for the window (or relax the budget)",
        ),
        "gitops": (
            "not surged, a GitOps self-heal would revert the change (and any budget relaxed by hand)",
            "make the change in Git for the window, or suspend the sync of these workloads",
        ),
        "rollout": (
            "not surged while their rollout is unfinished (a scale would spread over old and new ReplicaSets)",
            "let the rollout finish, then plan again",
        ),
        "limit": ("not surged, over the --max-surge limit", "raise --max-surge or lower --max-unavailable"),
    }
    findings = []
    for check, items in notes.items():
        if items:
            what, fix = texts[check]
            findings.append(
                Finding(
                    f"surge-{check}",
                    Severity.WARNING,
                    f"drains that would strand these: {'; '.join(items)}; {what}",
                    fix,
                    tuple(sorted({item.split()[1] for item in items})),
                )
            )
    return findings


def statefulset_downtime(inv: Inventory, waves: Sequence[Sequence[str]]) -> list[Finding]:
    """StatefulSets a wave takes down whole (every Ready replica on its nodes, and either one
    replica or no budget to make the drain wait): they cannot surge, so the plan says how
    long each is expected to be down (its pods' grace period plus how long one took from
    start to Ready; a minimum when that is unknown)."""
    ready_on = _ready_nodes(inv, _statefulset_of)
    items: dict[tuple[str, str], str] = {}
    for wave in waves:
        members = set(wave)
        for node in sorted(wave):
            for pod in inv.evictable_on(node):
                key = _statefulset_of(pod)
                if key is None or key in items or key not in ready_on or set(ready_on[key]) - members:
                    continue
                if len(ready_on[key]) > 1 and any(p.selects(pod) for p in inv.pdbs if p.namespace == pod.namespace):
                    continue  # the budget makes the drain wait for each replica to come back
                startup = f"{pod.startup_seconds:.0f}s" if pod.startup_seconds else "unknown"
                down = pod.grace_seconds + pod.startup_seconds
                items[key] = (
                    f"StatefulSet {key[0]}/{key[1]} on {'+'.join(sorted(set(ready_on[key])))}: about {down:.0f}s "
                    f"(grace {pod.grace_seconds}s, start to Ready {startup})"
                )
    if not items:
        return []
    return [
        Finding(
            "statefulset-downtime",
            Severity.WARNING,
            "a StatefulSet cannot surge (a pod's identity is unique), and a wave's drain stops every "
            f"Ready replica of these: {'; '.join(items[k] for k in sorted(items))}",
            "schedule the window for it, or add a replica on a node of another wave",
            tuple(f"{ns}/{name}" for ns, name in sorted(items)),
        )
    ]
