"""Validate: prove the swapped node works before pods come back to it.

Runs each named check through the backend's probes; with ``apply --traffic-watch``, what
the probers saw since the node's swap started (``migrate.traffic``); then the operator's
``post-swap`` hooks. Fails with the first failing check's name, node, observed and expected
values (or the failing hook's summary); the executor then rolls the node back.
"""

from __future__ import annotations

from datetime import datetime

from migrate.errors import ValidationFailed
from migrate.plan import NodePlan, StepKind, step_id
from migrate.ports import Event, HookContext
from migrate.steps import StepContext
from migrate.verdicts import CHECKS  # each one means the same on every backend

# A node that has just switched CNI can fail a check once or twice while its agent, its
# CiliumNode and its DNS path settle: each check gets this many attempts, this far apart,
# before it counts as failed (``StepContext.probe_retry_gap`` apart, 5 s by default). Bounded,
# so a broken node still rolls back within a minute.
ATTEMPTS = 3


def run(ctx: StepContext, node: NodePlan) -> str:
    passed = []
    pending = list(CHECKS)
    while pending:
        # The backend runs the checks in order up to the first failure, several in one probe
        # pod where it can; a failing check is then asked again on its own, and what follows
        # it is asked afresh once it passes.
        ctx.check_stop(node.name)
        results = ctx.cluster.probe_many(node.name, pending, ctx.probe_timeout)
        if not results:
            raise ValidationFailed(
                f"validation of {node.name} failed: {pending[0]}: the backend answered no check",
                node=node.name,
                check=pending[0],
            )
        for check, result in zip(list(pending), results, strict=False):
            attempt = 1
            while not result.ok and attempt < ATTEMPTS:
                ctx.emit(
                    Event(
                        "wait",
                        ctx.plan_id,
                        node=node.name,
                        step="validate",
                        message=f"{check}: observed {result.observed}; attempt {attempt + 1}/{ATTEMPTS} "
                        f"in {ctx.probe_retry_gap:g}s",
                    )
                )
                ctx.stop.wait(ctx.probe_retry_gap)
                attempt += 1
                ctx.check_stop(node.name)
                result = ctx.cluster.probe(node.name, check, ctx.probe_timeout)
            if not result.ok:
                raise ValidationFailed(
                    f"validation of {node.name} failed: {check}: observed {result.observed}, "
                    f"expected {result.expected}",
                    node=node.name,
                    check=check,
                    observed=result.observed,
                    expected=result.expected,
                    tries=str(attempt),
                )
            retried = f", attempt {attempt}" if attempt > 1 else ""
            passed.append(f"{check} ({result.observed}{retried})" if result.observed else check)
            pending.remove(check)
            if attempt > 1:
                break  # the batch's later answers predate this check passing: ask them again
    if ctx.traffic is not None:
        # Not retried: what the probers saw is history, and asking again cannot change it.
        ctx.check_stop(node.name)
        started = ctx.started(node.name, StepKind.SWAP_CNI)
        since = datetime.fromisoformat(started) if started else ctx.clock.now()
        result = ctx.traffic.check(node.name, since)
        if not result.ok:
            raise ValidationFailed(
                f"validation of {node.name} failed: {result.check}: observed {result.observed}, "
                f"expected {result.expected}",
                node=node.name,
                check=result.check,
                observed=result.observed,
                expected=result.expected,
            )
        passed.append(f"{result.check} ({result.observed})")
    failures = ctx.hooks(
        HookContext(
            "post-swap",
            ctx.plan_id,
            node=node.name,
            wave=ctx.wave_of(node.name),
            step=step_id(node.name, StepKind.SWAP_CNI),
            outcome="swapped",
        )
    )
    if failures:
        raise ValidationFailed(
            f"validation of {node.name} failed: post-swap hook: {failures[0]}",
            node=node.name,
            check="post-swap",
            observed=failures[0],
        )
    return "passed: " + ", ".join(passed)
