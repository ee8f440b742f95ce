"""The policy report on a table of real-world Calico policies: translated exactly, or
untranslatable with the reason; Kubernetes NetworkPolicies are kept."""

from __future__ import annotations

import pytest
import yaml

from migrate.policy import label_selector, report, translate


def calico(kind: str, name: str, spec: dict, namespace: str | None = "shop") -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace and kind == "NetworkPolicy" else {})}
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


TRANSLATED = [
    (
        "allow frontend to api on 8080",
        calico(
            "NetworkPolicy",
            "api-from-frontend",
            {
                "selector": "app == 'api'",
                "types": ["Ingress"],
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": "app == 'frontend'"},
                        "destination": {"ports": [8080]},
                    }
                ],
            },
        ),
        {
            "endpointSelector": {"matchLabels": {"app": "api"}},
            "ingress": [
                {
                    "fromEndpoints": [{"matchLabels": {"app": "frontend"}}],
                    "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}],
                }
            ],
        },
    ),
    (
        "default deny in a namespace",
        calico("NetworkPolicy", "default-deny", {"selector": "all()", "types": ["Ingress", "Egress"]}),
        {"endpointSelector": {}, "ingress": [{}], "egress": [{}]},
    ),
    (
        "egress to DNS in kube-system, from any namespace (global)",
        calico(
            "GlobalNetworkPolicy",
            "allow-dns",
            {
                "selector": "has(app)",
                "types": ["Egress"],
                "egress": [
                    {
                        "action": "Allow",
                        "protocol": "UDP",
                        "destination": {
                            "selector": "k8s-app == 'kube-dns'",
                            "namespaceSelector": "kubernetes.io/metadata.name == 'kube-system'",
                            "ports": [53],
                        },
                    }
                ],
            },
            namespace=None,
        ),
        {
            "endpointSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "egress": [
                {
                    "toEndpoints": [
                        {
                            "matchLabels": {
                                "k8s-app": "kube-dns",
                                "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "kube-system",
                            }
                        }
                    ],
                    "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}],
                }
            ],
        },
    ),
    (
        "deny a CIDR first, then allow a port range from a subnet",
        calico(
            "NetworkPolicy",
            "ingress-nets",
            {
                "selector": "tier in {'web', 'edge'} && env != 'dev'",
                "ingress": [
                    {"action": "Deny", "source": {"nets": ["203.0.113.0/24"]}},
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"nets": ["10.0.0.0/8"]},
                        "destination": {"ports": ["30000:30100"]},
                    },
                ],
            },
        ),
        {
            "endpointSelector": {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["edge", "web"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                ]
            },
            "ingressDeny": [{"fromCIDR": ["203.0.113.0/24"]}],
            "ingress": [
                {
                    "fromCIDR": ["10.0.0.0/8"],
                    "toPorts": [{"ports": [{"port": "30000", "protocol": "TCP", "endPort": 30100}]}],
                }
            ],
        },
    ),
    (
        "allow everything in from the monitoring namespace, any pod",
        calico(
            "NetworkPolicy",
            "from-monitoring",
            {
                "selector": "all()",
                "ingress": [{"action": "Allow", "source": {"namespaceSelector": "team == 'observability'"}}],
            },
        ),
        {
            "endpointSelector": {},
            "ingress": [
                {"fromEndpoints": [{"matchLabels": {"k8s:io.cilium.k8s.namespace.labels.team": "observability"}}]}
            ],
        },
    ),
    (
        "allow all egress",
        calico(
            "NetworkPolicy",
            "egress-all",
            {"selector": "app == 'api'", "types": ["Egress"], "egress": [{"action": "Allow"}]},
        ),
        {"endpointSelector": {"matchLabels": {"app": "api"}}, "egress": [{"toEntities": ["all"]}]},
    ),
]

UNTRANSLATABLE = [
    ("Log action", {"selector": "all()", "ingress": [{"action": "Log"}, {"action": "Allow"}]}, "action Log"),
    ("Pass to the next tier", {"selector": "all()", "ingress": [{"action": "Pass"}]}, "action Pass"),
    ("OR in a selector", {"selector": "app == 'a' || app == 'b'", "ingress": []}, "uses || or grouping"),
    (
        "allow before deny",
        {
            "selector": "all()",
            "ingress": [
                {"action": "Allow", "source": {"nets": ["10.0.0.0/8"]}},
                {"action": "Deny", "source": {"nets": ["10.1.0.0/16"]}},
            ],
        },
        "a Deny rule after an Allow rule",
    ),
    (
        "service account match",
        {"selector": "all()", "ingress": [{"action": "Allow", "source": {"serviceAccounts": {"names": ["x"]}}}]},
        "serviceAccounts",
    ),
    (
        "notNets",
        {"selector": "all()", "ingress": [{"action": "Allow", "source": {"notNets": ["10.0.0.0/8"]}}]},
        "notNets",
    ),
    ("HTTP match", {"selector": "all()", "ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}]}, "http"),
    ("host endpoint policy", {"selector": "all()", "preDNAT": True, "applyOnForward": True}, "preDNAT"),
    (
        "source ports",
        {"selector": "all()", "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": [53]}}]},
        "source ports",
    ),
    ("numeric protocol", {"selector": "all()", "ingress": [{"action": "Allow", "protocol": 47}]}, "protocol 47"),
    ("tiers", {"tier": "security", "selector": "all()"}, "no policy tiers"),
]


@pytest.mark.parametrize("what, policy, expected", TRANSLATED, ids=[t[0] for t in TRANSLATED])
def test_faithful_translations(what, policy, expected):
    verdict = translate(policy)
    assert verdict.outcome == "translated", verdict.reasons
    assert verdict.cilium["spec"] == expected
    clusterwide = policy["kind"] == "GlobalNetworkPolicy"
    assert verdict.cilium["kind"] == ("CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy")
    assert verdict.cilium["metadata"] == {
        "name": policy["metadata"]["name"],
        **({} if clusterwide else {"namespace": "shop"}),
    }


@pytest.mark.parametrize("what, spec, reason", UNTRANSLATABLE, ids=[u[0] for u in UNTRANSLATABLE])
def test_untranslatable_policies_say_why(what, spec, reason):
    verdict = translate(calico("NetworkPolicy", "p", spec))
    assert verdict.outcome == "untranslatable" and verdict.cilium is None
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_kubernetes_network_policies_are_kept_and_the_report_is_sorted():
    k8s = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"namespace": "a", "name": "np"}}
    verdicts = report([TRANSLATED[0][1], k8s, calico("GlobalNetworkPolicy", "g", {"selector": "all()"}, None)])
    assert [(v.kind, v.outcome) for v in verdicts] == [
        ("CalicoNetworkPolicy", "translated"),
        ("GlobalNetworkPolicy", "translated"),
        ("NetworkPolicy", "kept"),
    ]


def test_deny_rules_carry_a_note_about_calicos_order():
    policy = calico("NetworkPolicy", "d", {"order": 10, "selector": "all()", "ingress": [{"action": "Deny"}]})
    verdict = translate(policy)
    assert verdict.outcome == "translated" and "order" in verdict.reasons[0]
    assert verdict.cilium["spec"]["ingressDeny"] == [{"fromEntities": ["all"]}]


@pytest.mark.parametrize(
    "expression, selector",
    [
        ("all()", {}),
        ("app == 'a'", {"matchLabels": {"app": "a"}}),
        (
            'app == "a" && !has(canary)',
            {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]},
        ),
        (
            "env not in {'dev','test'}",
            {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev", "test"]}]},
        ),
    ],
)
def test_calico_selectors_as_label_selectors(expression, selector):
    assert label_selector(expression) == selector


def test_translations_are_valid_yaml_documents():
    for _, policy, _ in TRANSLATED:
        doc = translate(policy).cilium
        assert yaml.safe_load(yaml.safe_dump(doc)) == doc
