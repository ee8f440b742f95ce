"""The Kubernetes backend's surge methods against a real control plane: the ReplicaSet
controller, the disruption controller and the scheduler decide, kwok makes pods Ready.

One Deployment with one replica under a PodDisruptionBudget ``minAvailable: 1`` (its
eviction is refused for good) goes through the four steps of ``migrate.surge`` by hand:
scaled up with its record in one write, its replacement waited for off the (cordoned) node,
the old pod priced lowest, scaled back with the record removed, and the ReplicaSet
controller deletes the old pod, not the new one (without the cost it would delete the newer).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from migrate.backends.kubernetes import KubernetesCluster
from migrate.backends.kubernetes.mapping import pod_info
from migrate.errors import Conflict, EvictionRefused, NotFound
from migrate.model import SURGE_ANNOTATION, PodInfo, SurgeRecord
from migrate.surge import RETIRE_COST
from tests.labsupport import wait_for

pytestmark = pytest.mark.realcluster
LABELS = {"app": "web"}


@pytest.fixture(scope="module")
def cluster(kube_lab: Any) -> KubernetesCluster:
    return KubernetesCluster.connect(kubeconfig=str(kube_lab.kubeconfig), retry_seconds=20)


@pytest.fixture
def namespace(cluster: KubernetesCluster) -> Iterator[str]:
    name = f"surge-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


def web(namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
        },
        {
            # An autoscaler of another Deployment (one that does not exist: nothing to scale).
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "maxReplicas": 3,
            },
        },
    ]


def pods(cluster: KubernetesCluster, namespace: str) -> list[PodInfo]:
    core = client.CoreV1Api(cluster.api)
    listed = core.list_namespaced_pod(namespace, label_selector="app=web", _preload_content=False)
    return [pod_info(p) for p in json.loads(listed.data)["items"]]


def deployment_events(cluster: KubernetesCluster, namespace: str, since: str, until: str) -> list[dict[str, Any]]:
    """The Deployment as stored at each version after ``since``, up to ``until``."""
    seen: list[dict[str, Any]] = []
    stream = watch.Watch().stream(
        client.AppsV1Api(cluster.api).list_namespaced_deployment,
        namespace,
        field_selector="metadata.name=web",
        resource_version=since,
        timeout_seconds=10,
    )
    for event in stream:
        seen.append(event["raw_object"])
        if event["raw_object"]["metadata"]["resourceVersion"] == until:
            break
    return seen


def test_a_surge_scales_with_its_record_in_one_write_and_the_old_pod_is_the_one_retired(
    kube_lab: Any, cluster: KubernetesCluster, namespace: str
) -> None:
    kube_lab.apply_manifest(web(namespace))
    first = cluster.deployment(namespace, "web")
    assert cluster.wait_replicas_ready(first, 1, away_from="", timeout=60) == 1
    (old,) = pods(cluster, namespace)
    node = old.node
    assert node
    # The budget refuses the only replica's eviction: a drain alone would wait forever.
    with pytest.raises(EvictionRefused):
        cluster.evict(old)

    cluster.set_unschedulable(node, True)  # as the drain's cordon: replacements land elsewhere
    try:
        # Read once the controller has written the Ready pod into the status: a status
        # update after the read would (rightly) make the scale below a conflict.
        before = wait_for(
            "the Deployment's status to count its Ready pod",
            lambda: (d := cluster.deployment(namespace, "web")).ready_replicas == 1 and d,
        )
        assert (before.replicas, before.surge, before.settled) == (1, None, True)
        record = SurgeRecord(original=1, extra=1, node=node, plan="test-plan")

        # 1. replicas and record in one write: the first stored version after it has both.
        surged = cluster.scale_deployment(before, 2, record)
        assert (surged.replicas, surged.surge) == (2, record)
        stored = deployment_events(cluster, namespace, before.version, surged.version)[0]
        assert stored["metadata"]["resourceVersion"] == surged.version
        assert stored["spec"]["replicas"] == 2
        assert SurgeRecord.from_json(stored["metadata"]["annotations"][SURGE_ANNOTATION]) == record

        # A write from a stale read is refused (and changes nothing) ...
        with pytest.raises(Conflict):
            cluster.scale_deployment(before, 3, None)
        assert cluster.deployment(namespace, "web").replicas == 2
        # ... unless it is the write already made (a retry whose first answer was lost).
        assert cluster.scale_deployment(before, 2, record).surge == record
        assert [d.key for d in cluster.surged_deployments() if d.namespace == namespace] == [f"{namespace}/web"]
        # The inventory reads the Deployment with its record, and the autoscaler.
        inv = cluster.inventory()
        assert [(d.replicas, d.surge) for d in inv.deployments if d.namespace == namespace] == [(2, record)]
        assert [
            (a.name, a.target_kind, a.target_name, a.min_replicas, a.max_replicas)
            for a in inv.autoscalers
            if a.namespace == namespace
        ] == [("api", "Deployment", "api", 1, 3)]

        # 2. a replacement Ready off the node (asking for two: only one can be, on timeout).
        assert cluster.wait_replicas_ready(surged, 1, away_from=node, timeout=60) == 1
        assert cluster.wait_replicas_ready(surged, 2, away_from=node, timeout=2) == 1
        (new,) = [p for p in pods(cluster, namespace) if p.uid != old.uid]
        assert new.node != node and new.ready

        # 3. the node's pod priced lowest.
        cluster.set_deletion_cost(old, RETIRE_COST)
        priced = next(p for p in pods(cluster, namespace) if p.uid == old.uid)
        assert priced.deletion_cost == RETIRE_COST

        # 4. back to the original count, the record gone, in one write.
        back = cluster.scale_deployment(cluster.deployment(namespace, "web"), 1, None)
        assert (back.replicas, back.surge) == (1, None)
        assert cluster.wait_pods_gone([old], timeout=60) == []
        (left,) = pods(cluster, namespace)
        assert left.uid == new.uid and not left.deleting
        assert [d for d in cluster.surged_deployments() if d.namespace == namespace] == []
        assert cluster.wait_replicas_ready(back, 1, away_from=node, timeout=10) == 1

        with pytest.raises(NotFound):
            cluster.set_deletion_cost(old, RETIRE_COST)
        with pytest.raises(NotFound):
            cluster.deployment(namespace, "gone")
    finally:
        cluster.set_unschedulable(node, False)
