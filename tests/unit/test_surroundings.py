"""Preflight checks of what runs around the migration (issue 26, part 5): an autoscaler,
kube-proxy's clusterCIDR, policies naming Calico's addresses, admission webhooks a wave takes
down; and where the inventory gets what they read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from migrate.backends.kubernetes.inventory import kube_proxy_cluster_cidr as read_cluster_cidr
from migrate.backends.kubernetes.mapping import node_info, webhook_infos, webhook_services
from migrate.model import CalicoPool, NetworkPolicyInfo, WebhookInfo, frozen_map
from migrate.plan import PlanOptions, Severity
from migrate.policy import addresses
from migrate.preflight import admission_webhooks, autoscaler, kube_proxy_cluster_cidr, policy_addresses
from tests import builders as b

OPTS = PlanOptions()  # Cilium's pool 10.245.0.0/16
POOL = (CalicoPool("default-ipv4-ippool", "192.168.0.0/16", "Always", "Never"),)


def only(findings):
    assert len(findings) == 1, findings
    return findings[0]


# -- an autoscaler ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels",
    [
        {"app": "cluster-autoscaler"},
        {"app.kubernetes.io/name": "aws-cluster-autoscaler"},
        {"app.kubernetes.io/name": "karpenter"},
    ],
)
def test_an_autoscaler_warns_for_the_nodes_it_could_remove(labels):
    nodes = [b.node("a"), b.node("b", autoscaler_protected=True)]
    inv = b.inventory(nodes, [b.pod("scaler-1", "a", ns="kube-system", labels=labels)])
    f = only(autoscaler(inv, inv.nodes, OPTS))
    assert f.severity is Severity.WARNING and f.subjects == ("a",)
    assert "kube-system/scaler-1" in f.message
    assert "cluster-autoscaler.kubernetes.io/scale-down-disabled=true" in f.fix


def test_no_autoscaler_or_every_node_protected_says_nothing():
    plain = b.inventory([b.node("a")], [b.pod("web-1", "a")])
    assert autoscaler(plain, plain.nodes, OPTS) == []
    guarded = b.inventory(
        [b.node("a", autoscaler_protected=True)],
        [b.pod("scaler", "a", ns="kube-system", labels={"app": "cluster-autoscaler"})],
    )
    assert autoscaler(guarded, guarded.nodes, OPTS) == []


@pytest.mark.parametrize(
    ("annotations", "protected"),
    [
        ({}, False),
        ({"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true"}, True),
        ({"karpenter.sh/do-not-disrupt": "true"}, True),
        ({"cluster-autoscaler.kubernetes.io/scale-down-disabled": "false"}, False),
    ],
)
def test_a_nodes_protection_is_read_from_its_annotations(annotations, protected):
    obj = {"metadata": {"name": "a", "uid": "u", "annotations": annotations}, "status": {}}
    assert node_info(obj).autoscaler_protected is protected


# -- kube-proxy's clusterCIDR ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("cidr", "warns"),
    [
        ("", False),  # kube-proxy sets none (or does not run)
        ("10.244.0.0/16", True),
        ("10.0.0.0/8", False),  # covers Cilium's pool
        ("192.168.0.0/16,fd00::/48", True),
        ("fd00::/48,10.240.0.0/12", False),
    ],
)
def test_kube_proxys_cluster_cidr_must_cover_ciliums_pool(cidr, warns):
    inv = b.inventory([b.node("a")], kube_proxy_cluster_cidr=cidr)
    findings = kube_proxy_cluster_cidr(inv, inv.nodes, OPTS)
    assert bool(findings) is warns
    if warns:
        assert "10.245.0.0/16" in findings[0].message and "--cilium-pool-cidr" in findings[0].fix


def kube_proxy_ds(args=(), volumes=None):
    return {
        "metadata": {"namespace": "kube-system", "name": "kube-proxy"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "kube-proxy", "command": ["/usr/local/bin/kube-proxy", *args]}],
                    "volumes": volumes
                    if volumes is not None
                    else [{"name": "kp", "configMap": {"name": "kube-proxy"}}],
                }
            }
        },
    }


KUBEADM_CONFIG = {
    "config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
    "kind: KubeProxyConfiguration\n"
    "clusterCIDR: 10.244.0.0/16\n"
}


def test_kube_proxys_cluster_cidr_is_read_from_its_flag_or_its_configmap():
    maps = {("kube-system", "kube-proxy"): KUBEADM_CONFIG}

    def configmap(namespace, name):
        return maps.get((namespace, name), {})

    assert read_cluster_cidr([kube_proxy_ds()], configmap) == "10.244.0.0/16"
    assert read_cluster_cidr([kube_proxy_ds(["--cluster-cidr=10.0.0.0/8"])], configmap) == "10.0.0.0/8"
    assert read_cluster_cidr([], configmap) == ""  # no kube-proxy (already replaced)
    assert read_cluster_cidr([kube_proxy_ds()], lambda ns, name: {"config.conf": ": not yaml ["}) == ""


# -- policies naming Calico's addresses ------------------------------------------------------
def test_a_policys_addresses_are_its_ipblocks_and_nets():
    k8s = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "spec": {
            "ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.5.0/24"]}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        },
    }
    calico = {
        "kind": "GlobalNetworkPolicy",
        "spec": {"egress": [{"destination": {"nets": ["192.168.3.0/24"], "notNets": ["192.168.3.7/32"]}}]},
    }
    assert addresses(k8s) == ("192.168.0.0/16", "192.168.5.0/24")
    assert addresses(calico) == ("192.168.3.0/24", "192.168.3.7/32")
    assert addresses({"kind": "NetworkPolicy", "spec": {}}) == ()


def test_policies_naming_calicos_addresses_and_not_ciliums_warn():
    policies = (
        NetworkPolicyInfo("NetworkPolicy", "shop", "db-from-api", ("192.168.10.0/24",)),
        NetworkPolicyInfo("GlobalNetworkPolicy", "", "egress-anywhere", ("0.0.0.0/0",)),  # covers Cilium's too
        NetworkPolicyInfo("NetworkPolicy", "shop", "partner", ("203.0.113.0/24",)),  # outside the cluster
    )
    inv = b.inventory([b.node("a")], calico_pools=POOL, policies=policies)
    f = only(policy_addresses(inv, inv.nodes, OPTS))
    assert f.subjects == ("NetworkPolicy shop/db-from-api (192.168.10.0/24)",)
    assert "select those pods by label" in f.fix


# -- admission webhooks a wave takes down ----------------------------------------------------
GUARD = WebhookInfo(
    "ValidatingWebhookConfiguration/guard", "pods.guard.example", "Fail", "kube-system", frozen_map({"app": "guard"})
)


def guard_pods(*nodes):
    return [b.pod(f"guard-{i}", n, ns="kube-system", app="guard", owner="ReplicaSet") for i, n in enumerate(nodes)]


def test_a_webhook_whose_every_pod_one_wave_drains_warns_with_its_wave():
    inv = b.inventory([b.node("a"), b.node("b")], guard_pods("a"), webhooks=(GUARD,))
    f = only(admission_webhooks(inv, [["a"], ["b"]]))
    assert f.severity is Severity.WARNING and f.subjects == (GUARD.shown,)
    assert "(wave 1, on a)" in f.message and "--exclude-node" in f.fix


@pytest.mark.parametrize(
    ("hook", "pods", "waves"),
    [
        (GUARD, ("a", "b"), [["a"], ["b"]]),  # a replica in each wave: one always answers
        (replace(GUARD, failure_policy="Ignore"), ("a",), [["a"], ["b"]]),  # the API server lets requests by
        (GUARD, (), [["a"], ["b"]]),  # no pod answers it now: not the migration's doing
        (GUARD, ("c",), [["a"], ["b"]]),  # served from a node the plan leaves alone
    ],
)
def test_a_webhook_a_wave_leaves_answering_says_nothing(hook, pods, waves):
    inv = b.inventory([b.node("a"), b.node("b"), b.node("c")], guard_pods(*pods), webhooks=(hook,))
    assert admission_webhooks(inv, waves) == []


def test_webhooks_are_read_with_the_pods_their_service_selects():
    configuration = {
        "metadata": {"name": "guard"},
        "webhooks": [
            {"name": "in-cluster", "clientConfig": {"service": {"namespace": "kube-system", "name": "guard"}}},
            {"name": "elsewhere", "clientConfig": {"url": "https://guard.example.com/validate"}},
            {"name": "gone", "clientConfig": {"service": {"namespace": "kube-system", "name": "missing"}}},
            {
                "name": "lenient",
                "failurePolicy": "Ignore",
                "clientConfig": {"service": {"namespace": "kube-system", "name": "guard"}},
            },
        ],
    }
    services = {("kube-system", "guard"): {"metadata": {"name": "guard"}, "spec": {"selector": {"app": "guard"}}}}
    hooks = webhook_infos("MutatingWebhookConfiguration", configuration, services)
    assert [(h.name, h.failure_policy, h.configuration) for h in hooks] == [
        ("in-cluster", "Fail", "MutatingWebhookConfiguration/guard"),  # Fail: admissionregistration/v1's default
        ("lenient", "Ignore", "MutatingWebhookConfiguration/guard"),
    ]
    assert webhook_services([configuration]) == {("kube-system", "guard"), ("kube-system", "missing")}
