"""Cilium's migration mode as data: the live configuration check."""

from __future__ import annotations

from migrate.cilium import live_config_problems
from migrate.plan import PlanOptions

GOOD = {
    "custom-cni-conf": "true",
    "enable-policy": "never",
    "enable-host-legacy-routing": "true",
    "cluster-pool-ipv4-cidr": "10.245.0.0/16",
    "tunnel-port": "8473",
}


def test_the_prescribed_migration_mode_has_no_problems():
    assert live_config_problems(GOOD, PlanOptions()) == []


def test_each_departure_is_named():
    assert live_config_problems({}, PlanOptions()) == ["Cilium is not installed (no kube-system/cilium-config)"]
    bad = {**GOOD, "custom-cni-conf": "false", "tunnel-port": "4789"}
    del bad["enable-host-legacy-routing"]
    problems = live_config_problems(bad, PlanOptions(cilium_pool_cidr="10.246.0.0/16"))
    assert problems == [
        "custom-cni-conf is 'false', not 'true'",
        "enable-host-legacy-routing is 'unset', not 'true'",
        "cluster-pool-ipv4-cidr is '10.245.0.0/16', the plan's pool is 10.246.0.0/16",
        "tunnel-port is 4789, Calico's VXLAN port",
    ]
