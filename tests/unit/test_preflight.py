"""Each preflight check: a case that passes, and one that warns or blocks, with its fix."""

from __future__ import annotations

import pytest

from migrate.model import CiliumState, NetworkPolicyInfo, Taint
from migrate.plan import PlanOptions, Severity
from migrate.preflight import (
    already_cordoned,
    calico_dataplane,
    capacity,
    cilium_state,
    drain_verdicts,
    kernel_tuple,
    kernel_version,
    network_policies,
    node_os,
    node_ready,
    pdb_budgets,
    permissions,
)
from tests import builders as b

OPTS = PlanOptions()


def run(check, inv, opts=OPTS):
    return check(inv, inv.nodes, opts)


def only(findings):
    assert len(findings) == 1, findings
    return findings[0]


def test_ready_nodes_pass_and_a_notready_node_blocks():
    assert run(node_ready, b.inventory([b.node("a")])) == []
    f = only(run(node_ready, b.inventory([b.node("a"), b.node("b", ready=False)])))
    assert f.severity is Severity.BLOCKING and f.subjects == ("b",) and "--exclude-node" in f.fix


def test_windows_node_blocks():
    assert run(node_os, b.inventory([b.node("a")])) == []
    f = only(run(node_os, b.inventory([b.node("win", operating_system="windows")])))
    assert f.severity is Severity.BLOCKING and f.subjects == ("win",)


@pytest.mark.parametrize("version, parsed", [("5.10.0-28-amd64", (5, 10)), ("6.8.0", (6, 8)), ("junk", None)])
def test_kernel_versions_parse(version, parsed):
    assert kernel_tuple(version) == parsed


def test_kernel_at_least_5_10_passes_older_blocks_unknown_warns():
    assert run(kernel_version, b.inventory([b.node("a", kernel_version="5.10.0")])) == []
    old = only(run(kernel_version, b.inventory([b.node("old", kernel_version="4.19.0-26-amd64")])))
    assert old.severity is Severity.BLOCKING and "4.19.0-26-amd64" in old.message and old.subjects == ("old",)
    unknown = only(run(kernel_version, b.inventory([b.node("u", kernel_version="")])))
    assert unknown.severity is Severity.WARNING


def test_already_cordoned_node_warns():
    assert run(already_cordoned, b.inventory([b.node("a")])) == []
    assert only(run(already_cordoned, b.inventory([b.node("a", unschedulable=True)]))).severity is Severity.WARNING


def test_pdb_allowing_no_disruption_blocks_only_when_it_covers_pods_to_drain():
    nodes = [b.node("a")]
    healthy = b.inventory(nodes, [b.pod("p", "a", app="web")], [b.pdb("web", "web", allowed=1)])
    assert run(pdb_budgets, healthy) == []
    stuck = b.inventory(nodes, [b.pod("p", "a", app="web")], [b.pdb("web", "web", allowed=0, healthy=1, desired=1)])
    f = only(run(pdb_budgets, stuck))
    assert f.severity is Severity.BLOCKING and f.subjects == ("default/web",)
    elsewhere = b.inventory(nodes, [], [b.pdb("web", "web", allowed=0)])
    assert run(pdb_budgets, elsewhere) == []


def test_bare_and_emptydir_pods_block_without_flags_and_warn_with_them():
    inv = b.inventory([b.node("a")], [b.pod("bare", "a", owner=None), b.pod("scratch", "a", emptydir=True)])
    blocking = run(drain_verdicts, inv)
    assert {f.severity for f in blocking} == {Severity.BLOCKING} and len(blocking) == 2
    assert any("--force" in f.fix for f in blocking) and any("--delete-emptydir-data" in f.fix for f in blocking)
    allowed = run(drain_verdicts, inv, PlanOptions(force=True, delete_emptydir_data=True))
    assert {f.severity for f in allowed} == {Severity.WARNING}


def test_calico_ebpf_dataplane_blocks():
    assert run(calico_dataplane, b.inventory([b.node("a")])) == []
    assert only(run(calico_dataplane, b.inventory([b.node("a")], calico_dataplane="bpf"))).severity is Severity.BLOCKING


def test_cilium_missing_warns_and_cilium_outside_migration_mode_blocks():
    assert run(cilium_state, b.inventory([b.node("a")])) == []
    missing = only(run(cilium_state, b.inventory([b.node("a")], cilium=CiliumState())))
    assert missing.severity is Severity.WARNING
    wrong = only(run(cilium_state, b.inventory([b.node("a")], cilium=CiliumState(installed=True))))
    assert wrong.severity is Severity.BLOCKING


def test_network_policies_warn_that_they_are_not_enforced_during_the_run():
    assert run(network_policies, b.inventory([b.node("a")])) == []
    inv = b.inventory([b.node("a")], policies=(NetworkPolicyInfo("NetworkPolicy", "shop", "deny"),))
    f = only(run(network_policies, inv))
    assert f.severity is Severity.WARNING and "not enforced" in f.message and "shop/deny" in f.message


def test_missing_permissions_block_and_are_listed():
    inv = b.inventory([b.node("a")], missing_permissions=("create pods/eviction", "patch nodes"))
    f = only(run(permissions, inv))
    assert f.severity is Severity.BLOCKING and f.subjects == ("create pods/eviction", "patch nodes")


def test_capacity_passes_when_the_rest_of_the_cluster_can_take_a_wave():
    nodes = [b.node("a", cpu_millis=1000), b.node("b", cpu_millis=1000)]
    inv = b.inventory(nodes, [b.pod("p", "a", cpu_millis=300)])
    assert capacity(inv, [["a"], ["b"]]) == []
    assert only(capacity(inv, [["a", "b"]])).severity is Severity.BLOCKING


def test_capacity_does_not_count_tainted_control_plane_nodes():
    nodes = [
        b.node("cp", control_plane=True, taints=(Taint("node-role.kubernetes.io/control-plane", "NoSchedule"),)),
        b.node("w"),
    ]
    inv = b.inventory(nodes, [b.pod("p", "w", cpu_millis=100)])
    assert only(capacity(inv, [["w"]])).subjects == ("w",)


def test_cilium_pool_overlapping_a_calico_pool_blocks():
    from migrate.model import CalicoPool
    from migrate.preflight import pool_overlap

    inv = b.inventory([b.node("a")], calico_pools=(CalicoPool("default-ipv4-ippool", "192.168.0.0/16"),))
    assert run(pool_overlap, inv) == []
    f = only(run(pool_overlap, inv, PlanOptions(cilium_pool_cidr="192.168.128.0/17")))
    assert f.severity is Severity.BLOCKING and "--cilium-pool-cidr" in f.fix


def test_cilium_without_a_node_config_api_blocks():
    from migrate.preflight import node_config_api

    assert run(node_config_api, b.inventory([b.node("a")])) == []
    inv = b.inventory([b.node("a")], cilium=CiliumState(installed=True, migration_mode=True, node_config_api=None))
    assert only(run(node_config_api, inv)).severity is Severity.BLOCKING
