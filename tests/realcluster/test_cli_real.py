"""The installed CLI against a real control plane: what an operator would run and see.

Each test starts its own lab (kube-apiserver, etcd, controller-manager, scheduler, kwok
nodes shaped like the simulated default world, the tests' NodeAgent as kubelet and Cilium
agent) and runs ``cni-migrate`` as a subprocess with its own ``CNI_MIGRATE_HOME``. Assertions
are on exit codes, the one-line messages, and the cluster as the API server reports it.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from migrate.backends.rbac import PERMISSIONS, describe
from migrate.model import Cni
from migrate.steps.drain import named
from tests.labsupport import wait_for
from tests.realcluster.clilab import CliLab, Watcher

pytestmark = pytest.mark.realcluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "cni-migrate"
LEASE = "cni-migrate-executor"


@pytest.fixture
def lab4(tmp_path: Path) -> Iterator[CliLab]:
    """4 nodes (cp-1 + 3 workers): enough for a canary wave and a wave of two."""
    lab = CliLab(tmp_path, nodes=4)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def slow_lab(tmp_path: Path) -> Iterator[CliLab]:
    """4 nodes whose evicted pods stay Terminating for 3s, so a drain takes a while."""
    lab = CliLab(tmp_path, nodes=4, pod_delete_delay_ms=3000)
    try:
        yield lab
    finally:
        lab.close()


def assert_all_migrated(lab: CliLab) -> None:
    assert lab.cordoned() == []
    assert {n: lab.agent.cni(n) for n in lab.nodes} == {n: Cni.CILIUM for n in lab.nodes}  # type: ignore[union-attr]
    wait_for("every Deployment and StatefulSet back at its replica count", lab.settled, timeout=60)


def audit(lab: CliLab, home: Path | None = None) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(((home or lab.home) / "runs").glob("*/audit.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def lease_expired(lease: dict[str, Any] | None) -> bool:
    spec = (lease or {}).get("spec") or {}
    if not spec.get("holderIdentity") or not spec.get("renewTime"):
        return True
    renewed = datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    return datetime.now(UTC) > renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


# -- 1 ---------------------------------------------------------------------------------------
def test_ten_node_migration_never_takes_a_pdb_below_its_desired_healthy(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=10)
    try:
        plan = lab.plan("--max-unavailable", "3")
        assert plan.code == 0, plan
        pdbs = lab.watch_pdbs()
        started = time.monotonic()
        try:
            result = lab.cli("apply", "p.yaml", "--yes")
            wall = time.monotonic() - started
            assert result.code == 0, result
            assert_all_migrated(lab)
        finally:
            pdbs.stop()
        print(f"\n10-node apply (1 cp + 9 workers, max-unavailable 3): {wall:.1f}s wall time")
        # The audit log says what load the run put on the API server: its requests by client
        # method, adding up to the count apply printed.
        match = re.search(r"\((\d+) API requests\)", result.out)
        assert match, result.out
        (tally,) = [e["message"] for e in audit(lab) if e["event"] == "api-requests"]
        calls = {name: int(n) for name, n in (part.rsplit(" ", 1) for part in tally.split(", "))}
        assert sum(calls.values()) == int(match.group(1)), tally
        assert calls["create_namespaced_pod_eviction"] >= 1 and calls["patch_node"] >= 20, tally
        # Every step's start and end is an Event on its node, all sent before apply returned
        # (they go from a thread of their own): kubectl describe node tells the story.
        posted = lab.core.list_namespaced_event("default", field_selector="source=cni-migrate").items
        by_node: dict[str, list[str]] = {}
        for event in posted:
            by_node.setdefault(event.involved_object.name, []).append(event.reason)
        assert set(by_node) == set(lab.nodes), sorted(by_node)
        for node, reasons in by_node.items():
            assert reasons.count("MigrationStepStarted") == reasons.count("MigrationStepSucceeded") == 5, (
                node,
                reasons,
            )
            assert "MigrationNodeMigrated" in reasons, (node, reasons)
        assert calls["create_namespaced_event"] == len(posted), tally

        # The invariant the Eviction API promises: it never lets a budget go below what it
        # protects. The disruption controller's status only counts Ready pods that are not
        # terminating and not in disruptedPods, so replacement pods still starting cannot
        # inflate it: currentHealthy >= desiredHealthy must hold for every status observed.
        statuses = [
            (f"{o['metadata']['namespace']}/{o['metadata']['name']}", o["metadata"]["resourceVersion"], o["status"])
            for kind, o in pdbs.records
            if kind != "DELETED" and o.get("status")
        ]
        assert len(statuses) > len({name for name, _, _ in statuses}), "the watch saw no PDB status change"
        below = [(n, rv, s) for n, rv, s in statuses if s.get("currentHealthy", 0) < s.get("desiredHealthy", 0)]
        assert not below, f"PDB went below desiredHealthy: {below[:5]}"
        assert min(s.get("disruptionsAllowed", 0) for _, _, s in statuses) >= 0
        # ...and the drains really spent budgets (the watch saw disruptions, not a quiet cluster).
        assert min(s["currentHealthy"] - s["desiredHealthy"] for _, _, s in statuses) == 0
        assert any(s.get("disruptedPods") for _, _, s in statuses)
    finally:
        lab.close()


# -- 2 ---------------------------------------------------------------------------------------
FROZEN_PDB = {
    "apiVersion": "policy/v1",
    "kind": "PodDisruptionBudget",
    "metadata": {"name": "thumbnailer-frozen", "namespace": "shop"},
    "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "thumbnailer"}}},
}

# A pre-run hook that freezes the thumbnailer after the live preflight passed: the budget
# appears between the last check and the first eviction, as it can in a real window.
FREEZE_HOOK = """#!{python}
import time
from kubernetes import client, config
config.load_kube_config({kubeconfig!r})
policy = client.PolicyV1Api()
policy.create_namespaced_pod_disruption_budget("shop", {body!r})
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    st = policy.read_namespaced_pod_disruption_budget("thumbnailer-frozen", "shop").status
    if st is not None and st.expected_pods == 1 and st.disruptions_allowed == 0:
        break
    time.sleep(0.2)
"""


def test_pdb_with_max_unavailable_zero_refuses_before_any_write_or_fails_the_drain_and_puts_nodes_back(
    lab4: CliLab,
) -> None:
    # Without surge: a surged thumbnailer is retired by its scale, not evicted
    # (tests/realcluster/test_surge_real.py, tests/scenario/test_surge.py).
    plan = lab4.plan("--max-unavailable", "2", "--drain-timeout", "5", "--without-surge")
    assert plan.code == 0, plan

    def thumbnailer_untouched() -> None:
        pod = lab4.core.list_namespaced_pod("shop", label_selector="app=thumbnailer").items
        assert len(pod) == 1 and pod[0].metadata.deletion_timestamp is None  # never evicted

    # Frozen after the plan, before apply: the live preflight refuses, nothing is written.
    lab4.lab.apply_manifest([FROZEN_PDB])

    def observed() -> bool:
        st = lab4.policy.read_namespaced_pod_disruption_budget("thumbnailer-frozen", "shop").status
        return st is not None and st.expected_pods == 1 and st.disruptions_allowed == 0

    wait_for("the new PDB's status", observed)
    refused = lab4.cli("apply", "p.yaml", "--yes")
    assert refused.code == 3, refused
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), refused
    assert "shop/thumbnailer-frozen" in lines[0] and "nothing was changed" in lines[0], refused
    assert lab4.cordoned() == []
    assert lab4.lease() is None  # not even the executor's lock was taken
    thumbnailer_untouched()

    # Frozen once the run has started: the drain fails on the budget and the node goes back.
    lab4.policy.delete_namespaced_pod_disruption_budget("thumbnailer-frozen", "shop")
    wait_for(
        "the PDB to go",
        lambda: (
            not lab4.policy.list_namespaced_pod_disruption_budget(
                "shop", field_selector="metadata.name=thumbnailer-frozen"
            ).items
        ),
    )
    hooks = lab4.tmp / "freeze-hooks"
    hooks.mkdir()
    hook = hooks / "pre-run"
    hook.write_text(FREEZE_HOOK.format(python=sys.executable, kubeconfig=str(lab4.kubeconfig), body=FROZEN_PDB))
    hook.chmod(0o755)

    result = lab4.cli("apply", "p.yaml", "--yes", "--hooks-dir", str(hooks))

    assert result.code == 6, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("error: ") and "shop/thumbnailer-frozen" in lines[0], result
    assert lab4.cordoned() == []
    thumbnailer_untouched()


# -- 3 ---------------------------------------------------------------------------------------
def test_resume_after_kill_during_drain_evicts_each_pod_once(slow_lab: CliLab) -> None:
    lab = slow_lab
    plan = lab.plan("--max-unavailable", "2")
    assert plan.code == 0, plan
    canary = yaml.safe_load((lab.tmp / "p.yaml").read_text())["waves"][0]["nodes"][0]["name"]

    def drainable() -> dict[str, client.V1Pod]:
        """The canary's pods a drain evicts (all but DaemonSet pods), by UID."""
        return {
            p.metadata.uid: p
            for p in lab.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={canary}").items
            if not any(o.kind == "DaemonSet" for o in p.metadata.owner_references or [])
        }

    on_canary = {uid: p.metadata.name for uid, p in drainable().items()}
    assert len(on_canary) > 1, f"too little to drain on {canary}: {on_canary}"
    pods = Watcher(lab.kubeconfig, "list_pod_for_all_namespaces").start()

    def evicted_on_canary() -> set[str]:
        return {o["metadata"]["uid"] for _, o in list(pods.records) if o["metadata"].get("deletionTimestamp")} & set(
            on_canary
        )

    try:
        apply = lab.popen("apply", "p.yaml", "--yes")
        try:
            wait_for(f"the first eviction on {canary}", evicted_on_canary, timeout=90, interval=0.02)
        finally:
            apply.send_signal(signal.SIGKILL)
            apply.communicate(timeout=30)
        assert apply.returncode == -signal.SIGKILL
        drains = [e["event"] for e in audit(lab) if e.get("step") == "drain" and e.get("node") == canary]
        assert drains == ["step-started"], "the kill did not land mid-drain"
        # What the killed run evicted: the canary's pods now terminating or gone (a fresh read).
        still = {uid: p for uid, p in drainable().items() if p.metadata.deletion_timestamp is None}
        left = set(still)
        left_keys = sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in still.values())
        evicted_by_killed_run = set(on_canary) - left
        assert evicted_by_killed_run, "the watch saw an eviction the API server does not show"

        # A pod whose eviction was in flight when the executor died can be charged to its PDB
        # (status.disruptedPods) while the API server cancels its deletion with the dead
        # client's request; the disruption controller forgets it only after 2 minutes, and
        # until then resume's drain waits (PDB refusals) rather than break the budget.
        started = time.monotonic()
        # Same machine, same state home: the killed executor's Lease is ours to take at once
        # (the local flock, released by the OS, already proves its holder is gone).
        resume = lab.cli("resume", "p.yaml", "--yes")
        assert resume.code == 0, resume
        print(
            f"\nkilled after evicting {len(evicted_by_killed_run)}/{len(on_canary)} pods of {canary}; "
            f"resume took {time.monotonic() - started:.1f}s"
        )
        assert_all_migrated(lab)
        assert evicted_on_canary() == set(on_canary), "every pod of the canary was drained"
    finally:
        pods.stop()

    # The resumed drain evicted exactly the pods the killed one had not: none twice, none missed.
    finished = [
        e for e in audit(lab) if e.get("step") == "drain" and e.get("node") == canary and e["event"] == "step-finished"
    ]
    assert len(finished) == 1, finished
    want = f"evicted {len(left)} pod(s): {named(left_keys)}" if left else "nothing to evict"
    # A CoreDNS pod among them was handed off from kube-dns first: the message says so after.
    said, *handoffs = finished[0].get("message", "").split("; ")
    assert said == want, (finished[0], sorted(on_canary[u] for u in evicted_by_killed_run))
    assert all(h.startswith("handed off kube-system/coredns-") for h in handoffs), finished[0]


# -- 4 ---------------------------------------------------------------------------------------
def test_second_executor_from_another_machine_is_refused_by_the_lease(slow_lab: CliLab) -> None:
    lab = slow_lab
    plan = lab.plan("--max-unavailable", "2")
    assert plan.code == 0, plan
    first = lab.popen("apply", "p.yaml", "--yes")
    try:
        lease = wait_for(
            "the first executor's lease",
            lambda: (lab.lease() or {}).get("spec", {}).get("holderIdentity") and lab.lease(),
            timeout=60,
        )
        holder = lease["spec"]["holderIdentity"]
        assert lease["metadata"]["namespace"] == NAMESPACE and lease["metadata"]["name"] == LEASE

        other_home = lab.tmp / "other-machine"
        second = lab.cli("apply", "p.yaml", "--yes", home=other_home)
        assert first.poll() is None, "the first executor finished before the second one tried"

        assert second.code == 2, second
        lines = second.err.strip().splitlines()
        assert len(lines) == 1 and holder in lines[0] and f"{NAMESPACE}/{LEASE}" in lines[0], second
        assert not any(e.get("event") == "step-started" for e in audit(lab, other_home))
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, f"{out}\n{err}"
    assert_all_migrated(lab)
    assert (lab.lease() or {})["spec"].get("holderIdentity", "") == "", "the lease was not released"


# -- 5 ---------------------------------------------------------------------------------------
READ_ONLY = [("get", "", "nodes", ""), ("list", "", "nodes", ""), ("watch", "", "nodes", "")] + [
    ("get", "", "pods", ""),
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
]


def read_only_identity(lab: CliLab) -> Path:
    """ServiceAccount default/reader, allowed to get/list/watch nodes and pods, nothing else."""
    lab.lab.apply_manifest(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": "default"}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "nodes-pods-reader"},
                "rules": [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "nodes-pods-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "nodes-pods-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}],
            },
        ]
    )
    return lab.service_account_kubeconfig("default", "reader", lab.tmp / "reader.kubeconfig")


def test_plan_as_a_read_only_identity_lists_exactly_the_missing_permissions(lab4: CliLab) -> None:
    kubeconfig = read_only_identity(lab4)
    expected = [describe(p) for p in PERMISSIONS if p not in READ_ONLY]

    plan = lab4.plan(kubeconfig=kubeconfig)

    assert plan.code == 3, plan
    line = next(x for x in plan.out.splitlines() if "[rbac]" in x)
    assert "BLOCKING" in line
    listed = line.split("missing permissions: ", 1)[1].split(" -- fix:", 1)[0].split(", ")
    assert listed == expected
    findings = yaml.safe_load((lab4.tmp / "p.yaml").read_text())["findings"]
    assert [f for f in findings if f["check"] == "rbac"][0]["subjects"] == expected

    apply = lab4.cli("apply", "p.yaml", "--yes", kubeconfig=kubeconfig)

    assert apply.code == 3, apply
    assert "rbac" in apply.err and len(apply.err.strip().splitlines()) == 1, apply
    assert lab4.cordoned() == []
    assert lab4.lease() is None  # refused before taking the lease, let alone cordoning
    assert not audit(lab4)


def test_least_privilege_role_from_deploy_plans_clean_and_migrates_with_the_traffic_watch(lab4: CliLab) -> None:
    lab4.lab.apply_manifest(yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()))
    kubeconfig = lab4.service_account_kubeconfig(NAMESPACE, "cni-migrate", lab4.tmp / "cni-migrate.kubeconfig")

    plan = lab4.plan("--max-unavailable", "2", kubeconfig=kubeconfig)

    assert plan.code == 0, plan
    assert "[rbac]" not in plan.out
    findings = yaml.safe_load((lab4.tmp / "p.yaml").read_text())["findings"]
    assert [f["check"] for f in findings if f["check"] == "rbac"] == []

    # with the traffic watch: granting its probers' Role passes RBAC's escalation check
    apply = lab4.cli("apply", "p.yaml", "--yes", "--traffic-watch", kubeconfig=kubeconfig)

    assert apply.code == 0, apply
    assert_all_migrated(lab4)
    assert (lab4.lease() or {})["spec"].get("holderIdentity", "") == ""
    assert "traffic-watch: 4/4 probers reporting" in apply.out, apply
    assert "traffic watch removed" in apply.out
    apps = client.AppsV1Api(lab4.api)
    assert not apps.list_namespaced_daemon_set("cni-migrate-traffic").items


def test_probe_and_node_images_can_be_overridden_for_a_mirror(lab4: CliLab) -> None:
    lab = lab4
    assert lab.plan().code == 0
    helpers = Watcher(lab.kubeconfig, "list_namespaced_pod", namespace=NAMESPACE).start()
    try:
        probe, node = "mirror.example/agnhost:2.52", "mirror.example/busybox:1.36.1"
        r = lab.cli("apply", "p.yaml", "--yes", "--probe-image", probe, "--node-image", node)
        assert r.code == 0, r
    finally:
        helpers.stop()
    images = {c["image"] for _, o in helpers.records for c in o["spec"]["containers"]}
    assert images == {probe, node}, images
