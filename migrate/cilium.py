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

from collections.abc import Mapping
from typing import Any

from migrate.errors import BadInput
from migrate.journal import ClusterStep
from migrate.model import MIGRATION_LABEL
from migrate.plan import NODE_POOL_PREFIX, PlanOptions

NODE_CONFIG_NAME = "cilium-default"
CALICO_VXLAN_PORT = 4789
CILIUM_TUNNEL_PORT = 8473
CILIUM_DEFAULT_VXLAN_PORT = 8472  # what an installed Cilium uses when tunnel-port is unset


def migration_values(options: PlanOptions) -> dict[str, Any]:
    """The values for migration mode: the site's (``plan --cilium-values``) with ours over them."""
    return _merge(options.install_cilium_values, _migration(options))


def _migration(options: PlanOptions) -> dict[str, Any]:
    return {
        "operator": {"unmanagedPodWatcher": {"restart": False}},
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "tunnelPort": CILIUM_TUNNEL_PORT,
        "cni": {"customConf": True, "uninstall": False},
        "ipam": {
            "mode": "cluster-pool",
            "operator": {
                "clusterPoolIPv4PodCIDRList": [options.cilium_pool_cidr],
                "clusterPoolIPv4MaskSize": NODE_POOL_PREFIX,
            },
        },
        "policyEnforcementMode": "never",
        "bpf": {"hostLegacyRouting": True},
    }


# The journal's cluster-level step for apply --install-cilium (``RunState.prepare``).
INSTALL_CILIUM = ClusterStep.INSTALL_CILIUM

# cilium-config keys the Helm chart renders from ``migration_values``, and what they must say.
MIGRATION_CONFIG = {
    "custom-cni-conf": "true",  # cni.customConf: leave the nodes' CNI config to the node config
    "enable-policy": "never",  # policyEnforcementMode: never, while Calico still enforces
    "enable-host-legacy-routing": "true",  # bpf.hostLegacyRouting: Calico <-> Cilium traffic
}


# ... and what they say once finalize has upgraded Cilium with ``final_values``.
FINAL_CONFIG = {
    "custom-cni-conf": "false",  # Cilium writes every node's CNI config itself
    "enable-policy": "default",  # policy enforced again
    "enable-host-legacy-routing": "false",
}


def final_config_problems(config: dict[str, str]) -> list[str]:
    """What in the running Cilium's configuration still differs from the final values."""
    return [
        f"{key} is {config.get(key, 'unset')!r}, not {want!r}"
        for key, want in FINAL_CONFIG.items()
        if config.get(key, "").lower() != want
    ]


def migration_mode_gaps(config: dict[str, str]) -> tuple[str, ...]:
    """What in a running Cilium's configuration keeps it from the migration mode: every
    backend's inventory decides "in migration mode" with this one rule."""
    return tuple(
        f"{key} is {config.get(key, 'unset')!r}, not {want!r}"
        for key, want in MIGRATION_CONFIG.items()
        if config.get(key, "").lower() != want
    )


def live_config_problems(config: dict[str, str], options: PlanOptions) -> list[str]:
    """What in the running Cilium's configuration (its cilium-config ConfigMap) differs from
    the migration mode the plan prescribes; empty when it matches."""
    if not config:
        return ["Cilium is not installed (no kube-system/cilium-config)"]
    problems = list(migration_mode_gaps(config))
    pool = config.get("cluster-pool-ipv4-cidr", "")
    if pool != options.cilium_pool_cidr:
        problems.append(f"cluster-pool-ipv4-cidr is {pool or 'unset'!r}, the plan's pool is {options.cilium_pool_cidr}")
    port = config.get("tunnel-port", "")
    if port == str(CALICO_VXLAN_PORT):
        problems.append(f"tunnel-port is {port}, Calico's VXLAN port")
    return problems


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
    """Values after finalize: the same IPAM, tunnel and site values, migration settings off."""
    return _merge(
        migration_values(options),
        {
            "cni": {"customConf": False, "uninstall": True},
            "operator": {"unmanagedPodWatcher": {"restart": True}},
            "policyEnforcementMode": "default",
            "bpf": {"hostLegacyRouting": False},
        },
    )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, mappings merged key by key (Helm's rule for -f files)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _paths(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the leaves (a non-empty mapping is no leaf)."""
    paths: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths += _paths(value, path + ".") if isinstance(value, Mapping) and value else [path]
    return paths


def site_values(values: Any, source: str) -> dict[str, Any]:
    """Check ``plan --cilium-values``: a mapping that leaves every key of migration mode and
    of finalize to cni-migrate (they decide whether traffic keeps flowing during the window)."""
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise BadInput(f"--cilium-values {source} is not a mapping of Helm values")
    # Every leaf we set, and the whole of cni and ipam: how nodes get their CNI config and
    # their addresses is the migration itself (cni.exclusive would remove Calico's config).
    ours = {*_paths(_migration(PlanOptions())), *_paths(final_values(PlanOptions())), "cni", "ipam"}
    taken = sorted(
        p for p in _paths(values) if any(p == o or o.startswith(p + ".") or p.startswith(o + ".") for o in ours)
    )
    if taken:
        raise BadInput(
            f"--cilium-values {source} sets {', '.join(taken)}: cni-migrate sets these for the migration; "
            "remove them (the plan's own options cover the pool: --cilium-pool-cidr)"
        )
    return dict(values)
