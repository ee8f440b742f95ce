"""How long a plan's nodes and waves take: the one duration model that the runbook prints
and the window gate (``apply --window-end``) decides with, so the two never disagree. Pure.

The model is deliberately simple and kept here alone (``STEP_SECONDS`` and the drain
constants): each step costs a fixed number of seconds, and a drain also costs
``DRAIN_SECONDS_PER_POD`` per pod on the node. The plan does not record pod counts, so the
caller may pass them (``pods_per_node``, e.g. from the inventory the plan was built from);
without them every node is assumed to carry ``ASSUMED_PODS_PER_NODE`` pods.

A wave's nodes are cordoned one by one, then go through the other steps
``node_parallelism`` at a time (the whole wave by default), each batch as long as its
slowest node (``wave_seconds``): a parallel wave of three takes about as long as one node,
not three. The run takes the sum of its waves. During a run, the window gate feeds the same
``wave_seconds`` with the durations it measured instead of the estimates (``window.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migrate.plan import FORWARD_STEPS, NodePlan, Plan, StepKind

STEP_SECONDS: Mapping[StepKind, int] = {
    StepKind.CORDON: 5,
    StepKind.DRAIN: 30,  # fixed part: listing pods, waiting for the last ones to terminate
    StepKind.SWAP_CNI: 90,  # label, Cilium agent restart until Ready, restart of the node's pods
    StepKind.VALIDATE: 60,  # the three probes
    StepKind.UNCORDON: 5,
}
DRAIN_SECONDS_PER_POD = 10  # eviction, graceful termination, PDB pacing
ASSUMED_PODS_PER_NODE = 10  # used when the caller does not say how many pods a node has


@dataclass(frozen=True)
class Estimate:
    nodes: Mapping[str, int]  # node -> seconds
    waves: Mapping[int, int]  # wave index -> seconds
    total: int
    assumed_pods: bool  # True when pod counts were not given and ASSUMED_PODS_PER_NODE was used


def wave_seconds(node_seconds: Sequence[float], parallelism: int) -> float:
    """A wave of nodes taking ``node_seconds`` each: cordoned one by one, then the rest of
    their steps ``parallelism`` at a time (0: all at once), each batch as long as its slowest."""
    if not node_seconds:
        return 0.0
    cordon = STEP_SECONDS[StepKind.CORDON]
    width = parallelism or len(node_seconds)
    rest = [max(s - cordon, 0) for s in node_seconds]
    batches = [rest[i : i + width] for i in range(0, len(rest), width)]
    return cordon * len(node_seconds) + sum(max(b) for b in batches)


def estimate(plan: Plan, pods_per_node: Mapping[str, int] | None = None) -> Estimate:
    """Seconds per node, per wave and in all, by the model in the module docstring."""

    def pods(node: NodePlan) -> int:
        return ASSUMED_PODS_PER_NODE if pods_per_node is None else max(pods_per_node.get(node.name, 0), 0)

    fixed = sum(STEP_SECONDS[k] for k in FORWARD_STEPS)
    nodes = {n.name: fixed + DRAIN_SECONDS_PER_POD * pods(n) for n in plan.nodes}
    parallelism = plan.options.node_parallelism
    waves = {w.index: int(wave_seconds([nodes[n.name] for n in w.nodes], parallelism)) for w in plan.waves}
    return Estimate(nodes=nodes, waves=waves, total=sum(waves.values()), assumed_pods=pods_per_node is None)
