"""Migrations through a fault-injecting proxy (``faultproxy.FaultProxy``) to a real control plane.

Each case starts a fresh lab (4 nodes, or 10 with ``make soak``; the simulated default world's
workloads), makes the plan through the proxy with injection off, then arms the proxy's
schedule and runs ``cni-migrate apply --yes`` through it. Transient faults (429, 500, 503,
resets, stalls past the client's 30s timeout, cut watches, lost responses to idempotent
writes) must not change the outcome: exit 0, every node on Cilium and uncordoned. Faults the
client must not retry (a 409 or a 403 on node patches) stop the run resumably: exit 5 with a
one-line message, nothing recorded as done that did not happen, and ``resume`` with the
proxy disarmed finishes the job. Throughout, a direct (un-proxied) watch checks that no
PodDisruptionBudget ever goes below its desiredHealthy, and every case asserts the proxy
really injected its faults.

The plan binds the API server's address (its fingerprint), so resume goes through the same
proxy address, disarmed, rather than through the lab's own kubeconfig.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrate.model import Cni
from tests.labsupport import wait_for
from tests.realcluster.clilab import CliLab, Result, Watcher
from tests.realcluster.faultproxy import EVICTION, NODE, PODS, FaultProxy, Rule
from tests.realcluster.nodeagent import GRACE

pytestmark = pytest.mark.realcluster

FORWARD_STEPS = ("cordon", "drain", "swap-cni", "validate", "uncordon")
# 4 nodes (cp-1 + 3 workers: a canary and a wave of two) in the default suite; the 10-node
# migration of issue 9 with ``make soak`` (CNI_MIGRATE_SOAK=1).
NODES = 10 if os.environ.get("CNI_MIGRATE_SOAK") else 4
NOT_EVICTION = r"^/(api|apis)/(?!.*/eviction$)"  # every API request but evictions
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Case:
    rules: tuple[Rule, ...]
    outcome: str = "completed"  # or "stopped": exit 5, then resume completes
    message: str = ""  # a substring of the one-line stop message
    # How long evicted pods linger: a kubelet's moment (nodeagent.GRACE), or long enough
    # that the drain's wait needs its watch.
    pod_delete_delay_ms: int = int(GRACE * 1000)
    marks: tuple[Any, ...] = ()


CASES = {
    "429-evictions": Case((Rule("status", status=429, method="POST", path=EVICTION, times=4),)),
    "429-other": Case((Rule("status", status=429, path=NOT_EVICTION, watch=False, times=6, probability=0.1),)),
    "500": Case((Rule("status", status=500, path=NOT_EVICTION, watch=False, times=6, probability=0.1),)),
    "500-evictions": Case(
        (Rule("status", status=500, method="POST", path=EVICTION, times=3),), marks=(pytest.mark.slow,)
    ),
    "503": Case((Rule("status", status=503, watch=False, times=6, probability=0.1),)),
    "409-node-patch": Case(
        (Rule("status", status=409, method="PATCH", path=NODE, times=1, skip=2),), outcome="stopped", message="HTTP 409"
    ),
    "403-node-patch-permanent": Case(
        # RBAC revoked mid-run: every node patch from the 5th on is forbidden until disarmed.
        (Rule("status", status=403, method="PATCH", path=NODE, times=10**6, skip=4),),
        outcome="stopped",
        message="HTTP 403",
    ),
    "reset": Case((Rule("reset", watch=False, times=6, probability=0.1),)),
    "reset-after-write-eviction": Case((Rule("reset", method="POST", path=EVICTION, forward=True, times=3),)),
    "reset-after-write-node-patch": Case(
        (Rule("reset", method="PATCH", path=NODE, forward=True, times=3),), marks=(pytest.mark.slow,)
    ),
    # The write happened, the answer was lost: the helper pod's create is retried with the same
    # name, gets AlreadyExists, and carries on with the pod it made.
    "reset-after-write-pod-create": Case((Rule("reset", method="POST", path=PODS, forward=True, times=1, skip=1),)),
    # One request stalls 35s, past the client's 30s request timeout, and is retried: +30s.
    "stall-past-timeout": Case(
        (Rule("stall", method="GET", path=NODE, seconds=35, times=1, skip=3),), marks=(pytest.mark.slow,)
    ),
    # Evicted pods stay Terminating for 2s, so drains wait on a watch; the proxy cuts it mid-stream.
    "watch-cut-bytes": Case((Rule("cut", watch=True, after_bytes=40, times=6),), pod_delete_delay_ms=2000),
    "watch-cut-seconds": Case(
        (Rule("cut", watch=True, after_seconds=0.5, times=6),), pod_delete_delay_ms=2000, marks=(pytest.mark.slow,)
    ),
}


# -- helpers ---------------------------------------------------------------------------------------
def journal(lab: CliLab) -> dict[str, Any]:
    paths = sorted((lab.home / "runs").glob("*/journal.json"))
    assert len(paths) == 1, paths
    return json.loads(paths[0].read_text())  # type: ignore[no-any-return]


def one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    assert "Traceback" not in result.err, result
    return lines[0]


def pdb_breaches(watcher: Watcher) -> list[tuple[str, str, dict[str, Any]]]:
    statuses = [
        (f"{o['metadata']['namespace']}/{o['metadata']['name']}", o["metadata"]["resourceVersion"], o["status"])
        for kind, o in list(watcher.records)
        if kind != "DELETED" and o.get("status")
    ]
    return [(n, rv, s) for n, rv, s in statuses if s.get("currentHealthy", 0) < s.get("desiredHealthy", 0)]


def timeline(pdbs: Watcher, pods: Watcher) -> str:
    """PDB statuses and pod transitions in resourceVersion order, to explain a breach."""
    rows = []
    for kind, o in list(pdbs.records):
        st = o.get("status") or {}
        healthy = f"{st.get('currentHealthy')}/{st.get('desiredHealthy')}"
        disrupted = sorted(st.get("disruptedPods") or {})
        text = f"PDB {o['metadata']['name']} {kind} healthy={healthy} allowed={st.get('disruptionsAllowed')}"
        rows.append((int(o["metadata"]["resourceVersion"]), f"{text} disrupted={disrupted}"))
    for kind, o in list(pods.records):
        meta, st = o["metadata"], o.get("status") or {}
        ready = [c["status"] for c in st.get("conditions") or [] if c["type"] == "Ready"]
        where = f"node={o['spec'].get('nodeName')} phase={st.get('phase')} ready={ready}"
        text = f"pod {meta['name']} {kind} {where} deleting={'deletionTimestamp' in meta}"
        rows.append((int(meta["resourceVersion"]), text))
    return "\n".join(f"{rv} {text}" for rv, text in sorted(rows))


def assert_journal_truthful(lab: CliLab, state: dict[str, Any]) -> None:
    """What the journal says happened, did: a node recorded migrated is on Cilium and
    schedulable; a node whose swap-cni never succeeded is still on Calico."""
    agent = lab.agent
    assert agent is not None
    live_cordoned = set(lab.cordoned())
    for name, run in state["nodes"].items():
        steps = run.get("steps") or {}
        if run["state"] == "migrated":
            assert all(steps[f"{name}/{s}"]["status"] == "succeeded" for s in FORWARD_STEPS), (name, steps)
            assert agent.cni(name) is Cni.CILIUM, f"{name} recorded migrated but is on {agent.cni(name)}"
            assert name not in live_cordoned, f"{name} recorded migrated but is cordoned"
        elif f"{name}/swap-cni" not in steps:
            assert agent.cni(name) is Cni.CALICO, f"{name}: swap-cni never started, yet on {agent.cni(name)}"
        uncordoned = any(sid.endswith("/uncordon") and step["status"] == "succeeded" for sid, step in steps.items())
        if name in live_cordoned:
            # A step may have happened without being recorded done (it started, then the run
            # stopped); never the other way round.
            assert f"{name}/cordon" in steps and not uncordoned, f"{name} is cordoned, the journal says: {steps}"


def assert_all_migrated(lab: CliLab) -> None:
    assert lab.cordoned() == []
    assert {n: lab.agent.cni(n) for n in lab.nodes} == {n: Cni.CILIUM for n in lab.nodes}  # type: ignore[union-attr]
    state = journal(lab)
    assert state["status"] == "completed", state["status"]
    assert {n: r["state"] for n, r in state["nodes"].items()} == {n: "migrated" for n in lab.nodes}
    assert_journal_truthful(lab, state)
    wait_for("every Deployment and StatefulSet back at its replica count", lab.settled, timeout=60)


def migrate_through(lab: CliLab, case: Case, seed: int = 7) -> dict[str, Any]:
    """Plan through the (disarmed) proxy, apply with it armed, resume disarmed if it stopped."""
    with FaultProxy.for_lab(lab.lab, lab.tmp / "proxy", list(case.rules), seed=seed) as proxy:
        proxy.disarm()
        plan = lab.plan("--max-unavailable", "2", kubeconfig=proxy.kubeconfig)
        assert plan.code == 0, plan
        pdbs = lab.watch_pdbs()
        pods = Watcher(lab.kubeconfig, "list_namespaced_pod", namespace="shop").start()
        try:
            proxy.arm()
            started = time.monotonic()
            apply = lab.cli("apply", "p.yaml", "--yes", kubeconfig=proxy.kubeconfig, timeout=240)
            wall = time.monotonic() - started
            proxy.disarm()
            counts = proxy.counts
            assert "Traceback" not in apply.err, apply
            resumed = None
            if case.outcome == "completed":
                assert apply.code == 0, f"{apply}\ninjected: {dict(counts)} {proxy.injected[:10]}"
            else:
                assert apply.code == 5, f"{apply}\ninjected: {dict(counts)} {proxy.injected[:10]}"
                line = one_line(apply)
                assert case.message in line and "resume" in line, line
                stopped = journal(lab)
                assert stopped["status"] == "interrupted", stopped["status"]
                assert_journal_truthful(lab, stopped)
                resumed = lab.cli("resume", "p.yaml", "--yes", kubeconfig=proxy.kubeconfig, timeout=240)
                assert resumed.code == 0, resumed
            assert_all_migrated(lab)
        finally:
            pdbs.stop()
            pods.stop()
        breaches = pdb_breaches(pdbs)
        assert not breaches, f"PDB went below desiredHealthy: {breaches[:5]}\n{timeline(pdbs, pods)}"
        assert sum(counts.values()) > 0, f"the proxy injected nothing: {proxy.requests}"
        assert not proxy.errors, proxy.errors[:5]
        print(f"\n{wall:.1f}s apply, exit {apply.code}, injected {dict(counts)}, resumed: {resumed is not None}")
        return {"apply": apply, "resume": resumed, "counts": counts}


# -- the cases ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks) for n, c in CASES.items()])
def test_migration_under_faults(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    lab = CliLab(tmp_path, nodes=NODES, pod_delete_delay_ms=case.pod_delete_delay_ms)
    try:
        migrate_through(lab, case)
    finally:
        lab.close()
