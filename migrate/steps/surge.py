"""Surge before evict, carried out by a node's drain (why and what: ``migrate.surge``).

For each Deployment the plan names for the node: scale up with the record, wait for its
replacements Ready off the node, give the node's pods the lowest deletion cost, scale back
and drop the record. The record on the Deployment says where a killed run stopped, so each
call picks up from it; and a run that starts puts back every surge a killed run left
(``restore_all``) before it decides anything, so nothing stays scaled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from migrate import failpoints
from migrate.errors import Conflict, NotFound, StepFailed, SurgeUnreadable
from migrate.model import SURGE_ANNOTATION, DeploymentInfo, PodInfo, SurgeRecord
from migrate.ports import Cluster, Event, EventSink
from migrate.steps import StepContext
from migrate.surge import RETIRE_COST, deployment_of

CONFLICT_TRIES = 10  # a Deployment's controller writes its status as its pods change: a 409 is routine


def surge(ctx: StepContext, node: str, key: str, deadline: float, pods: Sequence[PodInfo]) -> tuple[list[PodInfo], str]:
    """Surge Deployment ``key`` (namespace/name) for the drain of ``node``, whose pods the
    drain listed as ``pods`` (the node is cordoned: none arrive since): the pods it retired
    (to wait for) and what happened, for the step's message.

    Someone else's change on the way ends the surge without a fight: a Deployment deleted
    is left deleted (a scale is a patch, which never creates), one whose replicas someone
    set keeps their count; either way its pods left on the node are the eviction loop's."""
    namespace, name = key.split("/", 1)
    mine = [p for p in pods if deployment_of(p) == (namespace, name) and not p.deleting]
    ours: SurgeRecord | None = None  # the record this call found or wrote
    conflicts = 0
    try:
        while True:
            ctx.check_stop(node)
            d = ctx.cluster.deployment(namespace, name)
            if d.unreadable_surge is not None:
                # Edited since the run began (a run refuses to start on one): a new surge would
                # overwrite the only trace of the count it was surged from.
                raise StepFailed(f"cannot drain {node}: {unreadable(d)}", node=node, check="surge")
            record = d.surge
            if record is not None and (record.node != node or record.plan != ctx.plan_id):
                # Another node of the wave surges it now: one surge at a time keeps the counts exact.
                _wait_turn(ctx, node, d, deadline)
                continue
            if record is not None and d.replicas != record.original + record.extra:
                # Scaled by someone else since the surge began: their count stands.
                put_back(ctx.cluster, d)
                said = (
                    f"{key}: scaled to {d.replicas} by someone else during its surge for {node} "
                    f"(from {record.original}+{record.extra}): kept at {d.replicas}, the surge record removed; "
                    f"its pods on {node} are evicted under their budget"
                )
                _say(ctx, node, f"surge {said}")
                return [], said
            ours = record
            try:
                if record is None:
                    if not mine:
                        return [], f"{key}: no pod on {node}"
                    if not d.settled:
                        return [], f"{key}: its rollout is unfinished, so its pods are evicted under their budget"
                    record = SurgeRecord(original=d.replicas, extra=len(mine), node=node, plan=ctx.plan_id)
                    d = ctx.cluster.scale_deployment(d, d.replicas + len(mine), record)
                    ours = record
                    scaled = f"{record.original} -> {d.replicas} replicas before evicting from {node}"
                    _say(ctx, node, f"surge {key}: {scaled}")
                    failpoints.reached("surge-scaled")
                remaining = max(deadline - ctx.clock.monotonic(), 1.0)
                ready = ctx.cluster.wait_replicas_ready(d, record.original, node, remaining)
                if ready < record.original:
                    back = put_back(ctx.cluster, d)
                    raise StepFailed(
                        f"cannot drain {node}: {key}'s replacements were not Ready in time ({ready} of "
                        f"{record.original} Ready off {node}); scaled back to {back.replicas} replica(s), "
                        f"its pods on {node} untouched",
                        node=node,
                        check="surge",
                        observed=f"{ready} of {record.original} Ready off {node}",
                        expected=f"{record.original} Ready off {node} before its pods there are retired",
                    )
                for pod in mine:
                    if pod.deletion_cost != RETIRE_COST:
                        try:
                            ctx.cluster.set_deletion_cost(pod, RETIRE_COST)
                        except NotFound:
                            continue  # gone already: nothing to retire
                failpoints.reached("surge-retiring")
                ctx.cluster.scale_deployment(d, record.original, None)
            except Conflict:
                # Changed since it was read (its controller's status, or someone's edit): read it
                # again; the record it carries (or not) says where this surge is.
                conflicts += 1
                if conflicts > CONFLICT_TRIES:
                    raise
                continue
            return mine, f"{key} surged ({record.original}+{record.extra}; {len(mine)} retired)"
    except NotFound:
        # Deleted (by its owner, GitOps, an operator): nothing to scale back, and a patch
        # never brings it back.
        if ours is None:
            return [], f"{key} is gone"
        said = f"{key} was deleted during its surge for {node}: nothing to put back, its pods left there are evicted"
        _say(ctx, node, f"surge {said}")
        return [], said


def _wait_turn(ctx: StepContext, node: str, d: DeploymentInfo, deadline: float) -> None:
    """Until the surge another node holds on ``d`` is over (its record changed or gone),
    watching it. That surge runs to its end whatever a stop says (steps finish), so the
    wait does too; past the drain's deadline the step fails."""
    held = d.surge
    assert held is not None
    remaining = deadline - ctx.clock.monotonic()
    if remaining > 0:
        d = ctx.cluster.wait_deployment(d, lambda now: now.surge != held, remaining)
    if d.surge == held:
        raise StepFailed(
            f"cannot drain {node}: {d.key} is still surged for {held.node} (plan {held.plan})",
            node=node,
            check="surge",
        )


def put_back(cluster: Cluster, d: DeploymentInfo) -> DeploymentInfo:
    """The Deployment at its count before the surge, its record dropped. A count someone else
    set while the surge was on is theirs: kept, only the record dropped (taking the surge's
    pods off theirs could leave none: a 1+1 surge scaled to 1 by hand would go to 0).
    NotFound when it is gone."""
    for _ in range(CONFLICT_TRIES):
        record = d.surge
        if record is None:
            return d
        target = record.original if d.replicas == record.original + record.extra else d.replicas
        try:
            return cluster.scale_deployment(d, target, None)
        except Conflict:
            d = cluster.deployment(d.namespace, d.name)
    raise Conflict(f"Deployment {d.key} kept changing while its surge was put back")


def unreadable(d: DeploymentInfo) -> str:
    """What an operator needs to know and do about a Deployment whose surge record cannot be
    read, in one clause: which, what its record says, and the commands that fix it."""
    text = d.unreadable_surge or ""
    shown = json.dumps(text if len(text) <= 60 else text[:57] + "...")
    ns = f"kubectl -n {d.namespace}"
    return (
        f"Deployment {d.key} carries a surge record cni-migrate cannot read ({SURGE_ANNOTATION}: {shown}), "
        f"so the count it was surged from is unknown ({d.replicas} replica(s) now); set its intended count N "
        f"and remove the record: {ns} scale deployment/{d.name} --replicas=N && "
        f"{ns} annotate deployment/{d.name} {SURGE_ANNOTATION}-"
    )


def refuse_unreadable(deployments: Sequence[DeploymentInfo]) -> None:
    """Refuse a run, before it writes anything, while any Deployment carries a surge record
    that cannot be read: no run can put it back, and a new surge would overwrite it."""
    bad = [d for d in deployments if d.unreadable_surge is not None]
    if bad:
        raise SurgeUnreadable(
            "; ".join(unreadable(d) for d in bad) + "; then run again (nothing was changed)",
            deployments=[d.key for d in bad],
        )


def restore_all(cluster: Cluster, emit: EventSink, plan_id: str) -> list[str]:
    """Put back every surge a killed run left (any plan's: only cni-migrate writes the record,
    and only one executor runs); what was put back, for the audit log. A record that cannot
    be read was refused before the run (``refuse_unreadable``), and is left for the operator."""
    restored = []
    for d in cluster.surged_deployments():
        if d.surge is None:
            continue
        try:
            back = put_back(cluster, d)
        except NotFound:
            continue  # deleted since the list: nothing to put back
        cut = f"a surge for {d.surge.node} (plan {d.surge.plan}) was cut short"
        if back.replicas == d.surge.original:
            message = f"put back {d.key} to {back.replicas} replica(s): {cut}"
        else:
            message = f"kept {d.key} at {back.replicas} replica(s), set by someone else, its record removed: {cut}"
        emit(Event("surge", plan_id, node=d.surge.node, message=message))
        restored.append(message)
    return restored


def _say(ctx: StepContext, node: str, message: str) -> None:
    ctx.emit(Event("surge", ctx.plan_id, node=node, message=message))
