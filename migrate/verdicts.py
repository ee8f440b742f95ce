"""Validation checks: what each one means, decided once for every backend.

A backend observes (a node's Cilium agent, its CiliumNode's pod CIDRs, the address a probe
pod got, what a probe pod's commands answered, which connections between nodes went
through); the functions here turn those observations into ``ProbeResult`` verdicts, so a
check means the same on a real cluster and in the simulation. Pure: no I/O.

The checks, in the order the validate step asks for them:

- ``cilium-agent-ready``: the node's Cilium agent pod is Ready;
- ``cilium-node``: the node's CiliumNode has pod CIDRs, all inside the planned pool;
- ``pod-network``: a probe pod on the node got an address from the planned pool;
- ``dns``: from that pod, cluster DNS answers for the API server's Service name;
- ``connectivity``: from that pod, the API server's Service accepts a connection;
- ``cross-node``: probe pods on the node and on a Calico and a Cilium peer reach each other
  both ways, and a ClusterIP Service in front of the peers answers the node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migrate.ports import ProbeResult

CHECKS = ("cilium-agent-ready", "cilium-node", "pod-network", "dns", "connectivity", "cross-node")
DNS_NAME = "kubernetes.default.svc.cluster.local"
API_TARGET = f"{DNS_NAME}:443"


@dataclass(frozen=True)
class Connection:
    """One attempted connection: ``label`` says from where to where (``a->b (cilium)``)."""

    label: str
    ok: bool
    message: str = ""


def agent_ready(agent: str | None, ready: bool) -> ProbeResult:
    """``agent``: the name of the node's Cilium agent pod, None when there is none."""
    ok = agent is not None and ready
    observed = f"{agent} Ready" if ok else (f"{agent} not Ready" if agent else "no Cilium agent on the node")
    return ProbeResult("cilium-agent-ready", ok, observed, "a Ready Cilium agent")


def cilium_node(node: str, cidrs: Sequence[str] | None, pool: str) -> ProbeResult:
    """``cidrs``: the CiliumNode's ``spec.ipam.podCIDRs``, None when the node has no CiliumNode."""
    expected = f"pod CIDRs inside {pool or 'the Cilium pool'}"
    if cidrs is None:
        return ProbeResult("cilium-node", False, f"no CiliumNode {node}", expected)
    ok = bool(cidrs and pool) and all(_inside(cidr, pool) for cidr in cidrs)
    observed = f"CiliumNode {node} podCIDRs {', '.join(cidrs) or 'none'}"
    return ProbeResult("cilium-node", ok, observed, expected, {"podCIDRs": list(cidrs)})


def pod_network(ip: str, pool: str) -> ProbeResult:
    """``ip``: the probe pod's address ("" when it got none)."""
    ok = bool(ip and pool) and ipaddress.ip_address(ip) in ipaddress.ip_network(pool, strict=False)
    return ProbeResult(
        "pod-network", ok, f"probe pod IP {ip or 'none'}", f"an IP in {pool or 'the Cilium pool'}", {"podIP": ip}
    )


def dns(answered: bool, message: str = "") -> ProbeResult:
    observed = f"nslookup {DNS_NAME}: {message or ('answered' if answered else 'failed')}"
    return ProbeResult("dns", answered, observed, "cluster DNS answers")


def connectivity(connected: bool, message: str = "") -> ProbeResult:
    observed = f"{API_TARGET}: {message or ('connected' if connected else 'failed')}"
    return ProbeResult("connectivity", connected, observed, f"{API_TARGET} reachable")


def cross_node(connections: Sequence[Connection]) -> ProbeResult:
    """No connections: the node has no Ready peer to judge by, which is not a failure (a
    cluster of one node)."""
    expected = "every peer reachable both ways and the Service"
    if not connections:
        return ProbeResult("cross-node", True, "no other Ready node to probe", expected)
    failed = [f"{c.label}: {c.message or 'failed'}" for c in connections if not c.ok]
    reached = f"{len(connections) - len(failed)}/{len(connections)} connections"
    observed = reached + (f"; {'; '.join(failed)}" if failed else f" ({', '.join(c.label for c in connections)})")
    return ProbeResult("cross-node", not failed, observed, expected)


def policy_enforcement(node: str, allowed: Connection, denied: Connection, allowed_again: Connection) -> ProbeResult:
    """After finalize: the allowed client connects, the denied one is dropped (a timeout: a
    refusal or another error is no proof of policy), and the allowed one still connects
    afterwards."""
    dropped = not denied.ok and "timeout" in denied.message.lower()
    if denied.ok:
        verdict = "connected: policy is not enforced"
    elif dropped:
        verdict = "was blocked (timed out)"
    else:
        verdict = f"failed without a timeout, not proof of policy: {denied.message or 'no message'}"
    observed = (
        f"on {node}: allowed client {'connected' if allowed.ok else 'was blocked: ' + (allowed.message or 'failed')}; "
        f"denied client {verdict}"
        + ("" if allowed_again.ok else f"; allowed client afterwards failed: {allowed_again.message or 'failed'}")
    )
    return ProbeResult(
        "policy-enforcement",
        allowed.ok and dropped and allowed_again.ok,
        observed,
        "the allowed client connects and the denied client is blocked",
    )


def policy_enforced(config: Mapping[str, str]) -> bool:
    """Does a Cilium with this cilium-config enforce NetworkPolicy? Every mode but ``never``
    does (``default`` where a policy selects the endpoint, ``always`` everywhere)."""
    return config.get("enable-policy", "never").strip().lower() != "never"


def _inside(cidr: str, pool: str) -> bool:
    return ipaddress.ip_network(cidr, strict=False).subnet_of(ipaddress.ip_network(pool, strict=False))  # type: ignore[arg-type]
