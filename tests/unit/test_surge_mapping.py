"""What a surge reads from the API server's JSON: a Deployment's scale, rollout and record, a
HorizontalPodAutoscaler's target, and a pod's grace period, time to Ready and deletion cost
(``backends/kubernetes/mapping.py``); and that a dump carries Deployments and autoscalers
into the inventory as the live read does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from migrate.backends.kubernetes.dump import read_dump
from migrate.backends.kubernetes.mapping import (
    autoscaler_info,
    deployment_info,
    label_selector,
    pod_info,
    selector_text,
)
from migrate.backends.simcopy import world_from
from migrate.model import SURGE_ANNOTATION, LabelSelector, SurgeRecord

RECORD = SurgeRecord(original=1, extra=1, node="worker-2", plan="abc123")

# As the API server returns it (trimmed of what no reader looks at).
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "6f1c1a52-0d9e-4a57-9d77-3f0b1a7c2b11",
        "resourceVersion": "48213",
        "generation": 3,
        "labels": {"app": "web"},
        "annotations": {"deployment.kubernetes.io/revision": "2"},
    },
    "spec": {
        "replicas": 2,
        "selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        },
        "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"containers": []}},
    },
    "status": {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    },
}


def deployment(**changes: Any) -> dict[str, Any]:
    """DEPLOYMENT with ``metadata``/``spec``/``status`` keys changed (None removes one)."""
    obj = copy.deepcopy(DEPLOYMENT)
    for path, value in changes.items():
        part, key = path.split("__")
        if value is None:
            obj[part].pop(key, None)
        else:
            obj[part][key] = value
    return obj


def test_a_rolled_out_deployment_reads_as_settled_with_its_scale_selector_and_version() -> None:
    d = deployment_info(DEPLOYMENT)
    assert (d.namespace, d.name, d.uid, d.version) == ("shop", "web", DEPLOYMENT["metadata"]["uid"], "48213")
    assert (d.replicas, d.ready_replicas, d.settled, d.gitops, d.surge) == (2, 2, True, "", None)
    assert d.selector == LabelSelector(
        match_labels={"app": "web"},
        match_expressions=(("tier", "In", ("front", "edge")), ("canary", "DoesNotExist", ())),
    )
    assert d.selector.matches({"app": "web", "tier": "edge"})
    assert not d.selector.matches({"app": "web", "tier": "edge", "canary": "1"})


@pytest.mark.parametrize(
    "changes",
    [
        {"status__observedGeneration": 2},  # the controller has not seen the latest spec
        {"status__updatedReplicas": 1},  # a replica still runs the old template
        {"status__replicas": 3},  # an old pod is still counted (rolling out, or terminating)
        {"spec__replicas": 3},  # scaled up, the new pod not created yet
        {"status__observedGeneration": None},  # never observed
    ],
)
def test_a_deployment_mid_rollout_is_not_settled(changes: dict[str, Any]) -> None:
    assert not deployment_info(deployment(**changes)).settled


def test_replicas_default_to_one_and_a_missing_status_counts_nothing_ready() -> None:
    d = deployment_info(deployment(spec__replicas=None, status__readyReplicas=None))
    assert (d.replicas, d.ready_replicas) == (1, 0)
    scaled_to_zero = deployment(spec__replicas=0, status__replicas=0, status__updatedReplicas=0)
    assert deployment_info(scaled_to_zero).replicas == 0 and deployment_info(scaled_to_zero).settled


def test_a_surge_record_on_the_deployment_is_read_back_and_an_edited_one_is_kept_as_unreadable() -> None:
    annotated = deployment_info(deployment(metadata__annotations={SURGE_ANNOTATION: RECORD.to_json()}))
    assert (annotated.surge, annotated.unreadable_surge, annotated.carries_surge) == (RECORD, None, True)
    for text in ("", "not json", '{"original": 1}', json.dumps({**json.loads(RECORD.to_json()), "extra": 0})):
        edited = deployment_info(deployment(metadata__annotations={SURGE_ANNOTATION: text}))
        assert (edited.surge, edited.unreadable_surge, edited.carries_surge) == (None, text, True)
    plain = deployment_info(deployment())
    assert (plain.surge, plain.unreadable_surge, plain.carries_surge) == (None, None, False)


@pytest.mark.parametrize(
    ("where", "key", "manager"),
    [
        ("annotations", "argocd.argoproj.io/tracking-id", "Argo CD"),
        ("labels", "argocd.argoproj.io/instance", "Argo CD"),
        ("labels", "kustomize.toolkit.fluxcd.io/name", "Flux"),
        ("labels", "helm.toolkit.fluxcd.io/name", "Flux"),
        ("labels", "app.kubernetes.io/instance", ""),  # Helm sets it too: not a GitOps mark
    ],
)
def test_gitops_marks_name_their_controller(where: str, key: str, manager: str) -> None:
    assert deployment_info(deployment(**{f"metadata__{where}": {key: "shop"}})).gitops == manager


def test_an_autoscaler_names_its_target_and_defaults_min_replicas_to_one() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}],
        },
    }
    a = autoscaler_info(hpa)
    assert (a.key, a.target_kind, a.target_name, a.min_replicas, a.max_replicas) == (
        "shop/web",
        "Deployment",
        "web",
        1,
        5,
    )
    assert autoscaler_info({**hpa, "spec": {**hpa["spec"], "minReplicas": 2}}).min_replicas == 2


POD: dict[str, Any] = {
    "metadata": {
        "name": "web-7d4b9c-x2x",
        "namespace": "shop",
        "uid": "p1",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9c", "controller": True}],
    },
    "spec": {"nodeName": "worker-2", "containers": [{"name": "c"}]},
    "status": {
        "phase": "Running",
        "startTime": "2026-12-07T11:26:05Z",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T11:26:04Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T11:26:17Z"},
        ],
    },
}


def pod(spec: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, ready: str = "True") -> Any:
    obj = copy.deepcopy(POD)
    obj["spec"].update(spec or {})
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    obj["status"]["conditions"][1]["status"] = ready
    return pod_info(obj)


def test_a_pods_grace_period_defaults_to_thirty_seconds_and_zero_is_kept() -> None:
    assert pod().grace_seconds == 30
    assert pod({"terminationGracePeriodSeconds": 5}).grace_seconds == 5
    assert pod({"terminationGracePeriodSeconds": 0}).grace_seconds == 0


def test_startup_is_the_time_from_start_to_ready_and_unknown_when_not_ready() -> None:
    assert pod().startup_seconds == 12.0
    assert pod(ready="False").startup_seconds == 0.0
    fractional = copy.deepcopy(POD)
    fractional["status"]["startTime"] = "2026-12-07T11:26:05.250000+00:00"
    assert pod_info(fractional).startup_seconds == 11.75
    for start in (None, "yesterday", "2026-12-07T11:26:30Z"):  # missing, unreadable, after Ready
        odd = copy.deepcopy(POD)
        odd["status"]["startTime"] = start
        assert pod_info(odd).startup_seconds == 0.0


def test_the_deletion_cost_annotation_is_read_as_an_integer() -> None:
    cost = "controller.kubernetes.io/pod-deletion-cost"
    assert pod().deletion_cost == 0
    assert pod(annotations={cost: "-2147483648"}).deletion_cost == -(2**31)
    assert pod(annotations={cost: "100"}).deletion_cost == 100
    assert pod(annotations={cost: "cheap"}).deletion_cost == 0


def test_a_selector_is_written_as_a_list_calls_label_selector() -> None:
    selector = label_selector(DEPLOYMENT["spec"]["selector"])
    assert selector_text(selector) == "app=web,tier in (front,edge),!canary"
    both = {
        "matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "NotIn", "values": ["x"]}]
    }
    assert selector_text(label_selector(both)) == "a,b notin (x)"
    assert selector_text(label_selector(None)) == ""


def test_a_dump_carries_deployments_and_autoscalers_into_the_inventory(tmp_path: Path) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "worker-2", "uid": "n"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    hpa = {
        "apiVersion": "autoscaling/v1",  # an old kubectl's dump: the same fields
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "minReplicas": 2, "maxReplicas": 4},
    }
    surged = deployment(metadata__annotations={SURGE_ANNOTATION: RECORD.to_json()})
    edited = deployment(metadata__name="api", metadata__annotations={SURGE_ANNOTATION: "by hand"})
    documents = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [node, {"apiVersion": "v1", "kind": "Pod", **POD}, surged, edited, hpa],
    }
    (tmp_path / "dump.json").write_text(json.dumps(documents))

    dump = read_dump([tmp_path / "dump.json"])

    found = [(d.key, d.surge, d.unreadable_surge) for d in dump.inventory.deployments]
    assert sorted(found) == [("shop/api", None, "by hand"), ("shop/web", RECORD, None)]
    # A copy keeps both: a rehearsal refuses the edited record as the cluster's run would.
    world = world_from("prod", dump.inventory, dump.workloads, dump.policies).world
    kept = {
        wl["name"]: wl["annotations"].get(SURGE_ANNOTATION) for wl in world["workloads"] if wl["kind"] == "Deployment"
    }
    assert kept == {"web": RECORD.to_json(), "api": "by hand"}
    assert [(a.key, a.target_name, a.min_replicas) for a in dump.inventory.autoscalers] == [("shop/api", "api", 2)]
    assert sorted(w.name for w in dump.workloads) == ["api", "web"]  # still workloads too
    assert "HorizontalPodAutoscaler" not in dump.skipped
