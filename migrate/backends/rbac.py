"""The permissions cni-migrate uses: checked by ``plan`` (SelfSubjectAccessReview) and
shipped as the least-privilege ClusterRole in ``deploy/rbac.yaml`` (a test keeps the two
in step). Each entry: (verb, API group, resource, namespace or "" for cluster-wide)."""

from __future__ import annotations

from migrate.traffic import NAMESPACE as TRAFFIC_WATCH_NAMESPACE
from migrate.traffic import PERMISSIONS as TRAFFIC_WATCH_PERMISSIONS

TOOL_NAMESPACE = "cni-migrate"

PERMISSIONS: tuple[tuple[str, str, str, str], ...] = (
    ("get", "", "namespaces", ""),
    ("get", "", "nodes", ""),
    ("list", "", "nodes", ""),
    ("watch", "", "nodes", ""),
    ("patch", "", "nodes", ""),
    ("get", "", "pods", ""),
    ("list", "", "pods", ""),
    ("watch", "", "pods", ""),
    ("delete", "", "pods", ""),
    ("patch", "", "pods", ""),  # a surge's pod-deletion-cost; a hand-off's labels
    ("create", "", "pods/eviction", ""),
    ("create", "", "pods", TOOL_NAMESPACE),
    ("deletecollection", "", "pods", TOOL_NAMESPACE),  # a node's probe pods, by their labels
    ("create", "", "services", TOOL_NAMESPACE),
    ("list", "", "services", TOOL_NAMESPACE),
    ("delete", "", "services", TOOL_NAMESPACE),
    ("create", "networking.k8s.io", "networkpolicies", TOOL_NAMESPACE),  # the policy probe after finalize
    ("delete", "networking.k8s.io", "networkpolicies", TOOL_NAMESPACE),
    ("create", "", "events", ""),
    ("get", "", "configmaps", "kube-system"),
    ("get", "", "configmaps", TOOL_NAMESPACE),
    ("create", "", "configmaps", TOOL_NAMESPACE),
    ("update", "", "configmaps", TOOL_NAMESPACE),
    ("delete", "", "configmaps", TOOL_NAMESPACE),
    ("list", "apps", "daemonsets", ""),
    ("list", "apps", "deployments", ""),  # surge before evict: the Deployments behind a drain's pods
    ("get", "apps", "deployments", ""),
    ("patch", "apps", "deployments", ""),  # a surge's replicas and its record, in one write
    ("list", "autoscaling", "horizontalpodautoscalers", ""),  # autoscaled Deployments are not surged
    ("list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""),
    ("list", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""),
    ("list", "", "services", ""),  # those admission webhooks call; UDP Services' backends (hand-off)
    ("list", "discovery.k8s.io", "endpointslices", ""),  # a handed-off pod's endpoint gone
    ("watch", "discovery.k8s.io", "endpointslices", ""),
    ("list", "policy", "poddisruptionbudgets", ""),
    ("list", "networking.k8s.io", "networkpolicies", ""),
    ("list", "networking.k8s.io", "servicecidrs", ""),
    ("get", "coordination.k8s.io", "leases", TOOL_NAMESPACE),
    ("create", "coordination.k8s.io", "leases", TOOL_NAMESPACE),
    ("update", "coordination.k8s.io", "leases", TOOL_NAMESPACE),
    ("list", "crd.projectcalico.org", "ippools", ""),
    ("list", "crd.projectcalico.org", "networkpolicies", ""),
    ("list", "crd.projectcalico.org", "globalnetworkpolicies", ""),
    ("list", "crd.projectcalico.org", "felixconfigurations", ""),
    ("list", "operator.tigera.io", "installations", ""),
    ("list", "cilium.io", "ciliumnodeconfigs", ""),
    ("get", "cilium.io", "ciliumnodeconfigs", "kube-system"),
    ("create", "cilium.io", "ciliumnodeconfigs", "kube-system"),
    ("update", "cilium.io", "ciliumnodeconfigs", "kube-system"),
    ("delete", "cilium.io", "ciliumnodeconfigs", "kube-system"),
    ("delete", "operator.tigera.io", "installations", ""),
    ("delete", "apps", "daemonsets", "kube-system"),
    ("delete", "apps", "deployments", "kube-system"),
    ("list", "cilium.io", "ciliumnodes", ""),
    ("get", "cilium.io", "ciliumnodes", ""),
)

# apply --traffic-watch only (checked when it is asked for): see migrate.traffic.PERMISSIONS.
TRAFFIC_NAMESPACE = TRAFFIC_WATCH_NAMESPACE
TRAFFIC_PERMISSIONS = TRAFFIC_WATCH_PERMISSIONS


def describe(permission: tuple[str, str, str, str]) -> str:
    verb, group, resource, namespace = permission
    qualified = f"{resource}.{group}" if group else resource
    return f"{verb} {qualified}" + (f" in {namespace}" if namespace else "")
