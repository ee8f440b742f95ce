"""Validate: prove the swapped node works before pods come back to it.

Runs each named check through the backend's probes and fails with the first failing
check's name, node, observed and expected values; the executor then rolls the node back.
"""

from __future__ import annotations

from migrate.errors import ValidationFailed
from migrate.plan import NodePlan
from migrate.steps import StepContext

CHECKS = ("cilium-agent-ready", "pod-network", "connectivity")


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
    return "passed: " + ", ".join(passed)
