"""Kubernetes objects (as the API server's JSON) to the model's types, and what a helper pod's
status says: pure functions, no client, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes.utils import parse_quantity

from migrate.model import (
    AutoscalerInfo,
    Cni,
    DeploymentInfo,
    LabelSelector,
    NodeInfo,
    OwnerRef,
    PDBInfo,
    PodInfo,
    ServiceInfo,
    Taint,
    WebhookInfo,
    WorkloadInfo,
    frozen_map,
    read_surge,
)
from migrate.surge import gitops_manager

# The annotation the ReplicaSet controller ranks pods by when it scales down (lowest first).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def pod_waiting(pod: dict[str, Any]) -> str:
    """Why a pod is not done yet, as the kubelet says: ``: waiting: ImagePullBackOff (…)``, or
    ``: not scheduled: …``, or nothing when the pod says nothing."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or status.get("initContainerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            detail = " ".join(str(waiting.get("message", "")).split())[:200]
            return f": waiting: {waiting['reason']}" + (f" ({detail})" if detail else "")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f": not scheduled: {condition.get('message') or condition.get('reason') or 'unknown'}"
    phase = status.get("phase")
    return f" (phase {phase})" if phase else ""


def container_results(pod: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """Each container of a finished pod: (exited 0, its termination message, or why it did
    not finish: a pod past its deadline ends with containers still running or waiting)."""
    out = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        terminated = state.get("terminated")
        if terminated is not None:
            out[status["name"]] = (terminated.get("exitCode") == 0, str(terminated.get("message") or "").strip())
        else:
            reason = (state.get("waiting") or {}).get("reason") or next(iter(state), "no state")
            out[status["name"]] = (False, f"did not finish ({reason})")
    return out


def termination_message(pod: dict[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("message"):
            return str(terminated["message"]).strip()
    return ""


def quantity(value: Any, scale: int = 1) -> int:
    try:
        return int(parse_quantity(value) * scale) if value is not None else 0
    except (ValueError, TypeError, ArithmeticError):
        return 0


# Node annotations that keep an autoscaler from removing the node.
AUTOSCALER_PROTECTION = ("cluster-autoscaler.kubernetes.io/scale-down-disabled", "karpenter.sh/do-not-disrupt")


def node_info(obj: dict[str, Any]) -> NodeInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    info = status.get("nodeInfo") or {}
    alloc = status.get("allocatable") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return NodeInfo(
        name=meta["name"],
        uid=meta["uid"],
        labels=frozen_map(meta.get("labels") or {}),
        taints=tuple(Taint(t["key"], t.get("effect", ""), t.get("value", "")) for t in spec.get("taints") or []),
        unschedulable=bool(spec.get("unschedulable")),
        ready=ready,
        kernel_version=info.get("kernelVersion", ""),
        os_image=info.get("osImage", ""),
        operating_system=info.get("operatingSystem", "") or (meta.get("labels") or {}).get("kubernetes.io/os", ""),
        cpu_millis=quantity(alloc.get("cpu"), 1000),
        memory_bytes=quantity(alloc.get("memory")),
        max_pods=quantity(alloc.get("pods")) or 110,
        cni=Cni.UNKNOWN,
        resource_version=meta.get("resourceVersion", ""),
        boot_id=info.get("bootID", ""),
        autoscaler_protected=any((meta.get("annotations") or {}).get(key) == "true" for key in AUTOSCALER_PROTECTION),
        addresses=tuple(
            a["address"]
            for a in status.get("addresses") or []
            if a.get("type") in ("InternalIP", "ExternalIP") and a.get("address")
        ),
    )


CALICO_NODE_DS = {("kube-system", "calico-node"), ("calico-system", "calico-node")}


# Installation.spec.calicoNetwork.nodeAddressAutodetectionV4 keys -> IP_AUTODETECTION_METHOD form
AUTODETECTION_KEYS = {
    "firstFound": "first-found",
    "kubernetes": "kubernetes-internal-ip",
    "interface": "interface",
    "skipInterface": "skip-interface",
    "canReach": "can-reach",
    "cidrs": "cidr",
}


def calico_routing(
    installations: list[dict[str, Any]],
    calico_ds: dict[str, Any] | None,
    configmap: Callable[[str, str], dict[str, str]] = lambda namespace, name: {},
) -> tuple[bool, str]:
    """(BGP in use, node address autodetection method), from the Tigera Installation when
    the operator installed Calico, else from calico-node's environment, whose values may come
    from a ConfigMap (the manifest install's ``calico_backend`` in ``calico-config``: read with
    ``configmap(namespace, name)``); Calico's defaults (BGP on, first-found) where none says."""
    if installations:
        network = (installations[0].get("spec") or {}).get("calicoNetwork") or {}
        bgp = str(network.get("bgp", "Enabled")).lower() != "disabled"
        method = "first-found"
        for key, value in (network.get("nodeAddressAutodetectionV4") or {}).items():
            name = AUTODETECTION_KEYS.get(key)
            if name is None or value in (None, False, "", []):
                continue
            if key == "firstFound":
                method = "first-found"
            elif key == "kubernetes":
                method = name
            else:
                method = f"{name}={','.join(value) if isinstance(value, list) else value}"
        return bgp, method
    env: dict[str, str] = {}
    namespace = ((calico_ds or {}).get("metadata") or {}).get("namespace", "kube-system")
    for container in (((calico_ds or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []:
        if container.get("name") != "calico-node":
            continue
        for e in container.get("env") or []:
            if "name" not in e:
                continue
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef") or {}
            value = configmap(namespace, ref["name"]).get(ref["key"]) if ref.get("name") and ref.get("key") else None
            if value is not None:  # unresolved: the default applies, as for an unset variable
                env[e["name"]] = value
    backend = env.get("CALICO_NETWORKING_BACKEND", "bird").lower()
    return backend == "bird", env.get("IP_AUTODETECTION_METHOD", "first-found") or "first-found"


def _controller(meta: dict[str, Any]) -> OwnerRef | None:
    controller = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    return OwnerRef(controller["kind"], controller["name"]) if controller else None


def _requests(pod_spec: dict[str, Any]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) the pod's containers request."""
    cpu = memory = 0
    for container in pod_spec.get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu"), 1000)
        memory += quantity(requests.get("memory"))
    return cpu, memory


def pod_info(obj: dict[str, Any]) -> PodInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    cpu, memory = _requests(spec)
    volumes = spec.get("volumes") or []
    ready = _ready_condition(status)
    grace = spec.get("terminationGracePeriodSeconds")
    cost = annotations.get(DELETION_COST)
    return PodInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        node=spec.get("nodeName"),
        labels=frozen_map(meta.get("labels") or {}),
        owner=_controller(meta),
        phase=status.get("phase", "Pending"),
        ready=ready is not None,
        mirror="kubernetes.io/config.mirror" in annotations,
        emptydir=any("emptyDir" in v for v in volumes),
        cpu_millis=cpu,
        memory_bytes=memory,
        ip=status.get("podIP", ""),
        host_network=bool(spec.get("hostNetwork")),
        deleting=bool(meta.get("deletionTimestamp")),
        grace_seconds=30 if grace is None else int(grace),  # the API server's default
        startup_seconds=_seconds_between(status.get("startTime"), ready.get("lastTransitionTime")) if ready else 0.0,
        deletion_cost=0 if cost is None else _int(cost),
    )


def _ready_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's Ready condition when it is True (a plain loop: this runs for every pod)."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition if condition.get("status") == "True" else None
    return None


def _seconds_between(start: Any, end: Any) -> float:
    """Seconds from one RFC 3339 timestamp to a later one (the API server writes them as
    ``2026-12-07T11:26:05Z``); 0 when either is missing or unreadable, or the order is wrong.
    ``fromisoformat`` is C code: the two parses cost about a microsecond a pod (the three
    fields a surge reads made mapping 30,000 pods ~25 ms slower, 250 -> 275 ms, measured
    2026-12-07 with the collector paused as the inventory's read has it)."""
    if not start or not end:
        return 0.0
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return 0.0
    return max(seconds, 0.0)


def _int(value: Any, default: int = 0) -> int:
    """An annotation's integer (the API server validates pod-deletion-cost as an int32 on
    write; a dump may hold anything), ``default`` when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def label_selector(selector: dict[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels and matchExpressions) as the model's."""
    selector = selector or {}
    return LabelSelector(
        match_labels=frozen_map(selector.get("matchLabels") or {}),
        match_expressions=tuple(
            (e["key"], e["operator"], tuple(e.get("values") or ())) for e in selector.get("matchExpressions") or []
        ),
    )


def selector_text(selector: LabelSelector) -> str:
    """The selector as a list call's ``labelSelector`` parameter (``app=web,tier in (a,b)``)."""
    parts = [f"{key}={value}" for key, value in selector.match_labels.items()]
    for key, operator, values in selector.match_expressions:
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
    return ",".join(parts)


def deployment_info(obj: dict[str, Any]) -> DeploymentInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    replicas = int(1 if spec.get("replicas") is None else spec["replicas"])
    record, unreadable = read_surge(annotations)
    return DeploymentInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        replicas=replicas,
        selector=label_selector(spec.get("selector")),
        ready_replicas=int(status.get("readyReplicas") or 0),
        # The controller has seen the latest spec, every replica runs the current template,
        # and no old pod is left (status.replicas counts the pods of every ReplicaSet).
        settled=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas,
        gitops=gitops_manager(labels, annotations),
        surge=record,
        unreadable_surge=unreadable,
        version=meta.get("resourceVersion", ""),
    )


def udp_service_info(obj: dict[str, Any]) -> ServiceInfo | None:
    """A Service with a selector and a UDP port (whose backends a drain hands off); None for
    any other (no selector: its endpoints are someone else's; TCP only: nothing to flush)."""
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    udp = tuple(int(p["port"]) for p in spec.get("ports") or () if p.get("protocol", "TCP") == "UDP")
    if not selector or not udp:
        return None
    meta = obj["metadata"]
    return ServiceInfo(meta.get("namespace", ""), meta["name"], frozen_map(selector), udp)


def autoscaler_info(obj: dict[str, Any]) -> AutoscalerInfo:
    """A HorizontalPodAutoscaler (autoscaling/v2 as listed; v1, as a dump may hold, has the
    same fields)."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    minimum = spec.get("minReplicas")
    return AutoscalerInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        target_kind=str(target.get("kind", "")),
        target_name=str(target.get("name", "")),
        min_replicas=1 if minimum is None else int(minimum),  # the API server's default
        max_replicas=int(spec.get("maxReplicas") or 1),
    )


def pdb_info(obj: dict[str, Any]) -> PDBInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return PDBInfo(
        namespace=meta["namespace"],
        name=meta["name"],
        selector=label_selector(spec.get("selector")),
        min_available=None if spec.get("minAvailable") is None else str(spec["minAvailable"]),
        max_unavailable=None if spec.get("maxUnavailable") is None else str(spec["maxUnavailable"]),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        current_healthy=int(status.get("currentHealthy") or 0),
        desired_healthy=int(status.get("desiredHealthy") or 0),
        expected_pods=int(status.get("expectedPods") or 0),
    )


def workload_info(obj: dict[str, Any]) -> WorkloadInfo:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    cpu, memory = _requests(pod_spec)
    return WorkloadInfo(
        kind=obj["kind"],
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        replicas=0 if obj["kind"] == "DaemonSet" else int(1 if spec.get("replicas") is None else spec["replicas"]),
        template_labels=frozen_map((template.get("metadata") or {}).get("labels") or {}),
        cpu_millis=cpu,
        memory_bytes=memory,
        emptydir=any("emptyDir" in v for v in pod_spec.get("volumes") or []),
        host_network=bool(pod_spec.get("hostNetwork")),
        owner=_controller(meta),
    )


def webhook_infos(
    kind: str, configuration: dict[str, Any], services: dict[tuple[str, str], dict[str, Any]]
) -> list[WebhookInfo]:
    """The webhooks of one ``kind`` (Validating/MutatingWebhookConfiguration) configuration that
    the cluster's own pods serve: those with a Service (not a URL) whose selector picks pods.
    ``services`` by (namespace, name); a webhook whose Service is not there is left out."""
    out = []
    for hook in configuration.get("webhooks") or []:
        ref = (hook.get("clientConfig") or {}).get("service") or {}
        service = services.get((ref.get("namespace", ""), ref.get("name", "")))
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        out.append(
            WebhookInfo(
                configuration=f"{kind}/{configuration['metadata']['name']}",
                name=str(hook.get("name", "")),
                failure_policy=str(hook.get("failurePolicy") or "Fail"),  # admissionregistration/v1's default
                namespace=ref["namespace"],
                selector=frozen_map({str(k): str(v) for k, v in selector.items()}),
            )
        )
    return out


def webhook_services(configurations: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, name) of every Service these webhook configurations call."""
    return {
        (ref["namespace"], ref["name"])
        for c in configurations
        for hook in c.get("webhooks") or []
        for ref in [((hook.get("clientConfig") or {}).get("service") or {})]
        if ref.get("namespace") and ref.get("name")
    }
