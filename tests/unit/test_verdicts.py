"""One meaning per validation check, whichever backend observed: the verdicts from
observations, and both backends judging through them."""

from __future__ import annotations

import pytest

from migrate import verdicts
from migrate.backends import simworld
from migrate.backends.simulated import SimStore
from migrate.verdicts import Connection

POOL = "10.200.0.0/16"


def test_the_agent_check_names_the_agent_or_its_absence():
    assert verdicts.agent_ready("cilium-abc", True).ok
    assert verdicts.agent_ready("cilium-abc", False).observed == "cilium-abc not Ready"
    missing = verdicts.agent_ready(None, True)
    assert not missing.ok and missing.observed == "no Cilium agent on the node"


@pytest.mark.parametrize(
    "cidrs, ok",
    [(["10.200.3.0/24"], True), (["10.200.3.0/24", "10.245.3.0/24"], False), ([], False), (None, False)],
)
def test_the_cilium_node_check_wants_every_cidr_inside_the_pool(cidrs, ok):
    result = verdicts.cilium_node("w1", cidrs, POOL)
    assert result.ok is ok
    assert result.expected == f"pod CIDRs inside {POOL}"
    assert result.observed == (
        "no CiliumNode w1" if cidrs is None else f"CiliumNode w1 podCIDRs {', '.join(cidrs) or 'none'}"
    )


@pytest.mark.parametrize("ip, ok", [("10.200.1.250", True), ("192.168.1.250", False), ("", False)])
def test_the_pod_network_check_wants_an_address_from_the_pool(ip, ok):
    result = verdicts.pod_network(ip, POOL)
    assert result.ok is ok and result.evidence == {"podIP": ip}
    assert verdicts.pod_network("10.200.1.250", "").ok is False  # no pool known: nothing proves it


def test_dns_and_connectivity_say_what_failed():
    assert verdicts.dns(False, "connection timed out").observed.endswith(": connection timed out")
    assert verdicts.connectivity(True).observed == f"{verdicts.API_TARGET}: connected"
    assert not verdicts.connectivity(False, "i/o timeout").ok


def test_cross_node_names_every_failed_connection_and_passes_with_no_peer():
    assert verdicts.cross_node([]).ok
    result = verdicts.cross_node(
        [
            Connection("a->b (calico)", True),
            Connection("b (calico)->a", False, "i/o timeout"),
            Connection("a->Service", True),
        ]
    )
    assert not result.ok
    assert result.observed == "2/3 connections; b (calico)->a: i/o timeout"


@pytest.mark.parametrize(
    "denied, ok, says",
    [
        (Connection("denied", False, "dial tcp: i/o timeout"), True, "was blocked (timed out)"),
        (Connection("denied", True), False, "connected: policy is not enforced"),
        (Connection("denied", False, "connection refused"), False, "not proof of policy"),
    ],
)
def test_policy_enforcement_counts_only_a_drop_as_proof(denied, ok, says):
    allowed = Connection("allowed", True)
    result = verdicts.policy_enforcement("w1", allowed, denied, allowed)
    assert result.ok is ok and says in result.observed


@pytest.mark.parametrize(
    "mode, enforced", [("never", False), ("Never ", False), (None, False), ("default", True), ("always", True)]
)
def test_policy_is_enforced_in_every_mode_but_never(mode, enforced):
    assert verdicts.policy_enforced({} if mode is None else {"enable-policy": mode}) is enforced


def test_the_simulation_judges_its_observations_through_the_same_verdicts(tmp_path):
    world = simworld.default_world("v", nodes=3)
    world["cilium"]["poolCIDR"] = POOL
    for node in world["nodes"].values():
        node["cniFiles"] = ["05-cilium.conflist"]
    world["failValidation"] = {"worker-2": ["*"]}
    sim = SimStore(tmp_path).create("v", world)
    healthy = sim.probe_many("worker-1", verdicts.CHECKS, 5)
    assert [r.check for r in healthy] == list(verdicts.CHECKS) and all(r.ok for r in healthy)
    for check in verdicts.CHECKS:
        broken = sim.probe("worker-2", check, 5)
        assert not broken.ok and broken.evidence.get("injected") is True
        assert broken.expected == healthy[verdicts.CHECKS.index(check)].expected
    assert POOL in sim.probe("worker-2", "pod-network", 5).expected
