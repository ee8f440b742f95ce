"""The step runner: every step, of a node or of the cluster as a whole, recorded as started
before it runs and with its outcome after; and the check between steps for a stop.

A step returns a message or raises; ``execute`` turns what it raised into an ``Outcome``
value (kopf's ``execution``): a stop (``Interrupted``, or the cluster failing us:
``ClusterError``) is *interrupted*, a step that failed for good (``StepFailed``,
``ValidationFailed``) *failed*. Anything else (a refusal, a bug) is raised as it is and the
step stays recorded as started. The runner records the outcome, then the caller decides
what happens next: a failed node step puts the node back, an interrupted one stops the run
resumably (the API is unreachable or refuses us: never a rollback).

A step run on its node (swap-cni, validate, restore-cni) needs the node Ready first, and
one that does not succeed on a node that is NotReady now ends in ``NodeLost`` (interrupted,
never a put-back on the dead machine); ``steps.liveness`` says why.

A step that succeeded is never run again; one that started and was never recorded as
ended is run again (steps look at the live state first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from migrate.errors import ClusterError, Interrupted, MigrateError, StepFailed, ValidationFailed
from migrate.executor.run import Run
from migrate.journal import ClusterStep, RunState, RunStatus, StepRecord, StepStatus
from migrate.plan import NodePlan, StepKind, Wave, step_id
from migrate.ports import Event
from migrate.steps import StepContext, StepFn, liveness

# What a failed step's error tells beyond its message, kept in the journal for status -o json.
FAILURE_DETAIL = ("check", "observed", "expected", "tries")


@dataclass(frozen=True)
class Outcome:
    """What a step came to. ``error``: what it raised, for the caller to raise on."""

    status: StepStatus
    message: str = ""
    error: MigrateError | None = None
    detail: Mapping[str, str] = field(default_factory=dict)


def execute(fn: Callable[[], str]) -> Outcome:
    """Run one step and return its outcome; see the module docstring for what becomes which."""
    try:
        return Outcome(StepStatus.SUCCEEDED, fn())
    except (Interrupted, ClusterError) as exc:
        return Outcome(StepStatus.INTERRUPTED, exc.message, exc, _detail(exc))
    except (StepFailed, ValidationFailed) as exc:
        return Outcome(StepStatus.FAILED, exc.message, exc, _detail(exc))


def _detail(exc: MigrateError) -> dict[str, str]:
    return {k: str(v) for k, v in exc.context.items() if k in FAILURE_DETAIL and v not in (None, "")}


def _with_status(state: RunState, status: RunStatus | None) -> RunState:
    return state if status is None else state.with_status(status)


class StepRunner:
    def __init__(self, run: Run, steps: Mapping[StepKind, StepFn], context: StepContext) -> None:
        self.run = run
        self._steps = steps
        self._ctx = context
        # Set when one node of a wave stops: the others stop too, at their next step.
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._stop_reported = False  # the operator's stop is reported once, not once per node thread

    def step(self, node: NodePlan, kind: StepKind, phase: str, wave: Wave) -> None:
        """One node step; raises what happens next when it did not succeed."""
        run = self.run
        sid = step_id(node.name, kind, phase)
        if run.state.nodes[node.name].succeeded(sid):
            return
        before = run.state.nodes[node.name].steps.get(sid)
        run.commit(lambda s: s.with_step(node.name, sid, kind, StepStatus.STARTED, run.now()))
        run.report(Event("step-started", run.plan.id, node=node.name, wave=wave.index, step=kind.value, phase=phase))
        began = run.clock.monotonic()
        outcome = execute(lambda: self._run(node, kind, before))
        if outcome.status is StepStatus.INTERRUPTED:
            message, error = outcome.message, outcome.error
            if isinstance(error, ClusterError):
                message = f"{kind.value} of {node.name} stopped: {error.message}"
            run.commit(
                lambda s: s.with_step(
                    node.name, sid, kind, StepStatus.INTERRUPTED, run.now(), message, outcome.detail
                ).with_status(RunStatus.INTERRUPTED)
            )
            run.report(Event("run-finished", run.plan.id, node=node.name, outcome="interrupted", message=message))
            if isinstance(error, ClusterError):
                raise Interrupted(message + "; resume when the cluster answers again", node=node.name) from error
            assert error is not None
            raise error
        run.commit(
            lambda s: s.with_step(node.name, sid, kind, outcome.status, run.now(), outcome.message, outcome.detail)
        )
        run.report(
            Event(
                "step-finished",
                run.plan.id,
                node=node.name,
                wave=wave.index,
                step=kind.value,
                phase=phase,
                outcome=outcome.status.value,
                message=outcome.message,
                duration=run.clock.monotonic() - began,
            )
        )
        if outcome.error is not None:
            raise outcome.error

    def _run(self, node: NodePlan, kind: StepKind, before: StepRecord | None) -> str:
        """The step itself; one run on its node (``liveness.ON_NODE``) needs the node Ready
        before, and, if it does not succeed on a node that is NotReady now, ends in
        ``NodeLost`` whatever it raised (the node's failure, not the step's)."""
        ctx = self._ctx
        if kind not in liveness.ON_NODE:
            return self._steps[kind](ctx, node)
        try:
            liveness.require_ready(ctx, node.name, kind)
            if before is not None and liveness.was_lost(before.detail):
                liveness.came_back(ctx, node.name, kind)
            return self._steps[kind](ctx, node)
        except (StepFailed, ValidationFailed, ClusterError) as exc:
            lost = liveness.judge_failure(ctx, node.name, kind)
            if lost is None:
                raise
            raise lost from exc

    def cluster_step(
        self, step: ClusterStep, fn: Callable[[], str], *, starting: str = "", stops_run: bool = False
    ) -> Outcome:
        """One step of the cluster as a whole, recorded in its section of the journal;
        ``starting``: reported once it is recorded as started. ``stops_run`` (apply's): a step
        that does not succeed marks the run interrupted in the same record. Without it
        (finalize, which leaves the run's status alone) an interrupted step stays recorded
        as started: nothing more is written to a cluster that has just failed us (the
        in-cluster journal is on it)."""
        run = self.run
        run.commit(lambda s: s.with_cluster_step(step, StepStatus.STARTED))
        if starting:
            run.report(Event(step.section, run.plan.id, step=step.value, message=starting))
        outcome = execute(fn)
        if outcome.status is StepStatus.SUCCEEDED or stops_run:
            end = RunStatus.INTERRUPTED if outcome.status is not StepStatus.SUCCEEDED else None
            run.commit(lambda s: _with_status(s.with_cluster_step(step, outcome.status), end))
        elif outcome.status is StepStatus.FAILED:
            run.commit(lambda s: s.with_cluster_step(step, outcome.status))
        if outcome.status is StepStatus.SUCCEEDED:
            run.report(Event(step.section, run.plan.id, step=step.value, outcome="succeeded", message=outcome.message))
        return outcome

    def check_stop(self) -> None:
        """Between steps: the operator's stop (signal, prompt, window end), or another node of
        the wave that stopped (its own step reported why)."""
        run = self.run
        if run.stop.is_set():
            with self._lock:
                first, self._stop_reported = not self._stop_reported, True
            if first:
                run.set_status(RunStatus.INTERRUPTED)
                run.report(Event("run-finished", run.plan.id, outcome="interrupted", message=run.stop.reason))
            raise Interrupted(f"stopped: {run.stop.reason}; continue with 'cni-migrate resume'")
        if self.halt.is_set():
            raise Interrupted("stopped: another node of the wave stopped; continue with 'cni-migrate resume'")
