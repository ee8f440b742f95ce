"""UDP hand-off on both backends (migrate/handoff.py, migrate/steps/handoff.py): a drain takes
each CoreDNS pod out of the kube-dns Service before it evicts it, nothing is left marked,
and a hand-off a killed run left is finished by the next run before any node. On the real
control plane the EndpointSlice controller, the ReplicaSet controller and the disruption
controller decide."""

from __future__ import annotations

from migrate.journal import RunStatus
from migrate.model import HANDOFF_LABEL

KEY = "kube-system/coredns"


def coredns(backend):
    return [
        p
        for p in backend.cluster.inventory().pods
        if p.namespace == "kube-system" and p.name.startswith("coredns") and not p.deleting
    ]


def test_a_drain_hands_coredns_off_before_it_evicts_it(backend):
    backend.record_writes()  # before the plan: on the real cluster it binds the counting proxy
    plan = backend.plan()
    hosts = {p.node for p in coredns(backend)}
    assert {n.name for n in plan.nodes if n.handoff} == hosts
    assert all(h.deployment == KEY and h.services == ("kube-dns",) for n in plan.nodes for h in n.handoff)
    old = {p.uid: p for p in coredns(backend)}

    state = backend.executor(plan).apply()

    assert state.status is RunStatus.COMPLETED
    said = {e.message for e in backend.events if e.kind == "handoff"}
    # Every CoreDNS pod the plan saw, and any replacement a later wave's drain found.
    assert {f"handed off {p.key} from kube-dns" for p in old.values()} <= said
    assert all(m.startswith("handed off kube-system/coredns-") and m.endswith(" from kube-dns") for m in said)
    writes = backend.writes()
    for pod in old.values():
        # Its labels changed (the hand-off) before the eviction that stopped it.
        patched = [i for i, w in enumerate(writes) if _names(w, pod) and ("patch" in w.lower() or "hand-off" in w)]
        evicted = [i for i, w in enumerate(writes) if _names(w, pod) and "evict" in w]
        assert patched and evicted and patched[0] < evicted[-1], (pod.key, writes)
    backend.wait_settled()
    now = coredns(backend)
    assert len(now) == 2 and not {p.uid for p in now} & set(old)
    assert all(HANDOFF_LABEL not in p.labels for p in backend.cluster.inventory().pods)
    assert backend.cluster.handed_off_pods() == []


def test_a_handoff_a_killed_run_left_is_finished_before_any_node(backend):
    plan = backend.plan()
    victim = coredns(backend)[0]
    handoff = next(h for n in plan.nodes for h in n.handoff)
    # What a run killed right after its hand-off's patch leaves: the pod out of kube-dns, marked.
    backend.cluster.hand_off(
        victim, handoff.labels, "kube-dns", '{"labels":{},"plan":"0123456789ab","services":["kube-dns"]}'
    )
    assert [p.uid for p, _ in backend.cluster.handed_off_pods()] == [victim.uid]
    # Its ReplicaSet has let it go and started a replacement; the budget counts that one once
    # it is Ready (until then the run's live checks would say the budget allows nothing).
    backend.wait_settled()

    state = backend.executor(plan).apply()

    assert state.status is RunStatus.COMPLETED
    said = [e.message for e in backend.events if e.kind == "handoff"]
    assert said[0] == f"deleted {victim.key}: a hand-off from kube-dns was cut short", said
    backend.wait_settled()
    assert backend.cluster.handed_off_pods() == []
    assert len(coredns(backend)) == 2


def _names(write: str, pod) -> bool:
    """The simulation logs a write by the pod's UID, the fault proxy by its path."""
    return pod.uid in write or f"/pods/{pod.name}" in write
