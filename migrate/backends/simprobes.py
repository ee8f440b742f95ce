"""What the simulated cluster's validation probes and traffic probers observe; the shared
``migrate.verdicts`` judges it, as it judges the real backend's observations.

A node on Cilium passes every check and one still on Calico does not; a failure injected
with ``--fail-validation-on NODE[:CHECK[:TIMES]]`` (the world's ``failValidation``) breaks
what the check looks at, as a broken node would look to the real probes: its pod keeps a
Calico address, its CiliumNode Calico's CIDR, its connections time out. The observations
follow the world's pools (the plan's, once Cilium is installed with it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from migrate import traffic, verdicts
from migrate.backends import simworld as w
from migrate.backends.simstore import WorldFile
from migrate.errors import BadInput
from migrate.ports import ProbeResult


class SimProbes:
    """The ``Cluster`` port's probes on a simulated cluster (``SimulatedCluster`` delegates)."""

    def __init__(self, file: WorldFile) -> None:
        self.file = file

    def policy_probe(self, timeout: float) -> ProbeResult:
        """The simulated dataplane enforces policy when cilium-config says so, unless the world
        injects a policy failure (failValidation "*": ["policy"])."""
        with self.file.transaction("policy-probe", write=True) as world:
            enforced = verdicts.policy_enforced(w.cilium_config(world)) and "policy" not in world["failValidation"].get(
                "*", []
            )
            w.log_action(world, "policy-probe", "cni-migrate", False)
        node = next(n for n in sorted(world["nodes"]) if world["nodes"][n]["ready"])
        allowed = verdicts.Connection("allowed", True)
        denied = verdicts.Connection("denied", not enforced, "" if not enforced else "i/o timeout")
        return verdicts.policy_enforcement(node, allowed, denied, allowed)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        results = []
        for check in checks:
            results.append(self.probe(node, check, timeout))
            if not results[-1].ok:
                break
        return results

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        if check not in verdicts.CHECKS:
            raise BadInput(f"unknown validation check {check!r}")
        with self.file.transaction("probe", write=True) as world:
            n = w.running(world, node, f"probe {check}", timeout)
            broken = False
            injected = world["failValidation"].get(node, [])
            for i, entry in enumerate(injected):
                name, _, times = entry.partition(":")
                if name not in (check, "*"):
                    continue
                if not times:
                    broken = True
                elif int(times) > 0:
                    injected[i] = f"{name}:{int(times) - 1}"
                    broken = True
                break
            result = _observe(world, node, n, check, broken)
        return replace(result, evidence={**result.evidence, "injected": True}) if broken else result

    def traffic_reports(self, after: int, timeout: float) -> tuple[list[Any], list[str]]:
        """What the simulated probers saw: nothing failed, except on a swapped node whose
        validation is made to fail with check ``traffic-watch``: its prober's requests all
        failed in the second ``after`` (so the failure lies inside the window that asked)."""
        with self.file.transaction("traffic-reports") as world:
            if not world.get("trafficWatch"):
                return [], []
            reports = []
            for name, n in sorted(world["nodes"].items()):
                if not n["ready"]:
                    continue
                flagged = world["failValidation"].get(name, [])
                broken = w.node_cni(world, name) == "cilium" and any(
                    e.partition(":")[0] in (traffic.CHECK, "*") for e in flagged
                )
                buckets = ((after, 12, 0),) if broken else ()
                reports.append(traffic.Report(name, after, 600, 12 if broken else 0, buckets, f"prober-{name}"))
            return reports, []


def _observe(world: w.World, node: str, n: dict[str, Any], check: str, broken: bool) -> ProbeResult:
    """What the check's probe sees on the simulated node: a node on Cilium is healthy, one
    still on Calico is not; ``broken`` (an injected failure) breaks what the check looks at."""
    on_cilium = w.node_cni(world, node) == "cilium" and not broken
    pool = world["cilium"]["poolCIDR"]
    if check == "cilium-agent-ready":
        agents = [
            p
            for p in world["pods"].values()
            if p["node"] == node and p["owner"] == {"kind": "DaemonSet", "name": w.AGENT_DS[1]}
        ]
        agent = agents[0] if agents else None
        return verdicts.agent_ready(agent["name"] if agent else None, bool(agent and agent["ready"]) and not broken)
    if check == "cilium-node":
        # Cilium's operator hands every node a CIDR from its pool; a broken one kept Calico's.
        cidr = w.node_pod_cidr(world, node, "calico" if broken else "cilium")
        return verdicts.cilium_node(node, [str(cidr)], pool)
    if check == "pod-network":
        return verdicts.pod_network(w.probe_ip(world, node, "calico" if broken else None), pool)
    if check == "dns":
        return verdicts.dns(on_cilium, "" if on_cilium else "connection timed out; no servers could be reached")
    if check == "connectivity":
        api = ipaddress.ip_network(world["serviceCIDRs"][0]).network_address + 1
        return verdicts.connectivity(on_cilium, "" if on_cilium else f"dial tcp {api}:443: i/o timeout")
    # cross-node, as on a real cluster: Ready nodes in service, not the wave's other
    # (cordoned, maybe mid-swap) nodes; a Calico and a Cilium peer, both ways, and a Service.
    others = sorted(
        name for name, other in world["nodes"].items() if name != node and other["ready"] and not other["unschedulable"]
    )
    connections = []
    for cni in ("calico", "cilium"):
        peer = next((o for o in others if w.node_cni(world, o) == cni), None)
        if peer is not None:
            failure = "" if on_cilium else "dial tcp: i/o timeout"
            connections.append(verdicts.Connection(f"{node}->{peer} ({cni})", on_cilium, failure))
            connections.append(verdicts.Connection(f"{peer} ({cni})->{node}", on_cilium, failure))
    if connections:
        service = ipaddress.ip_network(world["serviceCIDRs"][0]).network_address + 100
        connections.append(
            verdicts.Connection(f"{node}->Service {service}", on_cilium, "" if on_cilium else "i/o timeout")
        )
    return verdicts.cross_node(connections)
