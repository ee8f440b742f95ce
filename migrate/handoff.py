"""UDP hand-off: which drains take a pod out of its UDP Services before stopping it, decided
from the inventory (pure, no I/O).

Why (e2e/README.md, "Why one CoreDNS eviction fails lookups"): kube-proxy deletes the UDP
conntrack entries that translate a Service's address to a backend only when that backend
stops *serving*, i.e. when its container has exited or its pod object is gone. An evicted
CoreDNS pod is marked terminating, kube-proxy stops choosing it for new flows, and it keeps
answering through its lameduck; but every earlier query left an entry (one 5-tuple each,
kept 30-120 s), and a new query whose random source port matches one still goes to the old
pod. Once it exits, those queries time out, from every node, until its endpoint is gone: a
3-5 s blink of the cluster's DNS for each CoreDNS pod a drain evicts, with the other
replica answering all along.

So a drain hands such a pod off first:

1. check with a dry-run eviction that its budget allows the disruption (the label change
   below is not an eviction, so the budget is asked explicitly);
2. remove the label keys its UDP Services select on, and set ``cni-migrate.io/handoff`` with
   a record of what was removed (one PATCH): every Service drops it from its EndpointSlices,
   kube-proxy deletes the conntrack entries to it while it still answers, and its
   ReplicaSet (whose selector usually shares the key) lets it go and starts a replacement;
3. wait until the Services' EndpointSlices no longer list it (a watch), then a few seconds
   more for every node's kube-proxy to apply that (its sync period is 1 s);
4. delete it: its grace period and preStop still run.

A Deployment's pods on a wave's node are handed off when at least one Service with a UDP
port selects them and that Service has a Ready backend off the wave's nodes (else taking the
pod out would leave the Service with no endpoint before its replacement is Ready, where an
eviction keeps it answering through its grace period). Surged Deployments are left to the
surge (their pods are retired by a scale-down). StatefulSet and bare pods are not handed
off: a StatefulSet's replacement keeps the pod's name and cannot start beside it. The label
change also takes the pod out of any NetworkPolicy that selects it by those keys: a
namespace with a default-deny policy may then drop the answers the old pod still sends (no
worse than the eviction's blink).
``--without-handoff`` turns it off.

``steps/handoff.py`` carries the four steps out; a run that starts (apply, resume,
rollback) first deletes every pod a killed run had handed off (it is out of its Services
and replaced already).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from migrate.model import Inventory, PodInfo, ServiceInfo
from migrate.plan import Handoff
from migrate.surge import Surges, deployment_of

# After the endpoint has left the EndpointSlices: kube-proxy applies a change within its
# sync period (1 s by default; 0.8-3.5 s measured on the loaded e2e lab) and deletes the
# conntrack entries to a removed UDP endpoint in the same sync.
SETTLE_SECONDS = 3.0


def decide(inv: Inventory, waves: Sequence[Sequence[str]], surges: Surges) -> dict[str, tuple[Handoff, ...]]:
    """Per node of ``waves``, the Deployments its drain hands off (in name order)."""
    by_namespace: dict[str, list[ServiceInfo]] = {}
    for service in inv.udp_services:
        if service.selector:
            by_namespace.setdefault(service.namespace, []).append(service)
    if not by_namespace:
        return {}
    # Where each Service has a Ready backend now: a hand-off takes a pod out of its Service
    # at once, so it is only done where another backend, off the wave, keeps answering.
    serving: dict[str, set[str]] = {}
    for pod in inv.pods:
        if pod.ready and pod.node and not pod.deleting:
            for service in by_namespace.get(pod.namespace, ()):
                if service.selects(pod):
                    serving.setdefault(service.key, set()).add(pod.node)
    out: dict[str, tuple[Handoff, ...]] = {}
    for wave in waves:
        others = {key: nodes - set(wave) for key, nodes in serving.items()}
        answered = {ns: [s for s in services if others.get(s.key)] for ns, services in by_namespace.items()}
        for node in wave:
            found = handoffs_for(inv.evictable_on(node), answered, surges)
            if found:
                out[node] = found
    return out


def handoffs_for(
    pods: Sequence[PodInfo], by_namespace: Mapping[str, Sequence[ServiceInfo]], surges: Surges
) -> tuple[Handoff, ...]:
    """The hand-offs for a node's evictable ``pods``: one per Deployment with a pod that a
    UDP Service selects and that its surge does not retire."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for pod in pods:
        services = [s for s in by_namespace.get(pod.namespace, ()) if s.selects(pod)]
        owner = deployment_of(pod)
        if not services or owner is None or surges.covers(pod):
            continue
        names, keys = found.setdefault(f"{owner[0]}/{owner[1]}", (set(), set()))
        for s in services:
            names.add(s.name)
            keys.update(s.selector)
    return tuple(
        Handoff(key, tuple(sorted(names)), tuple(sorted(keys))) for key, (names, keys) in sorted(found.items())
    )
