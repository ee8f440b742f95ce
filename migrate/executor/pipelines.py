"""A wave's nodes: cordoned together, then each node's pipeline (drain, swap-cni, validate,
uncordon) the plan's ``node_parallelism`` at a time, and a failed node put back.

The pipelines of a parallel wave run in a ``concurrent.futures.ThreadPoolExecutor``. After
a node fails (it is put back) or stops, no further node starts. Those already under way go
on after a failure, so it leaves no peer half-done; a stop (signal, window end, lost API)
halts them all at their next step (``StepRunner.halt``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from migrate.errors import Interrupted, MigrateError, StepFailed, ValidationFailed
from migrate.executor.run import Run
from migrate.executor.runner import StepRunner
from migrate.journal import NodeState, RunStatus
from migrate.plan import FORWARD_STEPS, ROLLBACK_STEPS, NodePlan, StepKind, Wave, step_id
from migrate.ports import Event

MANUAL = "manual"


class HookStop(Interrupted):
    """A post-node hook failed: the run stops, and the wave's nodes not yet started are
    released (an operator's check said no, unlike a signal, which keeps the wave cordoned)."""


class Pipelines:
    def __init__(self, run: Run, runner: StepRunner) -> None:
        self.run = run
        self.runner = runner

    def cordon(self, wave: Wave, todo: list[NodePlan]) -> None:
        """Cordon the whole wave first, so pods evicted from one node never land on another
        node of the same wave; each node's pre-node hook first."""
        run = self.run
        for node in todo:
            if run.state.nodes[node.name].state is not NodeState.IN_PROGRESS:
                failures = run.hook(
                    "pre-node", node=node.name, wave=wave.index, step=step_id(node.name, StepKind.CORDON)
                )
                if failures:
                    self.release(wave)
                    run.set_status(RunStatus.INTERRUPTED)
                    raise Interrupted(
                        f"pre-node hook for {node.name} failed: {failures[0]}; "
                        "fix it and continue with 'cni-migrate resume'",
                        node=node.name,
                    )
                run.node_state(node.name, NodeState.IN_PROGRESS)
            self.runner.step(node, StepKind.CORDON, "apply", wave)

    def run_all(self, wave: Wave, todo: list[NodePlan]) -> None:
        """Drain, swap, validate and uncordon the wave's nodes, the plan's ``node_parallelism``
        at a time (0: all of them at once, as max-unavailable allows; 1: one after another)."""
        failed: list[MigrateError] = []
        stopped: list[Interrupted] = []
        crashed: list[BaseException] = []
        guard = threading.Lock()
        halt = self.runner.halt
        halt.clear()

        def one(node: NodePlan) -> None:
            with guard:
                if failed or stopped or crashed:
                    return  # its turn came after a failure or a stop: it never starts
            try:
                self._pipeline(node, wave)
            except (StepFailed, ValidationFailed) as exc:
                with guard:
                    failed.append(exc)
            except Interrupted as exc:
                with guard:
                    stopped.append(exc)  # before the halt: the first stop is the one reported
                halt.set()
            except BaseException as exc:  # noqa: BLE001 - a bug (or SystemExit) in one thread: stop the others, re-raised below
                with guard:
                    crashed.append(exc)
                halt.set()

        width = min(self.run.plan.options.node_parallelism or len(todo), len(todo))
        if width <= 1:
            for node in todo:
                one(node)
        else:
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix=f"wave-{wave.index}") as pool:
                for node in todo:
                    pool.submit(one, node)  # ``one`` keeps its own outcome: nothing to collect
        if crashed:
            raise crashed[0]
        if failed or any(isinstance(exc, HookStop) for exc in stopped):
            # Peers whose turn never came go back to service.
            self.release(wave)
        if failed:
            first = failed[0]
            self.run.set_status(RunStatus.FAILED)
            if len(failed) + len(stopped) > 1:
                others = [str(e.context.get("node", "?")) for e in failed[1:]]
                halted = [str(e.context["node"]) for e in stopped if e.context.get("node")]
                more = []
                if others:
                    more.append(f"also failed and put back: {', '.join(others)}")
                if halted:
                    more.append(f"stopped mid-way: {', '.join(halted)}")
                first.message = f"{first.message} ({'; '.join(more)})"
            raise first
        if stopped:
            self.run.set_status(RunStatus.INTERRUPTED)
            raise stopped[0]

    def _pipeline(self, node: NodePlan, wave: Wave) -> None:
        """One node, from drain to migrated; a failed step puts it back and re-raises."""
        run = self.run
        for kind in FORWARD_STEPS[1:]:
            self.runner.check_stop()
            try:
                self.runner.step(node, kind, "apply", wave)
            except (StepFailed, ValidationFailed) as exc:
                self.put_back(node, kind.value, message=exc.message)
                raise
        run.node_state(node.name, NodeState.MIGRATED, message="migrated")
        run.report(Event("node-state", run.plan.id, node=node.name, wave=wave.index, outcome="migrated"))
        failures = run.hook(
            "post-node", node=node.name, wave=wave.index, step=step_id(node.name, StepKind.UNCORDON), outcome="migrated"
        )
        if failures:
            raise HookStop(
                f"post-node hook for {node.name} failed: {failures[0]}; the node stays migrated; "
                "continue with 'cni-migrate resume' or roll it back",
                node=node.name,
            )

    def release(self, wave: Wave) -> None:
        """Uncordon the wave's in-progress nodes whose drain never started; mark them pending."""
        for node in wave.nodes:
            record = self.run.state.nodes[node.name]
            if record.state is NodeState.IN_PROGRESS and step_id(node.name, StepKind.DRAIN) not in record.steps:
                self.runner.step(node, StepKind.UNCORDON, "release", wave)
                self.run.node_state(node.name, NodeState.PENDING, message="not started: the run stopped in its wave")

    # -- backward ---------------------------------------------------------------------------
    def put_back(self, node: NodePlan, reason: str, message: str = "") -> None:
        run = self.run
        if run.state.nodes[node.name].state is not NodeState.ROLLING_BACK:
            run.node_state(node.name, NodeState.ROLLING_BACK, reason=reason, message=message)
        record = run.state.nodes[node.name]
        wave = run.wave_of(node)
        for kind in undo_steps(node, record.reason, record.steps):
            self.runner.step(node, kind, "rollback", wave)
        final = NodeState.ROLLED_BACK if record.reason == MANUAL else NodeState.FAILED
        run.node_state(node.name, final, message=record.message)
        if final is NodeState.FAILED:
            run.set_status(RunStatus.FAILED)
        run.report(
            Event(
                "node-state", run.plan.id, node=node.name, wave=wave.index, outcome=final.value, message=record.message
            )
        )
        if final is NodeState.FAILED:
            run.hook(
                "on-failure",
                node=node.name,
                wave=wave.index,
                step=step_id(node.name, StepKind(record.reason)),
                phase="rollback",
                outcome=final.value,
                message=record.message,
            )

    def failure(self, node: str) -> MigrateError:
        """The error a node put back by an earlier run ended that run with."""
        record = self.run.state.nodes[node]
        if record.reason == StepKind.VALIDATE.value:
            return ValidationFailed(record.message or f"validation of {node} failed", node=node)
        return StepFailed(record.message or f"{record.reason} of {node} failed", node=node)


def undo_steps(node: NodePlan, reason: str, records: Mapping[str, object]) -> tuple[StepKind, ...]:
    """Manual rollback: the full rollback sequence. Automatic: the inverse of every forward
    step the node started, last first (uncordon is never undone)."""
    if reason == MANUAL:
        return ROLLBACK_STEPS
    undo = []
    for kind in reversed(FORWARD_STEPS):
        inverse = kind.inverse
        if kind is not StepKind.UNCORDON and inverse is not None and step_id(node.name, kind) in records:
            undo.append(inverse)
    return tuple(undo)
