"""What a policy rule's addresses select in this cluster, and the Cilium peers that select
the same (issue 27: faithful or honest). Pure; ``policy.py`` asks, per rule side.

Calico matches ``nets``/``notNets`` (and a Kubernetes ``ipBlock``) against every packet's
address: pods, nodes and the world alike. Cilium's CIDR rules (``toCIDR``, ``toCIDRSet``,
and a Kubernetes ipBlock as Cilium enforces it) apply only to peers it cannot give an
identity: never to the pods it manages, nor to the cluster's nodes unless it runs with
``policy-cidr-match-mode: nodes`` (cni-migrate does not set it). (Cilium's docs, "IP/CIDR
based" in security/policy/layer3: "CIDR rules do not apply to traffic where both sides of
the connection are either managed by Cilium or use an IP belonging to a node in the
cluster".) So the addresses are split by what they select here, and each part gets the
Cilium form that selects the same peers, or a reason it has none:

- **the world** (outside every range below): kept as the CIDR, which Cilium matches
  exactly there (``toCIDRSet`` with ``except`` for notNets and ipBlock excepts).
- **pods**: every Calico pool covered means every pod, which Cilium selects by identity
  wherever its pool puts them: ``toEndpoints`` with the namespace label ``Exists`` (every
  namespace). No pool touched: no pod. Part of the pools: untranslatable, since which pods
  hold which addresses is not something a label says. Cilium's pool touched without every
  Calico pool: untranslatable (under Calico those addresses are the pods already moved).
- **nodes**: every node address means the ``host`` and ``remote-node`` entities; none, no
  node; some: untranslatable (only policy-cidr-match-mode: nodes tells nodes apart by
  address). On ingress a remote node's own traffic to a pod leaves it through Calico's
  tunnel with the node's tunnel address, which Calico allocates from a pool: with every
  pool encapsulating Always, remote nodes match exactly when the pods do; with none
  encapsulating, when the node addresses do; with CrossSubnet it depends on the subnet,
  untranslatable unless both agree. Cilium lets a pod's own host in whatever the policy
  says (``allow-localhost``), so on ingress naming it changes nothing for an allow (a deny
  of it is refused in ``policy.py``).
- **every pod and every node**: the ``cluster`` entity (pods, host, remote-node, and
  Cilium's own health and ingress endpoints, whose addresses come from its pool); with the
  whole world of both families too: ``all``.
- **the Service range**: a ClusterIP is rewritten to a backend before (kube-proxy's DNAT,
  under Calico) or while (Cilium) policy is decided, and where the rewrite happens differs
  between dataplanes; addresses that select every pod also select every pod backend, which
  both judge alike; otherwise untranslatable. (A Service whose backends are outside the
  pods is judged by the parts above.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from migrate.model import CalicoPool, Inventory

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
EVERY_POD = {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "Exists"}]}
WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
SHOWN_NODES = 3  # node names a reason lists before "and N more"


@dataclass(frozen=True)
class ClusterRanges:
    """The cluster's address ranges a policy's addresses are judged against: Calico's pools
    (and whether they encapsulate), Cilium's pool, the node addresses and the Service range."""

    calico_pools: tuple[str, ...] = ()
    cilium_pool: str | None = None
    node_addresses: tuple[tuple[str, str], ...] = ()  # (node, address)
    service_cidrs: tuple[str, ...] = ()
    # Does a remote node's traffic to a pod carry a pool (tunnel) address under Calico?
    # True: every pool encapsulates Always; False: none encapsulates; None: it depends
    # (CrossSubnet, or pools that differ).
    tunnel_source: bool | None = True

    @cached_property
    def node_networks(self) -> tuple[tuple[str, Network], ...]:
        """The node addresses parsed once (a report judges every rule against them); an
        address that is not one is left out."""
        out = []
        for name, address in self.node_addresses:
            try:
                out.append((name, ipaddress.ip_network(address)))
            except ValueError:
                continue  # not an IP (a hostname in the node's status): selects nothing by address
        return tuple(out)

    @classmethod
    def from_inventory(cls, inv: Inventory, cilium_pool: str | None) -> ClusterRanges:
        modes = {_encapsulation(p) for p in inv.calico_pools}
        tunnel = True if modes == {"Always"} else False if modes == {"Never"} else None
        return cls(
            calico_pools=tuple(p.cidr for p in inv.calico_pools),
            cilium_pool=cilium_pool,
            node_addresses=tuple((n.name, a) for n in inv.nodes for a in n.addresses),
            service_cidrs=tuple(inv.service_cidrs),
            tunnel_source=tunnel if inv.calico_pools else True,
        )


def _encapsulation(pool: CalicoPool) -> str:
    """Always, Never or CrossSubnet: when the pool's IPIP or VXLAN tunnel carries traffic."""
    modes = {pool.ipip_mode, pool.vxlan_mode}
    return "Always" if "Always" in modes else "Never" if modes == {"Never"} else "CrossSubnet"


class Untranslatable(Exception):
    """Why a policy (or one of its rules, or a rule's addresses) has no faithful Cilium form:
    every reason found."""

    def __init__(self, *reasons: str) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Selected:
    """What a rule side's addresses select here: every pod, the host and the remote nodes
    (on this direction, see the module docstring), and the world part left as CIDR rules."""

    pods: bool
    host: bool
    remote_nodes: bool
    cidr: dict[str, Any] | None  # {"CIDR": [...]} or {"CIDRSet": [...]}, without the to/from
    whole_world: bool  # 0.0.0.0/0 and ::/0, nothing excepted

    def peers(self, word: str) -> list[dict[str, Any]]:
        """One Cilium peer per kind (Cilium refuses two L3 kinds in one rule), ``word`` to|from."""
        out: list[dict[str, Any]] = []
        if self.pods and self.host and self.remote_nodes:
            entities = ["all"] if self.whole_world else ["cluster"]
        else:
            if self.pods:
                out.append({f"{word}Endpoints": [EVERY_POD]})
            entities = [e for e, on in (("host", self.host), ("remote-node", self.remote_nodes)) if on]
        if entities:
            out.append({f"{word}Entities": entities})
        if self.cidr is not None and entities != ["all"]:
            ((kind, value),) = self.cidr.items()
            out.append({f"{word}{kind}": value})
        return out

    @property
    def in_cluster(self) -> bool:
        return self.pods or self.host or self.remote_nodes


def networks(texts: Iterable[str], what: str) -> list[Network]:
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            raise Untranslatable(f"{what} {text!r} is not a CIDR") from None
    return out


def subtract(these: Sequence[Network], minus: Sequence[Network]) -> list[Network]:
    """The addresses of ``these`` outside ``minus``, as networks. (Two CIDRs that overlap are
    nested, so each cut is whole or an ``address_exclude``.)"""
    left = list(these)
    for cut in minus:
        nxt: list[Network] = []
        for net in left:
            if net.version != cut.version or not net.overlaps(cut):  # type: ignore[arg-type]
                nxt.append(net)
            elif not net.subnet_of(cut):  # type: ignore[arg-type]
                nxt.extend(net.address_exclude(cut))  # type: ignore[arg-type]
        left = nxt
    return left


def _touches(these: Sequence[Network], net: Network) -> bool:
    return any(n.version == net.version and n.overlaps(net) for n in these)  # type: ignore[arg-type]


def covers(these: Sequence[Network], net: Network) -> bool:
    """Is every address of ``net`` in one of ``these``? (A sweep over sorted ranges: the
    cluster's ranges hold one network per node address, thousands on a large cluster.)"""
    start, end = int(net.network_address), int(net.broadcast_address)
    spans = sorted(
        (int(n.network_address), int(n.broadcast_address))
        for n in these
        if n.version == net.version and n.overlaps(net)  # type: ignore[arg-type]
    )
    for low, high in spans:
        if low > start:
            return False
        start = max(start, high + 1)
        if start > end:
            return True
    return False


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN_NODES])
    return shown + (f" and {len(items) - SHOWN_NODES} more" if len(items) > SHOWN_NODES else "")


def select(nets: Sequence[str], not_nets: Sequence[str], direction: str, ranges: ClusterRanges, shown: str) -> Selected:
    """What ``nets`` minus ``not_nets`` (no nets: every address) select in the cluster, on a
    rule of ``direction``; ``shown`` names the addresses in reasons. Raises Untranslatable
    with every reason the selection has no Cilium form."""
    included = networks(nets, "CIDR") if nets else list(WORLD)
    excluded = networks(not_nets, "CIDR")
    chosen = subtract(included, excluded)
    pools = networks(ranges.calico_pools, "Calico pool")
    cilium = networks([ranges.cilium_pool] if ranges.cilium_pool else [], "Cilium pool")
    services = networks(ranges.service_cidrs, "Service range")
    nodes = ranges.node_networks
    problems: list[str] = []

    touched_pools = [p for p in pools if _touches(chosen, p)]
    covered_pools = [p for p in pools if covers(chosen, p)]
    pods = bool(pools) and len(covered_pools) == len(pools)
    if not pools and chosen:
        problems.append(f"{shown}: Calico's IP pools are unknown, so are the pods these addresses select")
    elif touched_pools and not pods:
        part = ", ".join(str(p) for p in pools if p in touched_pools and p not in covered_pools)
        whole = ", ".join(str(p) for p in covered_pools)
        missed = ", ".join(str(p) for p in pools if p not in touched_pools)
        what = "; ".join(
            s
            for s in (
                f"part of Calico pool {part}" if part else "",
                f"all of {whole}" if whole else "",
                f"none of {missed}" if missed else "",
            )
            if s
        )
        problems.append(
            f"{shown} selects some pods by address ({what}): Cilium selects pods by identity, never by address; "
            "select them by label"
        )
    elif not touched_pools and cilium and _touches(chosen, cilium[0]):
        problems.append(
            f"{shown} overlaps Cilium's pool {cilium[0]}, the addresses migrated pods get: Cilium never selects "
            "its pods by address; select them by label"
        )

    node_in: list[str] = []
    node_out: list[str] = []
    for name, address in nodes:  # one address: inside one network of ``chosen`` or not at all
        inside = any(c.version == address.version and address.subnet_of(c) for c in chosen)  # type: ignore[arg-type]
        (node_in if inside else node_out).append(name)
    all_nodes = bool(nodes) and not node_out
    remote_by_tunnel = direction == "ingress" and ranges.tunnel_source is True
    if node_in and node_out and not remote_by_tunnel:
        problems.append(
            f"{shown} holds the addresses of node(s) {_names(sorted(set(node_in)))} but not of "
            f"{_names(sorted(set(node_out)))}: Cilium selects nodes as a whole (host, remote-node) unless it runs "
            "with policy-cidr-match-mode: nodes"
        )
    if direction == "ingress":
        if ranges.tunnel_source is True:
            remote = pods
        elif ranges.tunnel_source is False:
            remote = all_nodes
        else:
            remote = pods
            if pods != all_nodes:
                problems.append(
                    f"{shown} selects {'every pod but no node' if pods else 'the nodes but no pod'}, and with "
                    "Calico's CrossSubnet encapsulation a remote node's traffic to a pod carries its tunnel address "
                    "(in the pool) or its own, depending on the subnet"
                )
        host = remote  # the pod's own host: Cilium lets it in whatever the rule says (allow-localhost)
    else:
        remote = host = all_nodes

    touched_services = [str(s) for s in services if _touches(chosen, s)]
    if touched_services and not pods:
        problems.append(
            f"{shown} overlaps the Service range {', '.join(touched_services)}: a ClusterIP is rewritten to a "
            "backend before (Calico, after kube-proxy) or while (Cilium) policy decides, differently per "
            "dataplane; select the backends by label"
        )
    if problems:
        raise Untranslatable(*problems)

    cluster = pools + cilium + services + [a for _, a in nodes]
    whole_world = not excluded and all(w in included for w in WORLD)
    return Selected(pods, host, remote, _cidr_part(included, excluded, cluster), whole_world)


def _cidr_part(
    included: Sequence[Network], excluded: Sequence[Network], cluster: Sequence[Network]
) -> dict[str, Any] | None:
    """The CIDR rule for the world part: each included network that still holds an address
    outside the cluster's ranges and the exclusions, with the exclusions inside it."""
    kept = []
    for net in included:
        if covers([*excluded, *cluster], net):
            continue  # only cluster (or excepted) addresses: selected above, or by nobody
        inside = sorted({str(e) for e in excluded if e.version == net.version and e.subnet_of(net)})  # type: ignore[arg-type]
        kept.append((str(net), inside))
    if not kept:
        return None
    if not excluded:
        return {"CIDR": [n for n, _ in kept]}
    return {"CIDRSet": [{"cidr": n, **({"except": e} if e else {})} for n, e in kept]}
