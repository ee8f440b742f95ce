"""Reconcile: the live cluster against the journal, before any decision is made on either.

The journal says what our runs did; the cluster says what is. Before apply, resume,
rollback and finalize act, and whenever status reports, the executor reads each node's
live state (``observe``: one node list) and this module decides, with no I/O, what the
difference means:

- a node the journal calls migrated that no longer carries the migration label is not on
  Cilium (Cilium's per-node configuration selects nodes by that label): it is migrated
  again, from its cordon, and the run reports it;
- a node the journal calls pending, failed or rolled back whose live CNI configuration is
  Cilium's (and which carries the label) is recorded as migrated, never drained or swapped
  again: another run, or another plan, already moved it;
- a node of the plan that is gone from the cluster (removed, or replaced by a new machine
  of the same name) is recorded as gone: nothing is done to it and nothing waits for it;
- a node that comes back with the plan's UID is pending again.

Reading a node's CNI configuration is a node task (a pod on the node), so ``needs_cni``
names only the nodes whose decision depends on it; the label answers for the rest. The
label and the configuration can disagree only when someone edits a node by hand: a
completed run applied again reads every migrated node's configuration, and finalize,
which removes Calico, reads every node's (``finalize_blockers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from migrate.journal import NodeState, RunState
from migrate.model import MIGRATION_LABEL, Cni, NodeInfo
from migrate.plan import Plan

FOUND_MIGRATED = "found on Cilium on the live cluster (label and CNI configuration): not drained or swapped again"
GONE = "gone from the cluster (removed, or replaced by another machine of the same name): nothing done to it"
BACK = "back in the cluster: pending again"


@dataclass(frozen=True)
class LiveNode:
    """One node as the cluster shows it now. ``cni`` is read from the node's CNI
    configuration only where a decision needs it; None: not read."""

    name: str
    uid: str
    labelled: bool  # carries the migration label: Cilium's per-node configuration selects it
    unschedulable: bool
    ready: bool
    control_plane: bool = False
    cni: Cni | None = None

    @property
    def on_cilium(self) -> bool:
        """On Cilium as far as what was read says: the label, and the configuration if read."""
        return self.labelled and self.cni in (None, Cni.CILIUM)

    def describe(self) -> str:
        cni = self.cni.value if self.cni is not None else ("cilium" if self.labelled else "calico")
        parts = [cni if self.cni is not None else f"{cni} (by its label)"]
        if self.unschedulable:
            parts.append("cordoned")
        if not self.ready:
            parts.append("NotReady")
        return ", ".join(parts)


def live_node(info: NodeInfo) -> LiveNode:
    return LiveNode(
        name=info.name,
        uid=info.uid,
        labelled=info.labels.get(MIGRATION_LABEL) == "true",
        unschedulable=info.unschedulable,
        ready=info.ready,
        control_plane=info.control_plane,
    )


def live_map(nodes: Iterable[NodeInfo]) -> dict[str, LiveNode]:
    return {n.name: live_node(n) for n in nodes}


@dataclass(frozen=True)
class Drift:
    """A node whose journal record and live state disagree, and what is done about it."""

    node: str
    journal: NodeState
    to: NodeState  # the record the node gets
    message: str


def present(plan: Plan, live: Mapping[str, LiveNode], name: str) -> bool:
    """The plan's node is in the cluster: same name and same machine (UID)."""
    node = live.get(name)
    return node is not None and node.uid == plan.cluster.nodes_by_name.get(name, node.uid)


def needs_cni(plan: Plan, state: RunState, live: Mapping[str, LiveNode], *, verify_migrated: bool = False) -> list[str]:
    """Nodes whose CNI configuration must be read before ``drift`` can decide: labelled
    nodes the journal does not call migrated (is the label's promise kept?), and with
    ``verify_migrated`` (a completed run applied again) the labelled migrated ones too."""
    asked = {NodeState.PENDING, NodeState.FAILED, NodeState.ROLLED_BACK}
    if verify_migrated:
        asked.add(NodeState.MIGRATED)
    return [
        name
        for name, run in state.nodes.items()
        if present(plan, live, name) and live[name].labelled and live[name].cni is None and run.state in asked
    ]


def drift(plan: Plan, state: RunState, live: Mapping[str, LiveNode]) -> list[Drift]:
    """What the forward run (apply, resume) must change in the journal to match the cluster.
    Nodes under way (in progress, rolling back) are left to their steps, which look first."""
    found: list[Drift] = []
    for name, run in state.nodes.items():
        here = present(plan, live, name)
        if run.state is NodeState.GONE:
            if here:
                found.append(Drift(name, run.state, NodeState.PENDING, BACK))
            continue
        if not here:
            found.append(Drift(name, run.state, NodeState.GONE, GONE))
            continue
        node = live[name]
        if run.state is NodeState.MIGRATED and not node.on_cilium:
            found.append(
                Drift(
                    name,
                    run.state,
                    NodeState.PENDING,
                    f"the journal says migrated, the live node is {node.describe()}: migrating it again",
                )
            )
        elif (
            run.state in (NodeState.PENDING, NodeState.FAILED, NodeState.ROLLED_BACK)
            and node.labelled
            and node.cni is Cni.CILIUM
        ):
            found.append(Drift(name, run.state, NodeState.MIGRATED, FOUND_MIGRATED))
    return found


def disagreement(plan: Plan, name: str, journal: NodeState, live: Mapping[str, LiveNode]) -> str:
    """What status shows beside a node whose journal record and live state differ ("" when
    they agree), from one node list and no node task: the label stands for the CNI."""
    if not present(plan, live, name):
        return "" if journal is NodeState.GONE else "gone from the cluster"
    node = live[name]
    if journal is NodeState.GONE:
        return "back in the cluster: the next apply takes it up again"
    if journal is NodeState.MIGRATED and not node.labelled:
        return "the journal says migrated, the node has no migration label (Calico): the next apply migrates it again"
    if journal in (NodeState.PENDING, NodeState.FAILED, NodeState.ROLLED_BACK) and node.labelled:
        return f"the journal says {journal.value}, the node carries the migration label (Cilium)"
    return ""


def rollback_candidates(plan: Plan, state: RunState, live: Mapping[str, LiveNode]) -> list[str]:
    """Nodes a rollback of the whole run puts back: every node the journal touched, and
    every node of the plan that carries the migration label whatever the journal says
    (our records are never a reason to leave a node on Cilium). Gone nodes are left out."""
    return [
        n.name
        for n in plan.nodes
        if present(plan, live, n.name)
        and (state.nodes[n.name].state not in (NodeState.PENDING, NodeState.GONE) or live[n.name].labelled)
    ]


def off_calico(node: LiveNode) -> bool:
    """Something of Cilium's is on the node: its label, or a CNI configuration that is not Calico's."""
    return node.labelled or (node.cni is not None and node.cni is not Cni.CALICO)


def finalize_blockers(plan: Plan, live: Mapping[str, LiveNode]) -> list[str]:
    """Every live node that is not on Cilium, in the plan or not, each with why: finalize
    must not leave migration mode or remove Calico while one remains. Pass ``live`` with
    every node's ``cni`` read for the full check; unread nodes are judged by their label."""
    planned = {n.name for n in plan.nodes}
    excluded = set(plan.cluster.nodes_by_name) - planned
    blockers = []
    for name, node in sorted(live.items()):
        if node.on_cilium:
            continue
        if name in excluded:
            why = "excluded from the plan"
        elif name not in planned:
            why = "not in the plan (added since)"
        else:
            why = "in the plan"
        blockers.append(f"{name} ({node.describe()}; {why})")
    return blockers
