"""A node that dies under its own step: what the steps run *on* a node (swap-cni, validate,
restore-cni) require of it, and what a failure on a node that went NotReady means.

Those steps start pods on the node and wait for them (a Cilium agent, node tasks, probe
pods). A node that stops (power, kernel panic, kubelet gone) fails them only when their
waits time out, and the failure would then be blamed on the step: a validation "failed",
and the put-back that follows runs restore-cni on a node that runs nothing, failing again.
So the step runner asks this module, and the answer for a NotReady node is ``NodeLost``:

- **before** such a step: the node must be Ready; a NotReady one is waited for (one watch,
  bounded by the run's agent timeout, as a reboot is), then the run stops with ``NodeLost``;
- **after** such a step did not succeed: if the node is NotReady now, the outcome is
  ``NodeLost``, whatever the step raised. No put-back is tried, and the run stops as a stop
  does: the wave's other nodes halt at their next step boundary, no further node starts,
  the journal stays resumable (exit 7, the node named);
- **on resume** (the step's record says the node was lost): once it is Ready again its CNI
  configuration is read, reported, and decides. Interrupted in swap-cni, the swap runs
  again (it looks first: a node that came back on Cilium keeps it, one on Calico is
  swapped), then validation judges it. Interrupted in validate, a node back on Cilium is
  validated again from the first check; one that came back on another CNI (its swap lost
  with the machine: reimaged, its disk restored) fails its validation on that check, and
  is put back like any node that fails validation (exit 4).

Why stop rather than put the node back when it returns: putting back needs the node too
(restore-cni is a pod on it), so an executor that waited would hold the whole window on
one machine; and a node that died mid-swap is a machine someone must look at before more
nodes are taken out. The journal already says where the node stopped, and every step looks
at the live state first, so finishing it later is the ordinary resume. A node that never
comes back is left to the operator: ``rollback`` waits for it in the same way, and a node
deleted from the cluster is recorded as gone by the next run.
"""

from __future__ import annotations

from collections.abc import Mapping

from migrate.errors import ClusterError, NodeLost, ValidationFailed
from migrate.model import Cni
from migrate.plan import StepKind
from migrate.ports import Event
from migrate.steps import StepContext

# The steps that run pods on their node and so need it up.
ON_NODE = frozenset({StepKind.SWAP_CNI, StepKind.VALIDATE, StepKind.RESTORE_CNI})
# The check a node loss is recorded under (a step record's detail), so a resume knows it.
NODE_READY = "node-ready"


def lost(node: str, kind: StepKind, why: str) -> NodeLost:
    return NodeLost(
        f"{node} went NotReady during {kind.value} ({why}); stopped before touching another node: "
        f"bring {node} back, then 'cni-migrate resume' (or 'rollback')",
        node=node,
        check=NODE_READY,
        observed="NotReady",
        expected="Ready",
    )


def was_lost(detail: Mapping[str, str]) -> bool:
    """A step record's detail says the step stopped because its node was lost."""
    return detail.get("check") == NODE_READY


def require_ready(ctx: StepContext, node: str, kind: StepKind) -> None:
    """Before a step run on the node: the node Ready, waited for (watched) up to the agent
    timeout when it is not; ``NodeLost`` when it stays NotReady."""
    if ctx.cluster.get_node(node).ready:
        return
    ctx.emit(
        Event(
            "wait",
            ctx.plan_id,
            node=node,
            step=kind.value,
            message=f"{node} is NotReady: waiting up to {ctx.agent_timeout:g}s for it before {kind.value}",
        )
    )
    if not ctx.cluster.wait_node_ready(node, ctx.agent_timeout).ready:
        raise lost(node, kind, f"still NotReady after {ctx.agent_timeout:g}s")


def came_back(ctx: StepContext, node: str, kind: StepKind) -> None:
    """On resume of a step its node's loss stopped, the node Ready again: read the node's CNI
    configuration (the cluster is the truth), report it, and refuse to validate a node that
    came back off Cilium (see the module docstring)."""
    cni = ctx.cluster.node_cni(node)
    if kind is StepKind.VALIDATE and cni is not Cni.CILIUM:
        raise ValidationFailed(
            f"validation of {node} failed: cni: it came back from NotReady on {cni.value}, "
            "its swap to Cilium lost; putting it back",
            node=node,
            check="cni",
            observed=cni.value,
            expected=Cni.CILIUM.value,
        )
    going_on = {
        StepKind.SWAP_CNI: "swapping it again (the swap looks first)",
        StepKind.VALIDATE: "validating it again",
        StepKind.RESTORE_CNI: "putting it back again",
    }[kind]
    ctx.emit(
        Event(
            "node-back",
            ctx.plan_id,
            node=node,
            step=kind.value,
            message=f"{node} is Ready again after it was lost in {kind.value}; its CNI configuration is "
            f"{cni.value}: {going_on}",
        )
    )


def judge_failure(ctx: StepContext, node: str, kind: StepKind) -> NodeLost | None:
    """After a step run on the node did not succeed: ``NodeLost`` if the node is NotReady now
    (the failure is the node's, not the step's), else None (the step's outcome stands)."""
    try:
        info = ctx.cluster.get_node(node)
    except ClusterError:
        return None  # the API is away: the step's own outcome (interrupted, resumable) stands
    if info.ready:
        return None
    return lost(node, kind, "its step could not finish")
