"""A scale is fenced by the version it was read at: one with no version is refused before
any request (an empty resourceVersion in a patch would fence nothing)."""

from __future__ import annotations

import pytest
from kubernetes import client

from migrate.backends.kubernetes import KubernetesCluster
from migrate.model import DeploymentInfo


def test_a_scale_without_a_version_is_refused_before_any_request() -> None:
    cluster = KubernetesCluster(client.ApiClient(client.Configuration(host="http://127.0.0.1:9")), "none")
    with pytest.raises(ValueError, match="shop/web was not read from the cluster"):
        cluster.scale_deployment(DeploymentInfo("shop", "web", replicas=1), 2, None)
    assert cluster.requests == 0
