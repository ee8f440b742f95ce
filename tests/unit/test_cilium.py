"""Cilium's migration mode as data: the live configuration check, the site's own values."""

from __future__ import annotations

import pytest

from migrate.cilium import final_values, live_config_problems, migration_values, site_values
from migrate.errors import BadInput
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


# -- the site's own values (plan --cilium-values) -------------------------------------------
SITE = {
    "image": {"override": "registry.example/cilium:v1.18.4", "pullPolicy": "IfNotPresent"},
    "operator": {"replicas": 1, "image": {"override": "registry.example/operator:v1.18.4"}},
    "l7Proxy": False,
}


def test_site_values_sit_under_ours_in_both_phases():
    options = PlanOptions(install_cilium_chart="cilium", install_cilium_version="1.18.4", install_cilium_values=SITE)
    during, after = migration_values(options), final_values(options)
    for values in (during, after):
        assert values["image"] == SITE["image"] and values["l7Proxy"] is False
        assert values["operator"]["replicas"] == 1 and values["operator"]["image"] == SITE["operator"]["image"]
    # Ours are all still there; the site's operator keys sit beside ours, not instead.
    assert during["operator"]["unmanagedPodWatcher"] == {"restart": False}
    assert after["operator"]["unmanagedPodWatcher"] == {"restart": True}
    ours = migration_values(PlanOptions())
    assert {k: during[k] for k in ours if k != "operator"} == {k: v for k, v in ours.items() if k != "operator"}


def test_site_values_may_not_touch_what_the_migration_sets():
    bad = {
        "routingMode": "native",
        "cni": {"exclusive": True},
        "ipam": {"operator": {"clusterPoolIPv4MaskSize": 26}},
        "operator": {"unmanagedPodWatcher": {"restart": True}, "replicas": 2},
        "bpf": {"hostLegacyRouting": False, "masquerade": True},
    }
    with pytest.raises(BadInput) as err:
        site_values(bad, "site.yaml")
    assert str(err.value) == (
        "--cilium-values site.yaml sets bpf.hostLegacyRouting, cni.exclusive, "
        "ipam.operator.clusterPoolIPv4MaskSize, operator.unmanagedPodWatcher.restart, routingMode: "
        "cni-migrate sets these for the migration; remove them (the plan's own options cover the pool: "
        "--cilium-pool-cidr)"
    )
    assert site_values(SITE, "site.yaml") == SITE
    for not_values in (["a"], "text", {1: "x"}):
        with pytest.raises(BadInput, match="is not a mapping of Helm values"):
            site_values(not_values, "site.yaml")


def test_the_plan_records_site_values_and_old_plans_keep_their_checksum():
    plain = PlanOptions(install_cilium_chart="cilium", install_cilium_version="1.18.4")
    assert "values" not in plain.to_record()["installCilium"]
    with_site = PlanOptions(install_cilium_chart="cilium", install_cilium_version="1.18.4", install_cilium_values=SITE)
    record = with_site.to_record()
    assert record["installCilium"]["values"] == SITE
    assert PlanOptions.from_record(record) == with_site
    with pytest.raises(BadInput, match="installCilium.values is not a mapping"):
        PlanOptions.from_record({**record, "installCilium": {**record["installCilium"], "values": ["x"]}})
