"""How the Kubernetes backend reads Calico's routing from calico-node's environment, whose
values a manifest install takes from the ``calico-config`` ConfigMap (``valueFrom``)."""

from __future__ import annotations

from typing import Any

import pytest

from migrate.backends.kubernetes.mapping import calico_routing


def calico_node(*env: dict[str, Any], namespace: str = "kube-system") -> dict[str, Any]:
    container = {"name": "calico-node", "env": list(env)}
    return {"metadata": {"namespace": namespace}, "spec": {"template": {"spec": {"containers": [container]}}}}


BACKEND_FROM_CONFIGMAP = {
    "name": "CALICO_NETWORKING_BACKEND",
    "valueFrom": {"configMapKeyRef": {"name": "calico-config", "key": "calico_backend"}},
}


@pytest.mark.parametrize(
    "backend, bgp",
    [("bird", True), ("vxlan", False), ("none", False)],
)
def test_the_backend_is_read_from_the_configmap_the_manifest_names(backend: str, bgp: bool) -> None:
    asked = []

    def configmap(namespace: str, name: str) -> dict[str, str]:
        asked.append((namespace, name))
        return {"calico_backend": backend}

    assert calico_routing([], calico_node(BACKEND_FROM_CONFIGMAP), configmap) == (bgp, "first-found")
    assert asked == [("kube-system", "calico-config")]


def test_an_unreadable_configmap_leaves_calicos_default_bird() -> None:
    # It once read as "" (no BGP): a BIRD install got no calico-bgp warning.
    assert calico_routing([], calico_node(BACKEND_FROM_CONFIGMAP), lambda ns, name: {}) == (True, "first-found")


def test_literal_values_and_the_operator_installation_win_as_before() -> None:
    ds = calico_node(
        {"name": "CALICO_NETWORKING_BACKEND", "value": "vxlan"},
        {"name": "IP_AUTODETECTION_METHOD", "value": "kubernetes-internal-ip"},
    )
    assert calico_routing([], ds) == (False, "kubernetes-internal-ip")
    installation = {
        "spec": {"calicoNetwork": {"bgp": "Disabled", "nodeAddressAutodetectionV4": {"kubernetes": "NodeInternalIP"}}}
    }
    assert calico_routing([installation], ds)[0] is False
