"""Drain: evict the node's pods through the Eviction API, respecting PodDisruptionBudgets.

Like ``kubectl drain``: DaemonSet and mirror pods stay; bare and emptyDir pods are evicted
only if the plan allows it. An eviction a PDB refuses is retried with backoff until the
plan's drain timeout; then the step fails naming the budget. Evicted pods are waited for
with the backend's watch. Re-running after a crash evicts only what is still there.
"""

from __future__ import annotations

from migrate.drain import DrainOptions, Verdict, classify, to_evict
from migrate.errors import EvictionRefused, NotFound, PermanentError, StepFailed, TemporaryError
from migrate.model import PodInfo
from migrate.plan import NodePlan
from migrate.ports import Event
from migrate.steps import StepContext

INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 5.0


def run(ctx: StepContext, node: NodePlan) -> str:
    opts = DrainOptions(force=ctx.options.force, delete_emptydir_data=ctx.options.delete_emptydir_data)
    deadline = ctx.clock.monotonic() + ctx.options.drain_timeout_seconds
    evicted: dict[str, PodInfo] = {}
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
            try:
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

    if evicted:
        left = ctx.cluster.wait_pods_gone(list(evicted.values()), max(deadline - ctx.clock.monotonic(), 1.0))
        if left:
            names = ", ".join(sorted(p.key for p in left))
            raise StepFailed(f"evicted pods did not terminate in time on {node.name}: {names}", node=node.name)
        return f"evicted {len(evicted)} pod(s): {named(sorted(p.key for p in evicted.values()))}"
    return "nothing to evict"


def named(keys: list[str], limit: int = 10) -> str:
    """The pods a drain evicted, for the audit log and the node's Event (which a change board
    reads: which workloads moved); a node of a hundred pods names its first ``limit``."""
    more = f", and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
