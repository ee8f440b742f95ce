"""The step runner: one node step, recorded as started before it runs and with its outcome
after, and the check between steps for a stop.

A step that succeeded is never run again; one that started and was never recorded as
ended is run again (steps look at the live state first). A step's error is recorded and
re-raised as what happens next: ``StepFailed``/``ValidationFailed`` put the node back (the
caller does), ``Interrupted`` and a ``ClusterError`` stop the run resumably (the API is
unreachable or refuses us: never a rollback).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from migrate.errors import ClusterError, Interrupted, StepFailed, ValidationFailed
from migrate.executor.run import Run
from migrate.journal import RunStatus, StepStatus
from migrate.plan import NodePlan, StepKind, Wave, step_id
from migrate.ports import Event
from migrate.steps import StepContext, StepFn

# What a failed step's error tells beyond its message, kept in the journal for status -o json.
FAILURE_DETAIL = ("check", "observed", "expected", "tries")


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
        run = self.run
        sid = step_id(node.name, kind, phase)
        if run.state.nodes[node.name].succeeded(sid):
            return
        run.commit(lambda s: s.with_step(node.name, sid, kind, StepStatus.STARTED, run.now()))
        run.report(Event("step-started", run.plan.id, node=node.name, wave=wave.index, step=kind.value, phase=phase))
        started = run.clock.monotonic()
        try:
            message = self._steps[kind](self._ctx, node)
        except Interrupted as exc:
            self._interrupted(node, sid, kind, exc.message)
            raise
        except (StepFailed, ValidationFailed) as exc:
            detail = {k: str(v) for k, v in exc.context.items() if k in FAILURE_DETAIL and v not in (None, "")}
            self._finished(node, sid, kind, wave, phase, StepStatus.FAILED, exc.message, started, detail)
            raise
        except ClusterError as exc:
            # The API is unreachable or refuses us: stop, resumable; never roll back for it.
            message = f"{kind.value} of {node.name} stopped: {exc.message}"
            self._interrupted(node, sid, kind, message)
            raise Interrupted(message + "; resume when the cluster answers again", node=node.name) from exc
        self._finished(node, sid, kind, wave, phase, StepStatus.SUCCEEDED, message, started)

    def _finished(
        self,
        node: NodePlan,
        sid: str,
        kind: StepKind,
        wave: Wave,
        phase: str,
        status: StepStatus,
        message: str,
        started: float,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        """Record a step's end, then report it."""
        run = self.run
        run.commit(lambda s: s.with_step(node.name, sid, kind, status, run.now(), message, detail))
        run.report(
            Event(
                "step-finished",
                run.plan.id,
                node=node.name,
                wave=wave.index,
                step=kind.value,
                phase=phase,
                outcome=status.value,
                message=message,
                duration=run.clock.monotonic() - started,
            )
        )

    def _interrupted(self, node: NodePlan, sid: str, kind: StepKind, message: str) -> None:
        run = self.run
        run.commit(
            lambda s: s.with_step(node.name, sid, kind, StepStatus.INTERRUPTED, run.now(), message).with_status(
                RunStatus.INTERRUPTED
            )
        )
        run.report(Event("run-finished", run.plan.id, node=node.name, outcome="interrupted", message=message))

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
