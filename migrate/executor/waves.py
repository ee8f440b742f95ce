"""The forward run: the waves one after another, with the operator's say between them.

    start (running; the node config) -> finish put-backs a killed run left -> per wave:
      soak after the last one -> ask the gates (skip nodes, roll back a wave, stop) ->
      cordon the wave, run its node pipelines -> pause after the canary if asked
    -> completed (or stopped with the skipped nodes named)

A gate that stops the run ends it at a wave boundary: the wave's untouched nodes released,
the journal interrupted, resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from migrate.errors import BadInput, Interrupted, Paused
from migrate.executor.config import CONTINUE, Answer, GateAnswer
from migrate.executor.pipelines import MANUAL, Pipelines
from migrate.executor.prepare import Prepare
from migrate.executor.run import Run
from migrate.executor.runner import StepRunner
from migrate.journal import NodeState, RunState, RunStatus
from migrate.plan import NodePlan, Plan, StepKind, Wave, step_id
from migrate.ports import Event

# Nothing left for the forward run to do on a node in these states.
DONE = (NodeState.MIGRATED, NodeState.GONE)
# The nodes of a wave the operator's "roll back that wave" puts back.
ROLLBACK_FROM = (NodeState.MIGRATED, NodeState.IN_PROGRESS)
SKIPPED = "skipped by the operator"


def last_migrated_wave(plan: Plan, state: RunState) -> tuple[Wave, tuple[str, ...]] | None:
    """What "roll back the last wave" would put back: the latest wave (in the plan's order,
    whichever wave the run is at) with nodes migrated or under way, and those nodes; None
    when no wave has any. Rollback goes last migrated first: offering an earlier wave while
    a later one has migrated nodes would undo the run out of order."""
    for wave in reversed(plan.waves):
        names = tuple(n.name for n in wave.nodes if state.nodes[n.name].state in ROLLBACK_FROM)
        if names:
            return wave, names
    return None


def skippable(state: RunState, node: str) -> bool:
    """Not started, or back where it started: a node under way cannot be skipped (it would
    be left half-done), and a migrated one has nothing left to skip."""
    return state.nodes[node].state in (NodeState.PENDING, NodeState.ROLLED_BACK, NodeState.FAILED)


class Waves:
    def __init__(self, run: Run, runner: StepRunner) -> None:
        self.run = run
        self.runner = runner
        self.nodes = Pipelines(run, runner)
        self.skipped: list[str] = []  # by the operator, in this run

    def forward(self) -> RunState:
        self._start()
        self._finish_put_backs()
        ran = 0  # waves run by this process
        for wave in self.run.plan.waves:
            if not self._pending(wave):
                continue
            self.runner.check_stop()
            if ran and self.run.config.soak_seconds > 0:
                self._soak(wave)
            todo = self._ask_gates(wave)
            if not todo:
                continue
            self.runner.check_stop()
            self._run_wave(wave, todo)
            ran += 1
            self._pause_after_canary(wave, todo)
        if self.skipped:
            self._stop_at_boundary(
                None,
                f"{len(self.skipped)} node(s) skipped by the operator ({', '.join(self.skipped)}); every other node "
                "is migrated; 'cni-migrate resume' migrates the skipped ones",
            )
        return self._complete()

    def _start(self) -> None:
        run = self.run
        run.set_status(RunStatus.RUNNING)
        run.report(Event("run-started", run.plan.id, phase="apply"))
        if any(r.state not in DONE for r in run.state.nodes.values()):
            Prepare(run).node_config()

    def _finish_put_backs(self) -> None:
        """Put-backs a killed run left under way: finish them, and end the run as it would
        have. In a parallel wave a peer may have been under way (drained, swapped): it
        finishes, validated, as it would have; only peers whose drain never started are
        released."""
        run = self.run
        rolling = [n for n in run.plan.nodes if run.state.nodes[n.name].state is NodeState.ROLLING_BACK]
        if not rolling:
            return
        for node in rolling:
            self.nodes.put_back(node, run.state.nodes[node.name].reason)
        for wave in run.plan.waves:
            if not any(n in wave.nodes for n in rolling):
                continue
            under_way = [
                n
                for n in wave.nodes
                if run.state.nodes[n.name].state is NodeState.IN_PROGRESS
                and step_id(n.name, StepKind.DRAIN) in run.state.nodes[n.name].steps
            ]
            if under_way:
                self.nodes.run_all(wave, under_way)
            self.nodes.release(wave)
        raise self.nodes.failure(rolling[0].name)

    def _pending(self, wave: Wave) -> list[NodePlan]:
        return [n for n in wave.nodes if self.run.state.nodes[n.name].state not in DONE]

    def _ask_gates(self, wave: Wave) -> list[NodePlan]:
        """The wave gate, then the node gate for each node not under way; the nodes left to
        run. A node skipped is recorded pending (once) and reported."""
        run, config = self.run, self.run.config
        answer = self._ask(wave, config.wave_gate, wave, run.state)
        if answer.rollback_wave is not None:
            self._rollback_wave(answer.rollback_wave)
        self.skipped += [n for n in answer.skip if skippable(run.state, n)]
        todo = [n for n in self._pending(wave) if n.name not in self.skipped]
        if config.node_gate is not None:
            for node in list(todo):
                if run.state.nodes[node.name].state is NodeState.IN_PROGRESS:
                    continue  # already under way: asking now would leave it half-done
                if node.name in self._ask(wave, config.node_gate, wave, node, run.state).skip:
                    self.skipped.append(node.name)
                    todo.remove(node)
        for name in self.skipped:
            if run.state.nodes[name].message != SKIPPED:
                run.node_state(name, NodeState.PENDING, message=SKIPPED)
                run.report(Event("node-state", run.plan.id, node=name, wave=wave.index, outcome="skipped"))
        return todo

    def _ask(self, wave: Wave, gate: Callable[..., Answer] | None, *args: Any) -> GateAnswer:
        """Put a question to a gate; a gate that stops the run ends it at this boundary."""
        if gate is None:
            return CONTINUE
        try:
            return gate(*args) or CONTINUE
        except Interrupted as exc:
            # Paused or aborted by the operator, the window's end, Ctrl-C at a question: a
            # clean boundary, said as the gate said it (a pause is no error).
            self.nodes.release(wave)
            self._stop_at_boundary(wave, exc.message, type(exc))

    def _run_wave(self, wave: Wave, todo: list[NodePlan]) -> None:
        self.run.report(
            Event("wave-started", self.run.plan.id, wave=wave.index, message=", ".join(n.name for n in todo))
        )
        self.nodes.cordon(wave, todo)
        self.nodes.run_all(wave, todo)

    def _pause_after_canary(self, wave: Wave, todo: list[NodePlan]) -> None:
        """``--pause-after-canary``: stop after the canary wave when any node is left to do."""
        run = self.run
        if not (wave.canary and run.config.pause_after_canary):
            return
        later = any(
            run.state.nodes[n.name].state not in DONE and n.name not in self.skipped
            for w in run.plan.waves[wave.index :]
            for n in w.nodes
        )
        if later:
            self._stop_at_boundary(
                wave,
                f"paused after the canary wave {wave.index} ({', '.join(n.name for n in todo)}): check it, "
                "then continue with 'cni-migrate resume'",
            )

    def _soak(self, wave: Wave) -> None:
        """Let the last wave run on Cilium for a while before touching the next one."""
        run = self.run
        seconds = run.config.soak_seconds
        message = f"soaking {seconds:g}s before wave {wave.index}"
        run.report(Event("soak", run.plan.id, wave=wave.index, message=message, duration=seconds))
        run.stop.wait(run.config.soak_seconds)
        self.runner.check_stop()

    def _rollback_wave(self, index: int) -> NoReturn:
        """The operator's 'roll back that wave': put its migrated nodes back, then stop."""
        run = self.run
        wave = next((w for w in run.plan.waves if w.index == index), None)
        if wave is None:
            raise BadInput(f"plan {run.plan.id} has no wave {index}")
        done = [n for n in wave.nodes if run.state.nodes[n.name].state in ROLLBACK_FROM]
        for node in reversed(done):
            self.nodes.put_back(node, MANUAL)
        names = ", ".join(n.name for n in done) or "no migrated node"
        self._stop_at_boundary(
            wave,
            f"rolled back wave {index} ({names}) on the operator's request; "
            "'cni-migrate resume' migrates it again, 'cni-migrate rollback' undoes the rest",
        )

    def _stop_at_boundary(self, wave: Wave | None, message: str, error: type[Interrupted] = Paused) -> NoReturn:
        """End the run at a wave boundary, resumable; ``error``: ``Paused`` where the
        operator asked for the stop (the default: every caller but a gate's stop)."""
        run = self.run
        run.set_status(RunStatus.INTERRUPTED)
        run.report(
            Event("run-finished", run.plan.id, wave=wave.index if wave else 0, outcome="interrupted", message=message)
        )
        raise error(message)

    def _complete(self) -> RunState:
        run = self.run
        state = run.set_status(RunStatus.COMPLETED)
        run.report(Event("run-finished", run.plan.id, phase="apply", outcome="completed"))
        run.hook("post-run", outcome=RunStatus.COMPLETED.value)  # reported by the hook runner only
        return state
