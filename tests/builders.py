"""Synthetic inventories for tests and benchmarks: seeded, any size, no cluster needed."""

from __future__ import annotations

import random

from migrate.model import (
    CONTROL_PLANE_LABEL,
    CiliumState,
    ClusterIdentity,
    Cni,
    Inventory,
    LabelSelector,
    NodeInfo,
    OwnerRef,
    PDBInfo,
    PodInfo,
    frozen_map,
)


def node(name: str, *, control_plane: bool = False, **kw: object) -> NodeInfo:
    labels = {"kubernetes.io/hostname": name, **({CONTROL_PLANE_LABEL: ""} if control_plane else {})}
    fields: dict[str, object] = dict(
        name=name,
        uid=f"uid-{name}",
        labels=frozen_map(labels),
        kernel_version="6.1.0-18-amd64",
        cpu_millis=4000,
        memory_bytes=8 * 2**30,
        max_pods=110,
        cni=Cni.CALICO,
    )
    fields.update(kw)
    return NodeInfo(**fields)  # type: ignore[arg-type]


def pod(
    name: str,
    node_name: str | None,
    *,
    ns: str = "default",
    app: str = "",
    owner: str | None = "ReplicaSet",
    **kw: object,
) -> PodInfo:
    fields: dict[str, object] = dict(
        namespace=ns,
        name=name,
        uid=f"uid-{ns}-{name}",
        node=node_name,
        labels=frozen_map({"app": app or name}),
        owner=OwnerRef(owner, app or name) if owner else None,
        cpu_millis=100,
        memory_bytes=128 * 2**20,
    )
    fields.update(kw)
    return PodInfo(**fields)  # type: ignore[arg-type]


def pdb(name: str, app: str, *, ns: str = "default", allowed: int = 1, healthy: int = 3, desired: int = 2) -> PDBInfo:
    return PDBInfo(
        namespace=ns,
        name=name,
        selector=LabelSelector(match_labels=frozen_map({"app": app})),
        disruptions_allowed=allowed,
        current_healthy=healthy,
        desired_healthy=desired,
        expected_pods=healthy,
    )


def inventory(nodes: list[NodeInfo], pods: list[PodInfo] = (), pdbs: list[PDBInfo] = (), **kw: object) -> Inventory:  # type: ignore[assignment]
    fields: dict[str, object] = dict(
        identity=ClusterIdentity("ks-uid", "https://test:6443"),
        nodes=tuple(nodes),
        pods=tuple(pods),
        pdbs=tuple(pdbs),
        cilium=CiliumState(installed=True, migration_mode=True, node_config_api="cilium.io/v2"),
        calico_install="operator",  # a cluster to migrate runs Calico
    )
    fields.update(kw)
    return Inventory(**fields)  # type: ignore[arg-type]


def synthetic(
    nodes: int,
    pods_per_node: int = 30,
    pdbs: int = 0,
    seed: int = 0,
    control_planes: int = 3,
    zero_budget: float = 0.0,
) -> Inventory:
    """A large, realistic-looking inventory: workloads spread over nodes, PDBs over apps;
    ``zero_budget`` of the PDBs allow no disruption (as single-replica apps' PDBs do)."""
    rng = random.Random(seed)
    node_list = [node(f"cp-{i}", control_plane=True) for i in range(1, min(control_planes, nodes) + 1)]
    node_list += [
        node(f"node-{i:05d}", cpu_millis=64000, memory_bytes=256 * 2**30, max_pods=250)
        for i in range(1, nodes - len(node_list) + 1)
    ]
    workers = [n.name for n in node_list if not n.control_plane]
    apps = max(pdbs, nodes * pods_per_node // 15, 1)
    namespaces = [f"team-{i}" for i in range(max(apps // 10, 1))]
    app_ns = {f"app-{a}": namespaces[a % len(namespaces)] for a in range(apps)}
    pod_list = []
    for i in range(len(workers) * pods_per_node):
        app = f"app-{rng.randrange(apps)}"
        pod_list.append(
            pod(
                f"{app}-{i}", workers[i % len(workers)], ns=app_ns[app], app=app, cpu_millis=50, memory_bytes=64 * 2**20
            )
        )
    pdb_list = [
        pdb(
            f"app-{a}",
            f"app-{a}",
            ns=app_ns[f"app-{a}"],
            allowed=0 if zero_budget and rng.random() < zero_budget else rng.choice([1, 1, 2, 3]),
        )
        for a in range(min(pdbs, apps))
    ]
    return inventory(node_list, pod_list, pdb_list)
