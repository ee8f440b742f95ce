"""Drain: evict the node's pods through the Eviction API, respecting PodDisruptionBudgets.

Like ``kubectl drain``: DaemonSet and mirror pods stay; bare and emptyDir pods are evicted
only if the plan allows it. An eviction a PDB refuses is retried with backoff until the
plan's drain timeout; then the step fails naming the budget. Evicted pods are waited for
with the backend's watch. Re-running after a crash evicts only what is still there.

First, the Deployments the plan surges that have a pod here get their replacements Ready
elsewhere and their pods here retired (``steps/surge.py``); the eviction loop then moves
the rest, and evicts under its budget anything a surge left behind. A pod of a Deployment
the plan hands off (a UDP Service's backend, ``migrate.handoff``) is first taken out of its
Services and evicted only once their endpoints no longer list it (``steps/handoff.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from migrate.drain import DrainOptions, Verdict, classify, to_evict
from migrate.errors import EvictionRefused, NotFound, PermanentError, StepFailed, TemporaryError
from migrate.model import PodInfo
from migrate.plan import NodePlan
from migrate.ports import Event
from migrate.steps import StepContext
from migrate.steps.handoff import hand_off
from migrate.steps.surge import surge
from migrate.surge import deployment_of

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 5.0


def run(ctx: StepContext, node: NodePlan) -> str:
    opts = DrainOptions(force=ctx.options.force, delete_emptydir_data=ctx.options.delete_emptydir_data)
    deadline = ctx.clock.monotonic() + ctx.options.drain_timeout_seconds
    evicted: dict[str, PodInfo] = {}
    # Retired pods are deleted by their ReplicaSet; one it has not marked yet is evicted
    # below like any other (its budget allows it now: the replacements are Ready).
    retired: dict[str, PodInfo] = {}
    surged: list[str] = []
    handed: list[str] = []
    here = ctx.cluster.pods_on_node(node.name) if ctx.surges else []
    for key in surged_here(ctx, here):
        pods, note = surge(ctx, node.name, key, deadline, here)
        retired.update((p.uid, p) for p in pods)
        surged.append(note)
    backoff = INITIAL_BACKOFF
    refused_by: dict[str, str] = {}
    while True:
        ctx.check_stop(node.name)
        verdicts = classify(ctx.cluster.pods_on_node(node.name), opts)
        refused = [v for v in verdicts if v.verdict is Verdict.REFUSE]
        if refused:
            listed = "; ".join(f"{v.pod.key}: {v.message}" for v in refused)
            raise StepFailed(f"cannot drain {node.name}: {listed}", node=node.name)
        pending = [p for p in to_evict(verdicts) if p.uid not in evicted]
        refused_by.clear()
        for pod in pending:
            owner = deployment_of(pod)
            handoff = ctx.handoffs.get(f"{owner[0]}/{owner[1]}") if owner is not None else None
            try:
                if handoff is not None:
                    handed.append(hand_off(ctx, node.name, handoff, pod, deadline))
                ctx.cluster.evict(pod)
                evicted[pod.uid] = pod
            except EvictionRefused as exc:
                refused_by[pod.key] = str(exc.context.get("pdb", "")) or exc.message
            except NotFound:
                continue  # gone already: nothing to evict
            except PermanentError as exc:
                # e.g. two PDBs select the pod: waiting will not change the answer.
                raise StepFailed(f"cannot drain {node.name}: {exc.message}", node=node.name) from exc
            except TemporaryError as exc:
                refused_by[pod.key] = exc.message
        if not refused_by:
            break
        remaining = deadline - ctx.clock.monotonic()
        if remaining <= 0:
            blockers = ", ".join(f"{pod} (blocked by {why})" for pod, why in sorted(refused_by.items()))
            raise StepFailed(
                f"drain of {node.name} timed out after {ctx.options.drain_timeout_seconds}s: "
                f"evictions refused for {blockers}",
                node=node.name,
                pdbs=sorted(set(refused_by.values())),
                check="evictions",
                observed=f"refused for {blockers}",
                expected=f"every pod evicted within {ctx.options.drain_timeout_seconds}s",
            )
        ctx.emit(
            Event(
                "wait",
                ctx.plan_id,
                node=node.name,
                message=f"{len(refused_by)} eviction(s) refused by PodDisruptionBudget, retrying in {backoff:.1f}s",
            )
        )
        ctx.clock.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, MAX_BACKOFF)

    said = "".join(f"; {note}" for note in surged + handed)
    moved = {**retired, **evicted}
    if moved:
        left = ctx.cluster.wait_pods_gone(list(moved.values()), max(deadline - ctx.clock.monotonic(), 1.0))
        if left:
            names = ", ".join(sorted(p.key for p in left))
            raise StepFailed(f"evicted pods did not terminate in time on {node.name}: {names}", node=node.name)
    if evicted:
        return f"evicted {len(evicted)} pod(s): {named(sorted(p.key for p in evicted.values()))}{said}"
    return f"nothing to evict{said}"


def surged_here(ctx: StepContext, pods: Sequence[PodInfo]) -> list[str]:
    """The plan's surged Deployments with a pod among the node's ``pods``."""
    found = (deployment_of(p) for p in pods if not p.deleting)
    return sorted({f"{d[0]}/{d[1]}" for d in found if d is not None} & ctx.surges)


def named(keys: list[str], limit: int = 10) -> str:
    """The pods a drain evicted, for the audit log and the node's Event (which a change board
    reads: which workloads moved); a node of a hundred pods names its first ``limit``."""
    more = f", and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
