"""Validate: prove the swapped node works before pods come back to it.

Runs each named check through the backend's probes, then the operator's ``post-swap``
hooks, and fails with the first failing check's name, node, observed and expected values
(or the failing hook's summary); the executor then rolls the node back.
"""

from __future__ import annotations

from migrate.errors import ValidationFailed
from migrate.plan import NodePlan
from migrate.steps import StepContext

# Each check is a probe the backend runs: the node's new Cilium agent is Ready; its
# CiliumNode has pod CIDRs from the planned pool; a probe pod pinned to the node gets an
# address from that pool; it resolves cluster DNS; it reaches the API server's Service.
CHECKS = ("cilium-agent-ready", "cilium-node", "pod-network", "dns", "connectivity")


def run(ctx: StepContext, node: NodePlan) -> str:
    passed = []
    for check in CHECKS:
        ctx.check_stop(node.name)
        result = ctx.cluster.probe(node.name, check, ctx.probe_timeout)
        if not result.ok:
            raise ValidationFailed(
                f"validation of {node.name} failed: {check}: observed {result.observed}, expected {result.expected}",
                node=node.name,
                check=check,
            )
        passed.append(f"{check} ({result.observed})" if result.observed else check)
    failures = ctx.hooks("post-swap", {"plan_id": ctx.plan_id, "node": node.name, "step": "validate"})
    if failures:
        raise ValidationFailed(
            f"validation of {node.name} failed: post-swap hook: {failures[0]}", node=node.name, check="post-swap"
        )
    return "passed: " + ", ".join(passed)
