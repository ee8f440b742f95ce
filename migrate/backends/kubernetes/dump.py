"""A cluster read from files instead of the API: what an operator dumps from production
with kubectl, understood exactly as the live inventory is (``inventory.interpret``).

The dump is one or more files of YAML or JSON documents, each an object or a ``List`` of
objects, as ``kubectl get ... -o yaml`` (or ``-o json``) writes them. What is read (the
command that dumps it is in docs/rehearsal.md):

    Node, Pod (required), ReplicaSet, Deployment, StatefulSet, DaemonSet,
    HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy, ServiceCIDR, ConfigMap
    (kube-system/cilium-config, kube-proxy's, and the ones calico-node's environment refers
    to), Namespace kube-system (the UID), Validating/MutatingWebhookConfiguration and
    Service (who answers a webhook), Calico's IPPool, FelixConfiguration, NetworkPolicy,
    GlobalNetworkPolicy and the operator's Installation, and Cilium's CiliumNodeConfig CRD
    (which version is served).

Deployments are both workloads (who re-creates a pod) and, with the autoscalers, the
inventory's ``deployments`` and ``autoscalers`` (what a surge needs: a surge record left
on a Deployment is in its annotation, so a copy knows it too).

Every other kind is skipped and counted. A file that is not YAML or JSON, an object with
no kind or name, or a dump with no Node or no Pod is refused in one line (``BadInput``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrate.backends.kubernetes.inventory import Listed, interpret
from migrate.backends.kubernetes.mapping import node_info, pod_info, workload_info
from migrate.errors import BadInput
from migrate.model import ClusterIdentity, Inventory, WorkloadInfo

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
NODE_CONFIG_VERSIONS = ("v2", "v2alpha1")  # as the live read asks, newest first
# (API group, kind) -> the Listed field it fills; the core group is "".
_LISTS = {
    ("policy", "PodDisruptionBudget"): "pdbs",
    ("autoscaling", "HorizontalPodAutoscaler"): "autoscalers",  # v1 or v2: the fields read are in both
    ("apps", "DaemonSet"): "daemonsets",
    ("networking.k8s.io", "NetworkPolicy"): "policies",
    ("networking.k8s.io", "ServiceCIDR"): "service_cidrs",
    ("crd.projectcalico.org", "FelixConfiguration"): "felix",
    ("crd.projectcalico.org", "IPPool"): "calico_pools",
    ("crd.projectcalico.org", "NetworkPolicy"): "calico_policies",
    ("crd.projectcalico.org", "GlobalNetworkPolicy"): "global_policies",
    ("projectcalico.org", "FelixConfiguration"): "felix",
    ("projectcalico.org", "IPPool"): "calico_pools",
    ("projectcalico.org", "NetworkPolicy"): "calico_policies",
    ("projectcalico.org", "GlobalNetworkPolicy"): "global_policies",
    ("operator.tigera.io", "Installation"): "installations",
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): "validating_webhooks",
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): "mutating_webhooks",
    ("", "Service"): "services",
}


@dataclass(frozen=True)
class Dump:
    """A dumped cluster: its inventory (with its Deployments and HorizontalPodAutoscalers),
    the workloads behind its pods, the policies with their specs, kube-system/cilium-config,
    and the kinds that were skipped (kind -> count)."""

    inventory: Inventory
    workloads: tuple[WorkloadInfo, ...] = ()
    policies: tuple[dict[str, Any], ...] = ()
    cilium_config: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def read_dump(paths: Sequence[Path]) -> Dump:
    objects: dict[str, list[dict[str, Any]]] = {}
    configmaps: dict[tuple[str, str], dict[str, str]] = {}
    workloads: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    kube_system_uid = ""
    node_config_api: str | None = None
    node_config_objects: set[str] = set()
    for path in paths:
        for obj in _objects(path):
            group, kind = _group(obj), obj["kind"]
            meta = obj["metadata"]
            if (group, kind) == ("", "Node"):
                nodes.append(obj)
            elif (group, kind) == ("", "Pod"):
                pods.append(obj)
            elif (group, kind) == ("", "ConfigMap"):
                configmaps[(meta.get("namespace", ""), meta["name"])] = {
                    k: str(v) for k, v in (obj.get("data") or {}).items()
                }
            elif (group, kind) == ("", "Namespace"):
                if meta["name"] == "kube-system":
                    kube_system_uid = meta.get("uid", "")
            elif group == "apps" and kind in WORKLOAD_KINDS:
                workloads.append(obj)
                if kind in ("DaemonSet", "Deployment"):  # the inventory reads them too
                    objects.setdefault(kind.lower() + "s", []).append(obj)
            elif (group, kind) in _LISTS:
                objects.setdefault(_LISTS[(group, kind)], []).append(obj)
            elif kind == "CustomResourceDefinition" and meta["name"] == "ciliumnodeconfigs.cilium.io":
                served = {v.get("name") for v in (obj.get("spec") or {}).get("versions") or [] if v.get("served")}
                node_config_api = next((f"cilium.io/{v}" for v in NODE_CONFIG_VERSIONS if v in served), None)
            elif (group, kind) == ("cilium.io", "CiliumNodeConfig"):
                node_config_objects.add(obj["apiVersion"])
            else:
                skipped[kind] += 1
    names = ", ".join(str(p) for p in paths)
    if not nodes:
        raise BadInput(f"{names}: no Node objects: dump them with kubectl get nodes -o yaml (docs/rehearsal.md)")
    if not pods:
        raise BadInput(f"{names}: no Pod objects: dump them with kubectl get pods -A -o yaml (docs/rehearsal.md)")
    if node_config_api is None and node_config_objects:
        node_config_api = sorted(node_config_objects)[0]
    listed = Listed(
        identity=ClusterIdentity(kube_system_uid=kube_system_uid, server=f"dump://{Path(paths[0]).name}"),
        nodes=tuple(sorted((_mapped(node_info, n) for n in nodes), key=lambda n: n.name)),
        pods=tuple(_mapped(pod_info, p) for p in pods),
        cilium_config=configmaps.get(("kube-system", "cilium-config"), {}),
        node_config_api=node_config_api,
        **objects,  # type: ignore[arg-type]
    )
    inventory = interpret(listed, lambda namespace, name: configmaps.get((namespace, name), {}))
    policies = [
        *({**p, "kind": "NetworkPolicy"} for p in listed.policies),
        *({**p, "kind": "CalicoNetworkPolicy"} for p in listed.calico_policies),
        *({**p, "kind": "GlobalNetworkPolicy"} for p in listed.global_policies),
    ]
    mapped = tuple(_mapped(workload_info, o) for o in workloads)
    return Dump(inventory, mapped, tuple(policies), listed.cilium_config, dict(sorted(skipped.items())))


def _objects(path: Path) -> Iterator[dict[str, Any]]:
    """The objects in one file: every document, every ``List`` flattened."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        documents = [json.loads(text)] if text.lstrip().startswith("{") else list(yaml.load_all(text, Loader=_Loader))
    except (ValueError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise BadInput(f"{path} is not YAML or JSON{at}") from None
    for number, document in enumerate(documents, 1):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise BadInput(f"{path}: document {number} is not a Kubernetes object")
        items = document.get("items") if str(document.get("kind", "")).endswith("List") else [document]
        for index, obj in enumerate(items or []):
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if not isinstance(meta, dict) or not obj.get("kind") or not obj.get("apiVersion") or not meta.get("name"):
                raise BadInput(f"{path}: document {number}, object {index + 1} has no kind, apiVersion or name")
            yield obj


def _group(obj: dict[str, Any]) -> str:
    api_version = str(obj["apiVersion"])
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _mapped(convert: Any, obj: dict[str, Any]) -> Any:
    try:
        return convert(obj)
    except (KeyError, TypeError, AttributeError) as exc:
        meta = obj.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta['name']}" if meta.get("namespace") else meta.get("name")
        raise BadInput(f"{obj['kind']} {where} lacks a field the inventory reads: {exc}") from None
