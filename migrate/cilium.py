"""Cilium's side of the per-node migration, as data: the Helm values for migration mode
and the ``cilium-default`` CiliumNodeConfig. Pure; backends apply what this returns.

Migration mode (Cilium's "Migrating a cluster to Cilium" guide): Cilium runs beside Calico
with its own cluster-pool IPAM and a tunnel port apart from Calico's VXLAN port, leaves
the nodes' CNI configuration alone (``cni.customConf``), does not uninstall it, does not
restart pods it does not manage, does not enforce policy, and uses legacy host routing so
that traffic between Calico and Cilium nodes keeps working. A node switches when it gets
the label selected by ``cilium-default`` and its agent restarts.
"""

from __future__ import annotations

from typing import Any

from migrate.model import MIGRATION_LABEL
from migrate.plan import PlanOptions

NODE_CONFIG_NAME = "cilium-default"
CALICO_VXLAN_PORT = 4789
CILIUM_TUNNEL_PORT = 8473
CILIUM_DEFAULT_VXLAN_PORT = 8472  # what an installed Cilium uses when tunnel-port is unset


def migration_values(options: PlanOptions) -> dict[str, Any]:
    return {
        "operator": {"unmanagedPodWatcher": {"restart": False}},
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "tunnelPort": CILIUM_TUNNEL_PORT,
        "cni": {"customConf": True, "uninstall": False},
        "ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": [options.cilium_pool_cidr]}},
        "policyEnforcementMode": "never",
        "bpf": {"hostLegacyRouting": True},
    }


def node_config(api_version: str) -> dict[str, Any]:
    """The CiliumNodeConfig that makes a labelled node's agent take over its CNI config."""
    return {
        "apiVersion": api_version,
        "kind": "CiliumNodeConfig",
        "metadata": {"name": NODE_CONFIG_NAME, "namespace": "kube-system"},
        "spec": {
            "nodeSelector": {"matchLabels": {MIGRATION_LABEL: "true"}},
            "defaults": {
                "write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                "custom-cni-conf": "false",
                "cni-chaining-mode": "none",
                "cni-exclusive": "true",
            },
        },
    }


def final_values(options: PlanOptions) -> dict[str, Any]:
    """Values after finalize: the same IPAM and tunnel, migration settings off."""
    values = migration_values(options)
    values["cni"] = {"customConf": False, "uninstall": True}
    values["operator"] = {"unmanagedPodWatcher": {"restart": True}}
    values["policyEnforcementMode"] = "default"
    values["bpf"] = {"hostLegacyRouting": False}
    return values
