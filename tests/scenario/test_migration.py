"""End-to-end scenarios of the engine, run on every backend (see conftest.backend)."""

from __future__ import annotations

import pytest

from migrate.errors import (
    Interrupted,
    LockHeld,
    PlanClusterMismatch,
    PlanStale,
    PreflightBlocked,
    RunConflict,
    StepFailed,
    ValidationFailed,
)
from migrate.executor import GateAnswer
from migrate.journal import NodeState, RunStatus, StepStatus
from migrate.model import Cni
from migrate.plan import StepKind
from migrate.ports import StopFlag
from migrate.steps import StepContext, registry


def pdbs_satisfied(backend) -> None:
    backend.wait_settled()
    for pdb in backend.cluster.inventory().pdbs:
        assert pdb.current_healthy >= pdb.desired_healthy, pdb


def step_context(backend, plan) -> StepContext:
    """What the executor hands a step, for running one step by hand."""
    return StepContext(
        cluster=backend.cluster,
        options=plan.options,
        clock=backend.clock,
        stop=StopFlag(),
        emit=backend.events.append,
        plan_id=plan.id,
        agent_timeout=60,
    )


def test_full_migration_ends_with_every_node_on_cilium_and_schedulable(backend):
    plan = backend.plan(max_unavailable=2)
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    assert {r.state for r in state.nodes.values()} == {NodeState.MIGRATED}
    assert set(backend.node_view().values()) == {(Cni.CILIUM, False, "true")}
    pdbs_satisfied(backend)


def test_the_plan_has_the_same_shape_on_every_backend(backend):
    """Which workers pair up depends on where the scheduler put the pods (the real one
    breaks ties at random), so the shape is compared, not the exact pairs."""
    plan = backend.plan(max_unavailable=2)
    waves = [[n.name for n in w.nodes] for w in plan.waves]
    assert waves[0] == ["worker-1"] and plan.waves[0].canary
    assert waves[-1] == ["cp-1"]
    assert sorted(n for w in waves[1:-1] for n in w) == ["worker-2", "worker-3", "worker-4", "worker-5"]
    assert all(len(w) <= 2 for w in waves)
    blocking = [f.check for f in plan.blocking]
    assert blocking == []
    warnings = sorted({f.check for f in plan.findings} - {"wave-size"})
    assert warnings == ["drain-pods", "network-policy"]
    # Where the pods' placement keeps a wave below --max-unavailable, a warning says so.
    assert any(f.check == "wave-size" for f in plan.findings) == any(len(w) < 2 for w in waves[1:-2])
    # Both backends' clusters hold the simulated default world's policies.
    policies = next(f for f in plan.findings if f.check == "network-policy")
    assert policies.subjects == (
        "CalicoNetworkPolicy shop/audit-db-access",
        "GlobalNetworkPolicy allow-cluster-dns",
        "NetworkPolicy shop/allow-frontend-to-api",
    )


def test_planning_again_after_a_full_run_has_nothing_to_do_and_says_why(backend):
    backend.executor(backend.plan()).apply()
    again = backend.plan()
    assert again.nodes == ()
    assert {reason for _, reason in again.excluded} == {"already migrated to Cilium"}


def test_applying_a_completed_plan_again_changes_nothing(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    # Pods the run restarted may still be terminating, and a StatefulSet's replacement comes
    # only after: compare settled clusters.
    backend.wait_settled()
    before = backend.snapshot()
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    backend.wait_settled()
    assert backend.snapshot() == before


@pytest.mark.parametrize("kind", [StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI, StepKind.UNCORDON])
def test_running_a_step_twice_changes_nothing_the_second_time(backend, kind):
    plan = backend.plan()
    node = plan.nodes[0]
    ctx = step_context(backend, plan)
    steps = registry()
    for k in (StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI, StepKind.UNCORDON):
        steps[k](ctx, node)
        if k is kind:
            break
    backend.wait_settled()
    before = backend.snapshot()
    steps[kind](ctx, node)
    assert backend.snapshot() == before


def test_failed_validation_rolls_the_node_back_and_stops_the_run(backend):
    """One node at a time: the failed node's wave peer never starts and is free again."""
    plan = backend.plan(max_unavailable=2, node_parallelism=1)
    victim = plan.waves[1].nodes[0].name
    backend.fail_validation(victim, "connectivity")
    with pytest.raises(ValidationFailed, match=f"{victim}.*connectivity"):
        backend.executor(plan).apply()
    view = backend.node_view()
    assert view[victim] == (Cni.CALICO, False, None)
    state = backend.store().load()
    assert state.nodes[victim].state is NodeState.FAILED
    assert state.status is RunStatus.FAILED
    assert "connectivity" in state.nodes[victim].message
    # The canary stays migrated; the failed node's wave peer was never started and is free again.
    assert view[plan.waves[0].nodes[0].name][0] is Cni.CILIUM
    for peer in plan.waves[1].nodes[1:]:
        assert view[peer.name] == (Cni.CALICO, False, None)
        assert state.nodes[peer.name].state is NodeState.PENDING
    pdbs_satisfied(backend)


def test_in_a_parallel_wave_a_failed_node_is_put_back_while_its_peer_finishes(backend):
    """The whole wave at once: the peer was already under way when its neighbour failed; it
    finishes (validated), the failed node goes back to Calico, no later wave starts."""
    plan = backend.plan(max_unavailable=2)
    # Which nodes may share a wave depends on where each PDB's pods are, and on the real
    # control plane that is the scheduler's choice: find the first wave of two, not assume it
    # is the second (a CI run's placement once made the second wave a single node).
    wave = next((i for i, w in enumerate(plan.waves) if not w.canary and len(w.nodes) >= 2), None)
    assert wave is not None, [[n.name for n in w.nodes] for w in plan.waves]
    victim, peer = (n.name for n in plan.waves[wave].nodes[:2])
    backend.fail_validation(victim, "connectivity")
    with pytest.raises(ValidationFailed, match=f"{victim}.*connectivity"):
        backend.executor(plan).apply()
    view = backend.node_view()
    state = backend.store().load()
    assert view[victim] == (Cni.CALICO, False, None)
    assert state.nodes[victim].state is NodeState.FAILED
    assert view[peer] == (Cni.CILIUM, False, "true")
    assert state.nodes[peer].state is NodeState.MIGRATED
    assert state.nodes[peer].steps[f"{peer}/validate"].status is StepStatus.SUCCEEDED
    assert state.status is RunStatus.FAILED
    for later in (n for w in plan.waves[wave + 1 :] for n in w.nodes):
        assert state.nodes[later.name].state is NodeState.PENDING
        assert view[later.name] == (Cni.CALICO, False, None)
    # The two pipelines really overlapped: the peer's drain started before the victim's
    # validation ended.
    order = [(e.node, e.step, e.kind) for e in backend.events if e.step in ("drain", "validate")]
    assert order.index((peer, "drain", "step-started")) < order.index((victim, "validate", "step-finished"))
    pdbs_satisfied(backend)


def test_resume_after_a_fixed_validation_failure_completes(backend):
    plan = backend.plan()
    victim = plan.waves[0].nodes[0].name
    backend.fail_validation(victim, "*")
    with pytest.raises(ValidationFailed):
        backend.executor(plan).apply()
    backend.clear_failures()
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert state.nodes[victim].attempt == 2


def test_manual_rollback_of_one_node_then_of_all(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    one = plan.nodes[1].name
    state = backend.executor(plan).rollback([one])
    assert state.nodes[one].state is NodeState.ROLLED_BACK
    view = backend.node_view()
    assert view[one] == (Cni.CALICO, False, None)
    assert sum(1 for v in view.values() if v[0] is Cni.CILIUM) == len(view) - 1
    state = backend.executor(plan).rollback()
    assert state.status is RunStatus.ROLLED_BACK
    assert set(backend.node_view().values()) == {(Cni.CALICO, False, None)}
    pdbs_satisfied(backend)


def test_rollback_runs_in_reverse_plan_order(backend):
    plan = backend.plan()
    backend.executor(plan).apply()
    backend.events.clear()
    backend.executor(plan).rollback()
    order = list(dict.fromkeys(e.node for e in backend.events if e.kind == "step-started"))
    assert order == [n.name for n in reversed(plan.nodes)]


def test_a_pdb_allowing_no_disruption_fails_the_drain_naming_it_and_uncordons(backend):
    # Without surge (a surged thumbnailer is retired, not evicted: tests/scenario/test_surge.py).
    plan = backend.plan(drain_timeout_seconds=5, surge=False)

    def freeze(wave, state):
        # The budget drops to zero once the run has started: before it, apply's live
        # preflight refuses the run (tests/cli/test_plan_soundness.py).
        if wave.index == 1:
            frozen = {"namespace": "shop", "name": "frozen", "selector": {"app": "thumbnailer"}, "maxUnavailable": "0"}
            backend.add_pdb(frozen)
            backend.wait_settled()

    with pytest.raises(StepFailed, match="shop/frozen") as info:
        backend.executor(plan, wave_gate=freeze).apply()
    assert "timed out after 5s" in info.value.message
    assert not any(unschedulable for _, unschedulable, _ in backend.node_view().values())
    state = backend.store().load()
    failed = [n for n, r in state.nodes.items() if r.state is NodeState.FAILED]
    assert len(failed) == 1 and state.nodes[failed[0]].reason == "drain"


def test_stop_request_interrupts_at_a_step_boundary_and_resume_finishes(backend):
    plan = backend.plan()
    stop, emit = backend.stopping_after("drain")
    ex = backend.executor(plan, stop=stop)
    ex.emit = emit
    with pytest.raises(Interrupted):
        ex.apply()
    assert backend.store().load().status is RunStatus.INTERRUPTED
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED


def test_an_api_refusal_in_a_parallel_wave_stops_every_node_resumably(backend):
    """Two nodes go through the wave at once; the API refuses the first swap's label write
    (403: on a real cluster the fault proxy answers the node PATCH). That node stops (the API
    refuses us: never a rollback), its peer stops at its next step boundary, and a resume
    finishes both."""
    backend.inject("patch-node", 5, "403")  # after the two cordons (label, then cordon, each)
    plan = backend.plan(max_unavailable=2, canary=0)
    assert len(plan.waves[0].nodes) == 2
    with pytest.raises(Interrupted, match="swap-cni of .* stopped"):
        backend.executor(plan).apply()
    state = backend.store().load()
    assert state.status is RunStatus.INTERRUPTED
    assert not [n for n, r in state.nodes.items() if r.state in (NodeState.FAILED, NodeState.ROLLING_BACK)]
    stopped = [n.name for n in plan.waves[0].nodes if state.nodes[n.name].state is NodeState.IN_PROGRESS]
    assert stopped, "the refused node is left in progress, for resume"
    assert all(state.nodes[n.name].state is NodeState.PENDING for w in plan.waves[1:] for n in w.nodes)
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert all(v == (Cni.CILIUM, False, "true") for v in backend.node_view().values())
    pdbs_satisfied(backend)


def test_apply_on_an_interrupted_run_points_to_resume(backend):
    plan = backend.plan()
    stop = StopFlag()
    stop.set("stop at once")
    with pytest.raises(Interrupted):
        backend.executor(plan, stop=stop).apply()
    with pytest.raises(RunConflict, match="resume"):
        backend.executor(plan).apply()


def test_a_second_executor_is_refused_while_the_first_holds_the_lock(backend):
    """The locks as the CLI wires them. On a real cluster the second executor runs on another
    machine (its own state home, so its flock is free): the cluster's Lease keeps it out. A
    simulated cluster has only the state home's flock, so there the second shares the home."""
    plan = backend.plan()
    first = backend.executor(plan)
    with first.lock.hold(), pytest.raises(LockHeld, match="another executor") as refused:
        backend.executor(plan, lock=backend.another_executors_lock()).apply()
    assert ("holds the lease" in refused.value.message) == (backend.name == "kubernetes")


def test_plan_for_another_cluster_is_refused_before_any_write(backend, tmp_path):
    """A plan made on another cluster with the same name and nodes (a simulated one: only its
    kube-system UID differs from the simulated backend's), applied here: refused, and no write
    reached this cluster (on a real one, none went through the proxy in front of it)."""
    from migrate.backends import simworld
    from migrate.backends.simulated import SimStore
    from migrate.plan import PlanOptions, Target
    from migrate.planner import build_plan

    other = SimStore(tmp_path / "other").create("scenario", simworld.default_world("scenario", seed=99))
    options = PlanOptions(force=True, delete_emptydir_data=True)
    plan = build_plan(other.inventory(), options, Target("sim", "scenario", "sim://scenario"))
    backend.record_writes()
    with pytest.raises(PlanClusterMismatch, match=f"plan {plan.id} is for another cluster"):
        backend.executor(plan).apply()
    assert backend.writes() == []


def test_plan_made_before_a_node_was_added_is_stale(backend):
    plan = backend.plan()
    backend.add_node("worker-9")
    with pytest.raises(PlanStale, match="worker-9"):
        backend.executor(plan).apply()


def test_an_unfinished_run_of_another_plan_blocks_a_new_plan_until_it_is_finished(backend):
    first = backend.plan()
    stop, emit = backend.stopping_after("cordon")
    ex = backend.executor(first, stop=stop)
    ex.emit = emit
    with pytest.raises(Interrupted):
        ex.apply()
    canary = first.nodes[0].name
    assert backend.node_view()[canary][1] is True  # cordoned by the stopped run
    second = backend.plan(max_unavailable=3)
    # The run's own cordon is not the operator's: the new plan lifts it at the end.
    assert second.node(canary) is not None and not second.node(canary).keep_cordoned
    assert any("cordoned by an unfinished cni-migrate run" in f.message for f in second.findings)
    with pytest.raises(
        RunConflict,
        match=f"unfinished run of plan {first.id} .*under way: {canary}.*resume PLANFILE.*rollback PLANFILE",
    ):
        backend.executor(second).apply()
    assert backend.executor(first).rollback().status is RunStatus.ROLLED_BACK
    assert backend.executor(second).apply().status is RunStatus.COMPLETED
    assert all(v == (Cni.CILIUM, False, "true") for v in backend.node_view().values())


def test_an_injected_429_on_eviction_is_retried_and_the_run_completes(backend):
    backend.inject("evict", 2, "429")
    state = backend.executor(backend.plan()).apply()
    assert state.status is RunStatus.COMPLETED
    assert backend.injected() == 1
    assert any(e.kind == "wait" and "refused" in e.message for e in backend.events), "the 429 was not retried"


def test_a_pod_under_two_pdbs_fails_the_drain_at_once_with_the_apiservers_reason(backend):
    plan = backend.plan(drain_timeout_seconds=300)
    backend.add_pdb({"namespace": "shop", "name": "second", "selector": {"app": "frontend"}, "maxUnavailable": "1"})
    backend.wait_settled()
    with pytest.raises(StepFailed, match="more than one PodDisruptionBudget"):
        backend.executor(plan).apply()
    assert not any(unschedulable for _, unschedulable, _ in backend.node_view().values())


def test_apply_creates_the_cilium_default_node_config_once(backend):
    from migrate.cilium import node_config

    plan = backend.plan()
    expected = node_config(plan.cluster.node_config_api)
    assert backend.cluster.ensure_object(expected) is True
    assert backend.cluster.ensure_object(expected) is False  # the second time changes nothing
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    assert backend.cluster.ensure_object(expected) is False


def test_finalize_needs_every_node_migrated(backend):
    from migrate.errors import BadInput
    from migrate.finalize import Finalizer

    plan = backend.plan()
    stop = StopFlag()
    stop.set("stop early")
    with pytest.raises(Interrupted):
        backend.executor(plan, stop=stop).apply()
    ex = backend.executor(plan)
    with pytest.raises(BadInput, match="not yet"):
        Finalizer(plan, backend.cluster, ex.store, ex.lock, ex.emit).run(remove_calico=False)


def final_values(backend) -> None:
    """What the operator's helm upgrade to the final values sets in cilium-config."""
    from migrate.cilium import FINAL_CONFIG

    for key, value in FINAL_CONFIG.items():
        backend.set_cilium_config(key, value)


def test_finalize_follows_ciliums_order_final_values_then_restart_then_delete_and_is_idempotent(backend):
    from migrate.cilium import NODE_CONFIG_NAME
    from migrate.finalize import Finalizer

    plan = backend.plan()
    ex = backend.executor(plan)
    ex.apply()

    def finalize() -> list[str]:
        return Finalizer(plan, backend.cluster, ex.store, ex.lock, ex.emit, agent_timeout=60).run(remove_calico=True)

    report = finalize()
    # Cilium still runs with the migration values (no helm upgrade yet): Cilium's guide
    # applies the final values before anything else, so nothing is restarted or deleted.
    assert report[0].startswith("restart-agents: not yet: Cilium still runs with the migration values")
    assert report[1:4] == [
        "check-policy: not yet: waits for the final values",
        "delete-node-config: not yet: waits for the final values",
        "remove-calico: not yet: waits for the final values",
    ]
    assert backend.cluster.inventory().calico_install == "operator"
    assert ex.store.load().finalize == {}  # no step started: the CiliumNodeConfig is still there
    final_values(backend)  # the operator's helm upgrade to the final values
    report = finalize()
    assert report[0].startswith("restart-agents: restarted 6")
    assert report[1].startswith("check-policy: NetworkPolicy enforced")
    assert report[2] == f"delete-node-config: deleted CiliumNodeConfig kube-system/{NODE_CONFIG_NAME}"
    assert "removed Calico (operator install)" in report[3]
    assert (
        backend.cluster.delete_object(plan.cluster.node_config_api, "CiliumNodeConfig", "kube-system", NODE_CONFIG_NAME)
        is False
    )
    again = finalize()
    assert again[:4] == [
        "restart-agents: done earlier",
        "check-policy: done earlier",
        "delete-node-config: done earlier",
        "remove-calico: done earlier",
    ]
    assert ex.store.load().status is RunStatus.COMPLETED
    assert set(backend.node_view().values()) == {(Cni.CILIUM, False, "true")}


def test_after_the_upgrade_finalize_proves_policy_is_enforced_allow_and_deny(backend):
    from migrate.finalize import Finalizer

    plan = backend.plan()
    ex = backend.executor(plan)
    ex.apply()
    final_values(backend)
    report = Finalizer(plan, backend.cluster, ex.store, ex.lock, ex.emit, agent_timeout=60).run(remove_calico=False)
    (line,) = [r for r in report if r.startswith("check-policy:")]
    assert line.startswith("check-policy: NetworkPolicy enforced: on ")
    assert line.endswith("allowed client connected; denied client was blocked (timed out)")
    assert ex.store.load().finalize["check-policy"] == "succeeded"
    assert backend.cluster.cleanup_helper_pods() == 0  # probe pods and policies are gone


def test_a_cilium_that_lets_the_denied_client_through_fails_finalize_before_calico_goes(backend):
    from migrate.errors import ValidationFailed
    from migrate.finalize import Finalizer

    plan = backend.plan()
    ex = backend.executor(plan)
    ex.apply()
    final_values(backend)
    backend.ignore_policy()
    finalizer = Finalizer(plan, backend.cluster, ex.store, ex.lock, ex.emit, agent_timeout=60)
    with pytest.raises(ValidationFailed, match="denied client connected: policy is not enforced"):
        finalizer.run(remove_calico=True)
    state = ex.store.load()
    assert state.finalize["check-policy"] == "failed"
    assert "remove-calico" not in state.finalize and "delete-node-config" not in state.finalize
    assert backend.cluster.inventory().calico_install == "operator"  # Calico is still there


def test_operator_skips_a_node_then_rolls_back_the_canary_wave_then_resumes(backend):
    """The guided choices as the engine sees them: a gate's answers, not a terminal."""
    plan = backend.plan(max_unavailable=2)
    canary, second = plan.waves[0], plan.waves[1]
    skipped = second.nodes[0].name
    asked: list[int] = []

    def skip_one(wave, state):
        asked.append(wave.index)
        return GateAnswer(skip=(skipped,)) if wave is second else None

    with pytest.raises(Interrupted, match=f"1 node\\(s\\) skipped by the operator \\({skipped}\\)"):
        backend.executor(plan, wave_gate=skip_one).apply()
    assert asked == [w.index for w in plan.waves]
    state = backend.store().load()
    assert state.status is RunStatus.INTERRUPTED
    assert state.nodes[skipped].state is NodeState.PENDING and state.nodes[skipped].message == "skipped by the operator"
    view = backend.node_view()
    assert view[skipped] == (Cni.CALICO, False, None)
    assert all(view[n][0] is Cni.CILIUM for n in view if n != skipped)

    # At the next boundary (the skipped node's wave), the operator rolls the canary back.
    def roll_back_canary(wave, state):
        return GateAnswer(rollback_wave=canary.index)

    with pytest.raises(Interrupted, match=f"rolled back wave {canary.index} \\({canary.nodes[0].name}\\)"):
        backend.executor(plan, wave_gate=roll_back_canary).apply(resume=True)
    state = backend.store().load()
    assert state.nodes[canary.nodes[0].name].state is NodeState.ROLLED_BACK
    assert state.nodes[skipped].state is NodeState.PENDING
    assert backend.node_view()[canary.nodes[0].name] == (Cni.CALICO, False, None)

    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert set(backend.node_view().values()) == {(Cni.CILIUM, False, "true")}
    pdbs_satisfied(backend)


def test_pause_after_canary_stops_once_and_soak_waits_between_waves(backend):
    plan = backend.plan(max_unavailable=2)
    with pytest.raises(Interrupted, match="paused after the canary wave 1"):
        backend.executor(plan, pause_after_canary=True).apply()
    state = backend.store().load()
    assert [n for n, r in state.nodes.items() if r.state is NodeState.MIGRATED] == [plan.waves[0].nodes[0].name]
    assert not any(unschedulable for _, unschedulable, _ in backend.node_view().values())
    backend.events.clear()
    # Resumed with the same flag: the canary is done, so it does not pause again.
    state = backend.executor(plan, pause_after_canary=True, soak_seconds=0.2).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    soaks = [e.wave for e in backend.events if e.kind == "soak"]
    assert soaks == [w.index for w in plan.waves[2:]]  # before every wave but the first this run ran


def test_inventory_reads_calico_routing_service_range_node_addresses_and_cilium_ports(backend):
    """The facts the network preflight checks use, read the same way on every backend."""
    inv = backend.cluster.inventory()
    assert inv.calico_install == "operator"
    assert (inv.calico_bgp, inv.calico_autodetection, inv.calico_vxlan_port) == (False, "kubernetes-internal-ip", 4789)
    assert inv.service_cidrs == ("10.96.0.0/16",)
    assert all(n.addresses for n in inv.nodes), [(n.name, n.addresses) for n in inv.nodes]
    assert (inv.cilium.tunnel_port, inv.cilium.agents_desired) == (8473, len(inv.nodes))
    checks = {f.check for f in backend.plan().findings}
    assert not checks & {"cilium-pool", "tunnel-port", "calico-bgp", "calico-autodetection", "cilium-agents"}


@pytest.mark.parametrize(
    "key, value, said",
    [
        ("enable-policy", "default", "enable-policy is 'default', not 'never'"),
        ("cluster-pool-ipv4-cidr", "10.99.0.0/16", "the plan's pool is 10.245.0.0/16"),
    ],
)
def test_apply_refuses_a_running_cilium_outside_the_plans_migration_mode(backend, key, value, said):
    plan = backend.plan()
    before = backend.snapshot()
    backend.set_cilium_config(key, value)
    with pytest.raises(PreflightBlocked, match=said):
        backend.executor(plan).apply()
    assert backend.snapshot() == before
    assert backend.store().load() is None  # refused before the journal was opened


def test_a_plan_with_reboots_reboots_each_node_once_and_its_rollback_once_more(backend):
    from migrate.steps.reboot import REBOOT_LABEL

    plan = backend.plan(reboot=True)
    boots = {n.name: n.boot_id for n in backend.cluster.nodes()}
    state = backend.executor(plan).apply()
    assert state.status is RunStatus.COMPLETED
    after = {n.name: n for n in backend.cluster.nodes()}
    assert all(after[n].boot_id != boots[n] for n in boots), "every node rebooted"
    assert not any(REBOOT_LABEL in n.labels for n in after.values())
    assert all("rebooted (boot" in state.nodes[n].steps[f"{n}/swap-cni"].message for n in boots)
    # The journal says which way each reboot went: the host's init, not the sysrq fallback.
    assert all("orderly: systemctl reboot)" in state.nodes[n].steps[f"{n}/swap-cni"].message for n in boots)

    # The swap again (as after a crash before its checkpoint): no second reboot.
    node = plan.nodes[0]
    ctx = step_context(backend, plan)
    from migrate.steps.reboot import reboot

    backend.cluster.set_node_label(node.name, REBOOT_LABEL, boots[node.name])  # marker of the first reboot
    assert reboot(ctx, node.name).startswith("reboot found done")
    assert backend.cluster.get_node(node.name).boot_id == after[node.name].boot_id

    rolled = backend.executor(plan).rollback([node.name])
    assert rolled.nodes[node.name].state is NodeState.ROLLED_BACK
    assert backend.cluster.get_node(node.name).boot_id != after[node.name].boot_id, "the rollback rebooted it"
    assert backend.node_view()[node.name] == (Cni.CALICO, False, None)


@pytest.mark.parametrize("backend", [pytest.param("kubernetes", marks=pytest.mark.realcluster)], indirect=True)
def test_a_reboot_is_the_hosts_init_asked_from_a_privileged_pod_in_the_host_pid_namespace(backend):
    """The reboot pod as the API server stored it (the node agent keeps what it was asked
    to run): no sysrq reset first, the init's reboot through PID 1, a fallback armed."""
    from migrate.backends.kubernetes.hostreboot import ENTER_HOST, UNIT
    from migrate.steps.reboot import reboot

    plan = backend.plan(reboot=True)
    node = plan.nodes[0].name

    said = reboot(step_context(backend, plan), node)

    assert said.startswith("rebooted (boot") and said.endswith("; orderly: systemctl reboot)")
    (pod,) = backend.agent.reboot_pods[node]
    spec = pod["spec"]
    assert (spec["nodeName"], spec["hostPID"], spec["tolerations"]) == (node, True, [{"operator": "Exists"}])
    assert "volumes" not in spec  # the host's files are reached through PID 1's namespaces
    (container,) = spec["containers"]
    assert container["securityContext"] == {"privileged": True}
    script = container["command"][2]
    assert script.startswith(f"how=$({ENTER_HOST} sh -c ")
    assert f"--unit={UNIT} -p DefaultDependencies=no" in script
    assert script.splitlines()[-1] == f"exec {ENTER_HOST} $how"


def test_cross_node_probes_reach_calico_and_cilium_peers_both_ways_and_a_service(backend):
    plan = backend.plan(max_unavailable=2)
    state = backend.executor(plan).apply()
    evidence = {n: r.steps[f"{n}/validate"].message for n, r in state.nodes.items()}
    canary, last = plan.waves[0].nodes[0].name, plan.waves[-1].nodes[-1].name
    middle = plan.waves[1].nodes[0].name
    assert "(calico)" in evidence[canary] and "(cilium)" not in evidence[canary], evidence[canary]
    assert "(cilium)" in evidence[last] and "(calico)" not in evidence[last], evidence[last]
    assert "(calico)" in evidence[middle] and "(cilium)" in evidence[middle], evidence[middle]
    assert all("Service" in e and ("cross-node (5/5" in e or "cross-node (3/3" in e) for e in evidence.values())


def test_a_node_its_peers_cannot_reach_is_rolled_back(backend):
    plan = backend.plan(max_unavailable=2)
    victim = plan.waves[1].nodes[0].name
    backend.fail_validation(victim, "cross-node")
    with pytest.raises(ValidationFailed, match=f"{victim} failed: cross-node: observed 0/5 connections"):
        backend.executor(plan).apply()
    assert backend.node_view()[victim] == (Cni.CALICO, False, None)


def test_nodes_validated_at_once_share_peers_without_touching_each_others_probes(backend):
    """A parallel wave's nodes pick the same peer nodes: each check's pods there are its own
    (an earlier attempt's leftovers are cleaned, never a neighbour's running probe)."""
    import concurrent.futures

    plan = backend.plan(max_unavailable=3, canary=0)
    wave = [n.name for n in plan.waves[0].nodes]
    assert len(wave) >= 2  # the planner keeps room for the evicted pods: 2 of the 5 workers here
    ctx = step_context(backend, plan)
    for name in wave:
        for kind in (StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI):
            registry()[kind](ctx, plan.node(name))
    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(len(wave)) as pool:
            results = list(pool.map(lambda n: backend.cluster.probe(n, "cross-node", 60.0), wave))
        assert all(r.ok for r in results), [r.observed for r in results]


@pytest.mark.realcluster
@pytest.mark.parametrize("backend", ["kubernetes"], indirect=True)
def test_a_nodes_validation_runs_one_probe_pod_for_its_own_checks_and_one_client_pod_per_source_node(backend):
    """pod-network, dns and connectivity share one probe pod (a container per command, the
    pod's address for pod-network); cross-node runs one client pod on each node it connects
    from. The canary has one (Calico) peer: 5 probe pods, where a pod per check took 8."""
    from collections import Counter

    plan = backend.plan()
    node = plan.waves[0].nodes[0].name
    ctx = step_context(backend, plan)
    for kind in (StepKind.CORDON, StepKind.DRAIN, StepKind.SWAP_CNI):
        registry()[kind](ctx, plan.node(node))
    before = len(backend.agent.log)
    message = registry()[StepKind.VALIDATE](ctx, plan.node(node))
    probes = Counter(what for _, what, _ in backend.agent.log[before:] if what.startswith("probe:"))
    assert probes == {"probe:pod-checks": 1, "probe:cross-node-server": 2, "probe:cross-node-client": 2}
    assert "pod-network (probe pod IP 10.245." in message
    assert "dns (nslookup kubernetes.default.svc.cluster.local: Address: 10.96.0.1)" in message
    assert "connectivity (kubernetes.default.svc.cluster.local:443: connected)" in message
    assert "cross-node (3/3 connections" in message
