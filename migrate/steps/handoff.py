"""UDP hand-off in a drain (``migrate.handoff`` says why and when): take a pod out of its UDP
Services while it still answers, wait until their EndpointSlices no longer list it and
every node's kube-proxy has had time to flush the conntrack entries to it (the backend's
``wait_endpoint_gone`` covers both), then let the drain's eviction stop it.

Each write carries its own record: the label change and the ``cni-migrate.io/handoff``
label and annotation go in one PATCH, so a kill cannot leave a pod out of its Services
without the mark that finds it again. A run that starts deletes every pod so marked
(``finish_all``): it is out of its Services and its ReplicaSet has replaced it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence

from migrate import failpoints
from migrate.errors import NotFound
from migrate.model import HANDOFF_LABEL, PodInfo
from migrate.plan import Handoff
from migrate.ports import Cluster, Event, EventSink
from migrate.steps import StepContext

ENDPOINT_TIMEOUT = 60.0


def record(handoff: Handoff, pod: PodInfo, plan_id: str) -> str:
    """The annotation's JSON: the labels removed (with their values, to tell a person what the
    pod was), the Services, the plan."""
    removed = {k: pod.labels[k] for k in handoff.labels if k in pod.labels}
    return json.dumps(
        {"labels": removed, "services": list(handoff.services), "plan": plan_id}, sort_keys=True, separators=(",", ":")
    )


def services_of(pod: PodInfo, annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The Services a handed-off pod was taken out of, from its record ("" when unreadable:
    then only its label's Service is known)."""
    try:
        services = tuple(str(s) for s in json.loads(annotations.get(HANDOFF_LABEL, ""))["services"])
    except (ValueError, TypeError, KeyError):
        services = ()
    return services or ((pod.labels[HANDOFF_LABEL],) if pod.labels.get(HANDOFF_LABEL) else ())


# One hand-off per Deployment at a time in this process (the nodes of a parallel wave drain
# in threads; one executor runs per cluster): a dry-run eviction reserves nothing, so two
# drains checking at once could each take a backend out and leave the Service empty.
_TURNS: dict[str, threading.Lock] = {}
_TURNS_LOCK = threading.Lock()


def _turn(deployment: str) -> threading.Lock:
    with _TURNS_LOCK:
        return _TURNS.setdefault(deployment, threading.Lock())


def hand_off(ctx: StepContext, node: str, handoff: Handoff, pod: PodInfo, deadline: float) -> str:
    """Take ``pod`` out of ``handoff``'s Services (unless a killed run did already), wait for
    its endpoint to go and the datapath to settle. The caller evicts it next. Raises
    EvictionRefused (its budget allows no disruption now: the drain retries) or NotFound.

    The plan's view is not enough at this moment: a pod is taken out only while another
    Ready endpoint of its Services, on another node, answers (a replacement may have landed
    on this very node, the other replica may have died); else it is evicted as it is, and
    keeps answering through its grace period as a terminating endpoint."""
    with _turn(handoff.deployment):
        return _hand_off(ctx, node, handoff, pod, deadline)


def _hand_off(ctx: StepContext, node: str, handoff: Handoff, pod: PodInfo, deadline: float) -> str:
    if HANDOFF_LABEL not in pod.labels:
        ctx.cluster.check_eviction(pod)  # the budget's word first: the label change is no eviction
        others = [
            address
            for address, where in ctx.cluster.serving_endpoints(pod.namespace, handoff.services)
            if address != pod.ip and where != (pod.node or node)
        ]
        if not others:
            message = (
                f"did not hand off {pod.key}: no other Ready endpoint of {', '.join(handoff.services)} "
                f"off {node} now; evicted as it is"
            )
            _say(ctx, node, message)
            return message
        ctx.cluster.hand_off(pod, handoff.labels, handoff.services[0], record(handoff, pod, ctx.plan_id))
        failpoints.reached("handoff-marked")
    wait = max(min(deadline - ctx.clock.monotonic(), ENDPOINT_TIMEOUT), 1.0)
    gone = ctx.cluster.wait_endpoint_gone(pod.namespace, handoff.services, pod.ip, wait) if pod.ip else True
    if not gone:
        message = (
            f"{pod.key} was still an endpoint of {', '.join(handoff.services)} {wait:.0f}s after its hand-off; "
            "stopping it anyway (UDP clients may retry)"
        )
        _say(ctx, node, message)
        return message
    message = f"handed off {pod.key} from {', '.join(handoff.services)}"
    _say(ctx, node, message)
    return message


def finish_all(cluster: Cluster, emit: EventSink, plan_id: str) -> list[str]:
    """Delete every pod a killed run handed off (any plan's: only cni-migrate writes the mark,
    and only one executor runs), once its Services no longer list it; what was done, for the
    audit log."""
    done = []
    for pod, marks in cluster.handed_off_pods():
        services = services_of(pod, marks)
        if services and pod.ip:
            cluster.wait_endpoint_gone(pod.namespace, services, pod.ip, ENDPOINT_TIMEOUT)
        try:
            cluster.delete_pod(pod)
        except NotFound:
            continue
        message = f"deleted {pod.key}: a hand-off from {', '.join(services) or 'its Services'} was cut short"
        emit(Event("handoff", plan_id, node=pod.node or "", message=message))
        done.append(message)
    return done


def merged(handoffs: Sequence[Handoff]) -> dict[str, Handoff]:
    """The plan's hand-offs by Deployment, over all its nodes (a pod may move to a node whose
    plan did not list it: a later drain hands it off too)."""
    out: dict[str, Handoff] = {}
    for h in handoffs:
        seen = out.get(h.deployment)
        out[h.deployment] = (
            h
            if seen is None
            else Handoff(
                h.deployment,
                tuple(sorted(set(seen.services) | set(h.services))),
                tuple(sorted(set(seen.labels) | set(h.labels))),
            )
        )
    return out


def _say(ctx: StepContext, node: str, message: str) -> None:
    ctx.emit(Event("handoff", ctx.plan_id, node=node, message=message))
