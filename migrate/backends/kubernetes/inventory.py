"""Reading a cluster's inventory: every list at once (the pods' pages read ahead), the
permissions this identity lacks, and their interpretation into the model's ``Inventory``
(Calico's install, pools and routing; Cilium's state; policies)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from kubernetes import client

from migrate.backends.kubernetes.mapping import (
    CALICO_NODE_DS,
    autoscaler_info,
    calico_routing,
    deployment_info,
    pdb_info,
    pod_info,
    udp_service_info,
    webhook_infos,
)
from migrate.backends.rbac import PERMISSIONS, describe
from migrate.cilium import migration_mode_gaps
from migrate.errors import NotFound, PermanentError
from migrate.model import CalicoPool, CiliumState, ClusterIdentity, Inventory, NetworkPolicyInfo, NodeInfo, PodInfo
from migrate.policy import addresses

if TYPE_CHECKING:
    from migrate.backends.kubernetes.cluster import KubernetesCluster

T = TypeVar("T")


class InventoryReader:
    """The inventory of the cluster it is given."""

    def __init__(self, cluster: KubernetesCluster) -> None:
        self.cluster = cluster
        self.rest, self.core = cluster.rest, cluster.core

    def read(self) -> Inventory:
        # Every read at once, each in a thread of its own: the pods' pages are most of the
        # time, and the small reads (and the permission checks) fit beside them.
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="inventory") as pool:

            def listed(what: str, fn: Callable[..., Any]) -> concurrent.futures.Future[list[Any]]:
                return pool.submit(lambda: self.rest.list_all(what, fn)[0])

            def custom(group: str, plural: str) -> concurrent.futures.Future[list[Any]]:
                return pool.submit(self.rest.list_custom, group, "v1", plural)

            pods_read = pool.submit(
                lambda: tuple(
                    self.rest.list_all("list pods", self.core.list_pod_for_all_namespaces, convert=pod_info)[0]
                )
            )
            missing_read = pool.submit(self.missing_permissions)
            nodes_read = pool.submit(self.cluster.nodes)
            pdbs_read = listed(
                "list poddisruptionbudgets",
                client.PolicyV1Api(self.cluster.api).list_pod_disruption_budget_for_all_namespaces,
            )
            apps = client.AppsV1Api(self.cluster.api)
            daemonsets_read = listed("list daemonsets", apps.list_daemon_set_for_all_namespaces)
            deployments_read = listed("list deployments", apps.list_deployment_for_all_namespaces)
            autoscalers_read = listed(
                "list horizontalpodautoscalers",
                client.AutoscalingV2Api(self.cluster.api).list_horizontal_pod_autoscaler_for_all_namespaces,
            )
            networking = client.NetworkingV1Api(self.cluster.api)
            policies_read = listed("list networkpolicies", networking.list_network_policy_for_all_namespaces)
            service_cidrs_read = listed("list servicecidrs", networking.list_service_cidr)
            felix_read = custom("crd.projectcalico.org", "felixconfigurations")
            calico_pools_read = custom("crd.projectcalico.org", "ippools")
            installations_read = custom("operator.tigera.io", "installations")
            calico_policies_read = custom("crd.projectcalico.org", "networkpolicies")
            global_policies_read = custom("crd.projectcalico.org", "globalnetworkpolicies")
            cilium_config_read = pool.submit(self.cluster.read_configmap, "kube-system", "cilium-config")
            node_config_api_read = pool.submit(
                self.served_version, "cilium.io", "ciliumnodeconfigs", ("v2", "v2alpha1")
            )
            identity_read = pool.submit(self.cluster.identity)
            admission = client.AdmissionregistrationV1Api(self.cluster.api)
            validating_read = listed(
                "list validatingwebhookconfigurations", admission.list_validating_webhook_configuration
            )
            mutating_read = listed("list mutatingwebhookconfigurations", admission.list_mutating_webhook_configuration)
            services_read = listed("list services", self.core.list_service_for_all_namespaces)

            # With some permissions missing, a read they forbid counts as empty, so the plan
            # can list *every* missing permission instead of stopping at the first 403 (its
            # blocking rbac finding keeps apply from acting on the incomplete picture).
            missing = missing_read.result()

            def read(future: concurrent.futures.Future[T], empty: T) -> T:
                try:
                    return future.result()
                except PermanentError as exc:
                    if not missing or exc.context.get("status") != 403:
                        raise
                    return empty

            def service_cidrs() -> list[Any]:
                try:
                    return read(service_cidrs_read, [])
                except NotFound:
                    return []  # before Kubernetes 1.33 the Service range is not an API object

            nodes: list[NodeInfo] = read(nodes_read, [])
            validating, mutating = read(validating_read, []), read(mutating_read, [])
            lists = Listed(
                identity=identity_read.result(),
                nodes=tuple(nodes),
                pods=read(pods_read, ()),
                pdbs=read(pdbs_read, []),
                daemonsets=read(daemonsets_read, []),
                deployments=read(deployments_read, []),
                autoscalers=read(autoscalers_read, []),
                policies=read(policies_read, []),
                service_cidrs=service_cidrs(),
                felix=read(felix_read, []),
                calico_pools=read(calico_pools_read, []),
                installations=read(installations_read, []),
                calico_policies=read(calico_policies_read, []),
                global_policies=read(global_policies_read, []),
                cilium_config=read(cilium_config_read, {}),
                node_config_api=read(node_config_api_read, None),
                validating_webhooks=validating,
                mutating_webhooks=mutating,
                services=read(services_read, []),
                missing_permissions=missing,
            )

        def configmap(namespace: str, name: str) -> dict[str, str]:
            try:
                return self.cluster.read_configmap(namespace, name)
            except PermanentError:
                return {}  # not ours to read: Calico's defaults stand in

        return interpret(lists, configmap)

    def served_version(self, group: str, plural: str, versions: Sequence[str]) -> str | None:
        """The first of ``versions`` in which the API server serves ``plural``."""
        for version in versions:
            try:
                self.rest.call(
                    f"list {plural}.{group}/{version}",
                    self.cluster.custom.list_cluster_custom_object,
                    group,
                    version,
                    plural,
                    limit=1,
                    _preload_content=False,
                )
            except NotFound:
                continue  # not served in that version
            return f"{group}/{version}"
        return None

    def missing_permissions(self, extra: Sequence[tuple[str, str, str, str]] = ()) -> tuple[str, ...]:
        """Permissions from rbac.PERMISSIONS (and ``extra``) this identity lacks
        (SelfSubjectAccessReview), asked eight at a time (some thirty small requests, each a
        round trip: one after another they outlast a small cluster's whole inventory)."""
        authz = client.AuthorizationV1Api(self.cluster.api)

        def allowed(permission: tuple[str, str, str, str]) -> bool:
            verb, group, resource, namespace = permission
            sub = None
            if "/" in resource:
                resource, sub = resource.split("/", 1)
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        **({"subresource": sub} if sub else {}),
                        **({"namespace": namespace} if namespace else {}),
                    }
                },
            }
            result = self.rest.json("create selfsubjectaccessreview", authz.create_self_subject_access_review, review)
            return bool((result.get("status") or {}).get("allowed"))

        permissions = (*PERMISSIONS, *extra)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="access-review") as pool:
            answers = list(pool.map(allowed, permissions))
        return tuple(describe(p) for p, ok in zip(permissions, answers, strict=True) if not ok)


@dataclass(frozen=True)
class Listed:
    """What the inventory lists, as read: nodes and pods already mapped (pods page by page,
    so their JSON is dropped as soon as it is read), everything else as the API's JSON."""

    identity: ClusterIdentity
    nodes: tuple[NodeInfo, ...]
    pods: tuple[PodInfo, ...]
    pdbs: list[dict[str, Any]] = field(default_factory=list)
    daemonsets: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    autoscalers: list[dict[str, Any]] = field(default_factory=list)  # HorizontalPodAutoscalers
    policies: list[dict[str, Any]] = field(default_factory=list)
    service_cidrs: list[dict[str, Any]] = field(default_factory=list)
    felix: list[dict[str, Any]] = field(default_factory=list)
    calico_pools: list[dict[str, Any]] = field(default_factory=list)
    installations: list[dict[str, Any]] = field(default_factory=list)
    calico_policies: list[dict[str, Any]] = field(default_factory=list)
    global_policies: list[dict[str, Any]] = field(default_factory=list)
    cilium_config: dict[str, str] = field(default_factory=dict)
    node_config_api: str | None = None
    validating_webhooks: list[dict[str, Any]] = field(default_factory=list)
    mutating_webhooks: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)  # every Service
    missing_permissions: tuple[str, ...] = ()


def interpret(listed: Listed, configmap: Callable[[str, str], dict[str, str]]) -> Inventory:
    """The inventory the lists describe: Calico's install, dataplane, pools and routing,
    Cilium's state, the policies. Pure: ``configmap(namespace, name)`` is asked for the
    ConfigMaps calico-node's environment refers to. The live read and a dump read from a
    file (``dump.py``) both end here, so a copy of a cluster is understood as the cluster is."""
    ds_names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in listed.daemonsets}
    installations = list(listed.installations)
    install = "operator" if installations else ("manifest" if CALICO_NODE_DS & ds_names else "none")
    dataplane = "iptables"
    for inst in installations:
        if ((inst.get("spec") or {}).get("calicoNetwork") or {}).get("linuxDataplane", "").lower() == "bpf":
            dataplane = "bpf"
    agents = [p for p in listed.pods if p.namespace == "kube-system" and p.labels.get("k8s-app") == "cilium"]
    calico_ds = next(
        (d for d in listed.daemonsets if (d["metadata"]["namespace"], d["metadata"]["name"]) in CALICO_NODE_DS), None
    )
    cilium_ds = next(
        (
            d
            for d in listed.daemonsets
            if (d["metadata"]["namespace"], d["metadata"]["name"]) == ("kube-system", "cilium")
        ),
        None,
    )
    cilium_config = dict(listed.cilium_config)
    services = {(v["metadata"].get("namespace", ""), v["metadata"]["name"]): v for v in listed.services}
    bgp, autodetection = calico_routing(installations, calico_ds, configmap)
    felix_default = next((f for f in listed.felix if f["metadata"]["name"] == "default"), {})
    return Inventory(
        identity=listed.identity,
        nodes=listed.nodes,
        pods=listed.pods,
        pdbs=tuple(pdb_info(p) for p in listed.pdbs),
        calico_pools=tuple(
            CalicoPool(
                p["metadata"]["name"],
                (p.get("spec") or {}).get("cidr", ""),
                (p.get("spec") or {}).get("vxlanMode", "Never"),
                (p.get("spec") or {}).get("ipipMode", "Never"),
            )
            for p in listed.calico_pools
        ),
        calico_install=install,
        calico_dataplane=dataplane,
        calico_bgp=bgp if install != "none" else False,
        calico_autodetection=autodetection if install != "none" else "",
        calico_vxlan_port=int((felix_default.get("spec") or {}).get("vxlanPort") or 4789),
        service_cidrs=tuple(c for sc in listed.service_cidrs for c in (sc.get("spec") or {}).get("cidrs") or ()),
        cilium=CiliumState(
            installed=("kube-system", "cilium") in ds_names,
            migration_mode=not migration_mode_gaps(cilium_config),
            mode_gaps=migration_mode_gaps(cilium_config),
            node_config_api=listed.node_config_api,
            cluster_pool_cidr=cilium_config.get("cluster-pool-ipv4-cidr"),
            agents_ready=sum(1 for a in agents if a.ready),
            agents_desired=int(((cilium_ds or {}).get("status") or {}).get("desiredNumberScheduled") or 0),
            tunnel_port=int(cilium_config["tunnel-port"]) if cilium_config.get("tunnel-port") else None,
        ),
        kube_proxy_cluster_cidr=kube_proxy_cluster_cidr(listed.daemonsets, configmap),
        webhooks=tuple(
            hook
            for kind, configurations in (
                ("ValidatingWebhookConfiguration", listed.validating_webhooks),
                ("MutatingWebhookConfiguration", listed.mutating_webhooks),
            )
            for configuration in configurations
            for hook in webhook_infos(kind, configuration, services)
        ),
        policies=tuple(
            NetworkPolicyInfo(kind, p["metadata"].get("namespace", ""), p["metadata"]["name"], addresses(p))
            for kind, items in (
                ("NetworkPolicy", listed.policies),
                ("CalicoNetworkPolicy", listed.calico_policies),
                ("GlobalNetworkPolicy", listed.global_policies),
            )
            for p in items
        ),
        deployments=tuple(deployment_info(d) for d in listed.deployments),
        autoscalers=tuple(autoscaler_info(a) for a in listed.autoscalers),
        udp_services=tuple(s for s in map(udp_service_info, listed.services) if s is not None),
        missing_permissions=listed.missing_permissions,
    )


KUBE_PROXY_DS = ("kube-system", "kube-proxy")


def kube_proxy_cluster_cidr(
    daemonsets: Sequence[dict[str, Any]], configmap: Callable[[str, str], dict[str, str]]
) -> str:
    """kube-proxy's clusterCIDR: its --cluster-cidr flag, else the KubeProxyConfiguration in
    the ConfigMap its pods mount (kube-system/kube-proxy as kubeadm writes it); "" when
    kube-proxy does not run or sets none."""
    ds = next((d for d in daemonsets if (d["metadata"]["namespace"], d["metadata"]["name"]) == KUBE_PROXY_DS), None)
    if ds is None:
        return ""
    pod_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod_spec.get("containers") or []:
        for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
            if str(arg).startswith("--cluster-cidr="):
                return str(arg).split("=", 1)[1]
    volumes = pod_spec.get("volumes") or []
    mounted = [str(v["configMap"]["name"]) for v in volumes if (v.get("configMap") or {}).get("name")]
    for name in mounted or ["kube-proxy"]:
        for text in configmap(KUBE_PROXY_DS[0], name).values():
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(config, dict) and config.get("kind") == "KubeProxyConfiguration":
                return str(config.get("clusterCIDR") or "")
    return ""
