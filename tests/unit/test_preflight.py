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
    unprotected_replicas,
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


def test_a_cluster_without_calico_blocks():
    from migrate.preflight import calico_installed

    for install in ("operator", "manifest"):
        assert run(calico_installed, b.inventory([b.node("a")], calico_install=install)) == []
    f = only(run(calico_installed, b.inventory([b.node("a")], calico_install="none")))
    assert f.severity is Severity.BLOCKING and "no Calico install found" in f.message


def test_the_planned_install_turns_cilium_missing_into_a_note_of_what_apply_will_do():
    opts = PlanOptions(install_cilium_chart="cilium", install_cilium_version="1.18.4")
    f = only(run(cilium_state, b.inventory([b.node("a")], cilium=CiliumState()), opts))
    assert f.severity is Severity.WARNING and "apply installs it in migration mode" in f.message
    assert "chart cilium 1.18.4" in f.message
    # A Cilium running outside migration mode still blocks: the install never upgrades it.
    wrong = only(run(cilium_state, b.inventory([b.node("a")], cilium=CiliumState(installed=True)), opts))
    assert wrong.severity is Severity.BLOCKING


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


def test_cilium_pool_overlapping_the_service_range_or_a_node_address_blocks():
    from migrate.preflight import pool_overlap

    clear = b.inventory([b.node("a", addresses=("172.18.0.2",))], service_cidrs=("10.96.0.0/12",))
    assert run(pool_overlap, clear, PlanOptions(cilium_pool_cidr="10.245.0.0/16")) == []
    f = only(run(pool_overlap, clear, PlanOptions(cilium_pool_cidr="10.96.0.0/16")))
    assert f.severity is Severity.BLOCKING and f.subjects == ("Service range 10.96.0.0/12",)
    f = only(run(pool_overlap, clear, PlanOptions(cilium_pool_cidr="172.18.0.0/16")))
    assert f.subjects == ("node a (172.18.0.2)",)
    v6 = b.inventory([b.node("a", addresses=("fd00::2",))], service_cidrs=("fd00:96::/112",))
    assert run(pool_overlap, v6, PlanOptions(cilium_pool_cidr="10.245.0.0/16")) == []


@pytest.mark.parametrize(
    "cilium, calico_port, blocks",
    [
        (CiliumState(), 4789, False),  # not installed: the planned values use 8473
        (CiliumState(), 8473, True),  # ...which Calico's vxlanPort was moved to
        (CiliumState(installed=True, migration_mode=True, tunnel_port=8473), 4789, False),
        (CiliumState(installed=True, migration_mode=True), 4789, False),  # Cilium's default 8472
        (CiliumState(installed=True, migration_mode=True, tunnel_port=4789), 4789, True),
    ],
)
def test_cilium_tunnel_port_must_differ_from_calicos_vxlan_port(cilium, calico_port, blocks):
    from migrate.model import CalicoPool
    from migrate.preflight import tunnel_port

    pools = (CalicoPool("p", "192.168.0.0/16", vxlan_mode="Always"),)
    inv = b.inventory([b.node("a")], calico_pools=pools, cilium=cilium, calico_vxlan_port=calico_port)
    findings = run(tunnel_port, inv)
    assert bool(findings) is blocks, findings
    if blocks:
        assert findings[0].severity is Severity.BLOCKING and "tunnelPort" in findings[0].fix
    ipip_only = b.inventory([b.node("a")], calico_pools=(CalicoPool("p", "192.168.0.0/16", ipip_mode="Always"),))
    assert run(tunnel_port, ipip_only) == []  # no Calico VXLAN: no clash possible


def test_calico_bgp_or_an_unencapsulated_pool_warns():
    from migrate.model import CalicoPool
    from migrate.preflight import calico_bgp

    vxlan = (CalicoPool("p", "192.168.0.0/16", vxlan_mode="Always"),)
    assert run(calico_bgp, b.inventory([b.node("a")], calico_pools=vxlan)) == []
    f = only(run(calico_bgp, b.inventory([b.node("a")], calico_pools=vxlan, calico_bgp=True)))
    assert f.severity is Severity.WARNING and "BGP" in f.message
    routed = (CalicoPool("flat", "192.168.0.0/16"),)
    f = only(run(calico_bgp, b.inventory([b.node("a")], calico_pools=routed, calico_bgp=True)))
    assert f.subjects == ("flat",)


@pytest.mark.parametrize(
    "install, method, warns",
    [
        ("operator", "first-found", True),
        ("manifest", "first-found", True),
        ("operator", "kubernetes-internal-ip", False),
        ("operator", "can-reach=8.8.8.8", False),
        ("operator", "cidr=10.0.0.0/8", False),
        ("manifest", "interface=eth.*", False),
        ("manifest", "interface=.*", True),
        ("manifest", "interface=(eth0|cilium.*)", True),
        ("manifest", "skip-interface=cilium.*", False),
        ("manifest", "skip-interface=docker.*", True),
        ("manifest", "interface=[", True),  # not a regex: Calico refuses it too
        ("none", "first-found", False),
    ],
)
def test_calico_autodetection_that_could_pick_cilium_host_warns_with_the_patch(install, method, warns):
    from migrate.preflight import calico_autodetection

    inv = b.inventory([b.node("a")], calico_install=install, calico_autodetection=method)
    findings = run(calico_autodetection, inv)
    assert bool(findings) is warns, findings
    if warns:
        f = only(findings)
        assert f.severity is Severity.WARNING and "cilium_host" in f.message
        wanted = "nodeAddressAutodetectionV4" if install == "operator" else "IP_AUTODETECTION_METHOD="
        assert wanted in f.fix


def test_cilium_agents_not_ready_warn():
    from migrate.preflight import cilium_agents

    ready = CiliumState(installed=True, migration_mode=True, agents_ready=3, agents_desired=3)
    assert run(cilium_agents, b.inventory([b.node("a")], cilium=ready)) == []
    short = CiliumState(installed=True, migration_mode=True, agents_ready=2, agents_desired=3)
    f = only(run(cilium_agents, b.inventory([b.node("a")], cilium=short)))
    assert f.severity is Severity.WARNING and "2 of 3" in f.message
    assert run(cilium_agents, b.inventory([b.node("a")], cilium=CiliumState())) == []


def test_every_replica_on_the_drained_nodes_of_one_wave_warns_unless_a_pdb_protects_it():
    nodes = [b.node("a"), b.node("b"), b.node("c")]
    dns = [b.pod(f"coredns-{i}", "a", ns="kube-system", app="coredns") for i in range(2)]
    web = [b.pod("web-1", "a", app="web"), b.pod("web-2", "b", app="web")]  # spread over two nodes
    single = [b.pod("job-runner", "a")]  # one replica: a drain always stops it, nothing to spread
    inv = b.inventory(nodes, dns + web + single)
    found = only(unprotected_replicas(inv, [["a"], ["b"], ["c"]]))
    assert found.severity is Severity.WARNING and found.subjects == ("kube-system/coredns",)
    assert "ReplicaSet kube-system/coredns (2 of 2, on a)" in found.message
    # A wave that drains both of web's nodes at once takes web down too.
    assert only(unprotected_replicas(inv, [["a", "b"], ["c"]])).subjects == ("default/web", "kube-system/coredns")
    # With a budget the drain evicts one, waits for its replacement, then the other.
    guarded = b.inventory(nodes, dns + web, [b.pdb("coredns", "coredns", ns="kube-system")])
    assert unprotected_replicas(guarded, [["a"], ["b"], ["c"]]) == []
    # A replica elsewhere keeps serving: not every replica moves.
    spread = b.inventory(nodes, [*dns, b.pod("coredns-3", "c", ns="kube-system", app="coredns")])
    assert unprotected_replicas(spread, [["a"], ["b"], ["c"]]) == []


def test_replicas_not_ready_or_terminating_do_not_count():
    nodes = [b.node("a"), b.node("b")]
    pods = [b.pod("db-0", "a", app="db", owner="StatefulSet"), b.pod("db-1", "a", app="db", owner="StatefulSet")]
    pods.append(b.pod("db-2", "b", app="db", owner="StatefulSet", ready=False))  # not serving: nothing lost
    found = only(unprotected_replicas(b.inventory(nodes, pods), [["a"], ["b"]]))
    assert "StatefulSet default/db (2 of 2, on a)" in found.message
    pods[1] = b.pod("db-1", "a", app="db", owner="StatefulSet", deleting=True)
    assert unprotected_replicas(b.inventory(nodes, pods), [["a"], ["b"]]) == []
    # DaemonSet pods stay on their node: a drain does not move them.
    agents = [b.pod(f"agent-{i}", "a", app="agent", owner="DaemonSet") for i in range(2)]
    assert unprotected_replicas(b.inventory(nodes, agents), [["a"], ["b"]]) == []
