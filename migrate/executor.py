"""The executor: run a reviewed plan against a cluster, one checkpointed step at a time.

    load plan -> verify cluster identity and node set -> take the executor lock
      -> open the journal (new, or the interrupted one) -> for each wave: cordon every
      node of the wave, then per node drain, swap-cni, validate, uncordon
      -> on a failed step put the node back (the inverse of each step it completed)

Every step is recorded as started before it runs and as succeeded/failed/interrupted
after, through the ``CheckpointStore``; a step recorded as succeeded is never run again.
Steps are idempotent, so one that started but never finished is simply run again.
The executor reports through ``EventSink`` and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from migrate.cilium import INSTALL_CILIUM, live_config_problems, migration_values, node_config
from migrate.errors import (
    BadInput,
    ClusterError,
    Interrupted,
    MigrateError,
    PlanClusterMismatch,
    PlanStale,
    PreflightBlocked,
    RunConflict,
    StepFailed,
    ValidationFailed,
)
from migrate.journal import NodeState, RunState, RunStatus, StepStatus
from migrate.plan import FORWARD_STEPS, ROLLBACK_STEPS, NodePlan, Plan, StepKind, Wave, step_id
from migrate.ports import (
    CheckpointStore,
    Clock,
    Cluster,
    Event,
    EventSink,
    ExecutorLock,
    HookCaller,
    StopFlag,
    no_hooks,
)
from migrate.steps import StepContext, StepFn, registry

MANUAL = "manual"
SKIPPED = "skipped by the operator"


@dataclass(frozen=True)
class GateAnswer:
    """What a gate decided, short of stopping (which it does by raising ``Interrupted``):
    nodes to leave out of this run, or the number of an earlier wave to roll back."""

    skip: tuple[str, ...] = ()
    rollback_wave: int | None = None


CONTINUE = GateAnswer()

Answer = GateAnswer | None
# Called before each wave with (wave, state); raises Interrupted to stop at this boundary.
WaveGate = Callable[[Wave, RunState], Answer]
# Called before each node of a wave is cordoned; same contract.
NodeGate = Callable[[Wave, NodePlan, RunState], Answer]


@dataclass
class Executor:
    plan: Plan
    cluster: Cluster
    store: CheckpointStore
    lock: ExecutorLock
    clock: Clock
    emit: EventSink
    stop: StopFlag
    wave_gate: WaveGate | None = None
    node_gate: NodeGate | None = None
    pause_after_canary: bool = False
    soak_seconds: float = 0.0
    agent_timeout: float = 300.0
    probe_timeout: float = 60.0
    probe_retry_gap: float = 5.0
    hooks: HookCaller = no_hooks
    # apply --install-cilium: installs Cilium with the plan's migration values (Helm on a real
    # cluster); None: Cilium must already run in migration mode.
    cilium_installer: Callable[[dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        self._steps: dict[StepKind, StepFn] = registry()
        self._ctx = StepContext(
            cluster=self.cluster,
            options=self.plan.options,
            clock=self.clock,
            stop=self.stop,
            emit=self.emit,
            plan_id=self.plan.id,
            agent_timeout=self.agent_timeout,
            probe_timeout=self.probe_timeout,
            probe_retry_gap=self.probe_retry_gap,
            hooks=self.hooks,
        )

    # -- entry points ---------------------------------------------------------------------
    def verify(self, *, to_apply: bool = False) -> None:
        """Refuse (to apply) a plan with blocking findings; then an identity without the
        permissions the run needs, a plan for another cluster, or one the cluster outgrew."""
        if to_apply and self.plan.blocking:
            checks = ", ".join(sorted({f.check for f in self.plan.blocking}))
            raise PreflightBlocked(f"plan {self.plan.id} has blocking findings ({checks}); fix them and plan again")
        self._check_permissions()
        verify_plan(self.plan, self.cluster)

    def apply(self, *, resume: bool = False) -> RunState:
        self.verify(to_apply=True)
        # Refuse what is bound to be refused before taking the lock: on a real cluster the
        # lock is a Lease, and bad input must not write anything. A run recorded as running
        # may be another executor's at work: for that one the lock has the say.
        existing = self.store.load()
        running = existing is not None and existing.status is RunStatus.RUNNING
        admitted = None if running else self._admit(existing, resume)
        install = False
        cut_short = (
            existing is not None
            and existing.plan_id == self.plan.id
            and existing.prepare.get(INSTALL_CILIUM) == "started"
        )
        if cut_short and self.cilium_installer:
            install = True  # this run's own install was cut short: finish it, whatever it left
        elif admitted is None or admitted.status is not RunStatus.COMPLETED:
            install = self._check_cilium(may_install=self.cilium_installer is not None)
        with self.lock.hold():
            state = self._open(resume)
            if state.status is RunStatus.COMPLETED:
                return state
            if resume:
                # Only now, holding the lock: probe and node-task pods of the killed run.
                self.cluster.cleanup_helper_pods()
            if install or (self.cilium_installer and state.prepare.get(INSTALL_CILIUM) == "started"):
                state = self._install_cilium(state)
            return self._forward(state)

    def _check_permissions(self) -> None:
        """Refuse, before any write, an identity that could not finish the run."""
        missing = self.cluster.missing_permissions()
        if missing:
            raise BadInput(
                f"this identity lacks {len(missing)} permission(s) the run needs ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}); bind the ClusterRole in deploy/rbac.yaml, nothing was changed"
            )

    def _check_cilium(self, *, may_install: bool = False) -> bool:
        """The running Cilium must be in the migration mode the plan prescribes: checked on
        the live configuration, not on the values file the operator may or may not have used.
        Returns True when none runs and ``may_install``: the run installs it. A Cilium that
        runs otherwise is never upgraded behind the operator's back."""
        config = self.cluster.cilium_config()
        if may_install and not config:
            return True
        problems = live_config_problems(config, self.plan.options)
        if problems:
            hint = (
                "--install-cilium installs Cilium only where none runs; upgrade this one"
                if config and may_install
                else "install or upgrade it"
            )
            raise PreflightBlocked(
                f"the running Cilium is not in the plan's migration mode: {'; '.join(problems)}; "
                f"{hint} with the values written next to the plan, then apply again"
            )
        return False

    def _install_cilium(self, state: RunState) -> RunState:
        """Install Cilium in migration mode before the first node, recorded in the journal as
        started and succeeded (an interrupted install is run again on resume: it is an
        idempotent ``helm upgrade --install``); then check the live configuration it made."""
        assert self.cilium_installer is not None
        state = self._save(state.with_prepare(INSTALL_CILIUM, "started"))
        self.emit(Event("prepare", self.plan.id, step=INSTALL_CILIUM, message="installing Cilium in migration mode"))
        try:
            message = self.cilium_installer(migration_values(self.plan.options))
        except ClusterError as exc:
            self._save(state.with_status(RunStatus.INTERRUPTED))
            raise Interrupted(
                f"installing Cilium stopped: {exc.message}; no node was touched; "
                "fix it and run 'cni-migrate resume PLANFILE' (with --helm PATH if helm is not on PATH)"
            ) from exc
        try:
            self._check_cilium()
        except PreflightBlocked:
            self._save(state.with_status(RunStatus.INTERRUPTED))
            raise
        state = self._save(state.with_prepare(INSTALL_CILIUM, "succeeded"))
        self.emit(Event("prepare", self.plan.id, step=INSTALL_CILIUM, outcome="succeeded", message=message))
        return state

    def rollback(self, nodes: Sequence[str] = ()) -> RunState:
        self.verify()
        unknown = sorted(set(nodes) - {n.name for n in self.plan.nodes})
        if unknown:
            raise BadInput(f"--node names node(s) not in plan {self.plan.id}: {', '.join(unknown)}")
        self._rollback_journal(self.store.load())  # refuse before the lock, as apply does
        with self.lock.hold():
            state = self._rollback_journal(self.store.load())
            chosen = list(nodes) or state.touched
            order = [n for n in reversed(self.plan.nodes) if n.name in chosen]
            state = self._save(state.with_status(RunStatus.RUNNING))
            self.emit(Event("run-started", self.plan.id, phase="rollback"))
            for node in order:
                run = state.nodes[node.name]
                if run.state in (NodeState.PENDING, NodeState.FAILED, NodeState.ROLLED_BACK):
                    continue
                state = self._put_back(state, node, MANUAL if run.state is not NodeState.ROLLING_BACK else run.reason)
            left = [n for n, r in state.nodes.items() if r.state in (NodeState.MIGRATED, NodeState.IN_PROGRESS)]
            state = self._save(state.with_status(RunStatus.INTERRUPTED if left else RunStatus.ROLLED_BACK))
            self.emit(Event("run-finished", self.plan.id, phase="rollback", outcome=state.status.value))
            return state

    # -- journal ----------------------------------------------------------------------------
    def _save(self, state: RunState) -> RunState:
        self.store.save(state)
        return state

    def _check_journal(self, state: RunState) -> None:
        if state.fingerprint != self.plan.cluster.fingerprint:
            raise PlanClusterMismatch("the checkpoint journal belongs to another cluster")
        if state.plan_id != self.plan.id:
            raise RunConflict(
                f"this cluster's journal belongs to plan {state.plan_id}, not {self.plan.id}; "
                f"resume or roll back with that plan file"
            )

    def _rollback_journal(self, state: RunState | None) -> RunState:
        if state is None:
            raise BadInput(f"plan {self.plan.id} was never applied to this cluster: nothing to roll back")
        self._check_journal(state)
        return state

    def _admit(self, existing: RunState | None, resume: bool) -> RunState | None:
        """Whether this run may start, decided without writing: raises if not; returns the
        run to continue, or None for a new one (any finished or rolled-back run is archived)."""
        if existing is not None and existing.plan_id != self.plan.id:
            if not existing.finished:
                self._check_journal(existing)
            existing = None
        if existing is not None:
            self._check_journal(existing)
            if existing.status is RunStatus.ROLLED_BACK and not resume:
                existing = None
        if existing is None:
            if resume:
                raise BadInput(f"no interrupted run of plan {self.plan.id} to resume; use 'cni-migrate apply'")
            return None
        if existing.status is not RunStatus.COMPLETED and not resume:
            raise RunConflict(
                f"plan {self.plan.id} has an unfinished run ({existing.status.value}); "
                "continue it with 'cni-migrate resume' or undo it with 'cni-migrate rollback'"
            )
        return existing

    def _open(self, resume: bool) -> RunState:
        existing = self.store.load()
        admitted = self._admit(existing, resume)
        if admitted is not None:
            return admitted
        if existing is not None:
            self.store.archive()
        return self._save(RunState.new(self.plan))

    # -- forward ----------------------------------------------------------------------------
    def _hook(self, point: str, **context: object) -> list[str]:
        return self.hooks(point, {"plan_id": self.plan.id, **context})

    def _forward(self, state: RunState) -> RunState:
        failures = self._hook("pre-run", step="", node="")
        if failures:
            raise PreflightBlocked(f"pre-run hook failed, nothing was changed: {failures[0]}")
        state = self._save(state.with_status(RunStatus.RUNNING))
        self.emit(Event("run-started", self.plan.id, phase="apply"))
        if any(r.state is not NodeState.MIGRATED for r in state.nodes.values()):
            try:
                if self.cluster.ensure_object(node_config(self.plan.cluster.node_config_api)):
                    self.emit(Event("prepared", self.plan.id, message="created CiliumNodeConfig cilium-default"))
            except ClusterError as exc:
                self._save(state.with_status(RunStatus.INTERRUPTED))
                raise Interrupted(f"cannot create CiliumNodeConfig cilium-default: {exc.message}") from exc
        for node in self.plan.nodes:
            run = state.nodes[node.name]
            if run.state is NodeState.ROLLING_BACK:
                # A put-back was interrupted: finish it, and end the run as it would have.
                state = self._put_back(state, node, run.reason)
                state = self._release_peers(state, node)
                raise self._failure(state, node.name)
        skipped: list[str] = []
        ran = 0  # waves run by this process
        for wave in self.plan.waves:
            todo = [n for n in wave.nodes if state.nodes[n.name].state is not NodeState.MIGRATED]
            if not todo:
                continue
            state = self._check_stop(state)
            if ran and self.soak_seconds > 0:
                state = self._soak(state, wave)
            answer = self._ask(state, wave, self.wave_gate, wave, state)
            if answer.rollback_wave is not None:
                self._rollback_wave(state, answer.rollback_wave)
            skipped += [n for n in answer.skip if skippable(state, n)]
            todo = [n for n in todo if n.name not in skipped]
            if self.node_gate is not None:
                for node in list(todo):
                    if state.nodes[node.name].state is NodeState.IN_PROGRESS:
                        continue  # already under way: asking now would leave it half-done
                    if node.name in self._ask(state, wave, self.node_gate, wave, node, state).skip:
                        skipped.append(node.name)
                        todo.remove(node)
            for name in skipped:
                if state.nodes[name].message != SKIPPED:
                    state = self._save(state.with_node_state(name, NodeState.PENDING, self._now(), message=SKIPPED))
                    self.emit(Event("node-state", self.plan.id, node=name, wave=wave.index, outcome="skipped"))
            if not todo:
                continue
            state = self._check_stop(state)
            self.emit(Event("wave-started", self.plan.id, wave=wave.index, message=", ".join(n.name for n in todo)))
            state = self._run_wave(state, wave, todo)
            ran += 1
            later = any(
                state.nodes[n.name].state is not NodeState.MIGRATED and n.name not in skipped
                for w in self.plan.waves[wave.index :]
                for n in w.nodes
            )
            if wave.canary and self.pause_after_canary and later:
                self._stop_at_boundary(
                    state,
                    wave,
                    f"paused after the canary wave {wave.index} ({', '.join(n.name for n in todo)}): check it, "
                    "then continue with 'cni-migrate resume'",
                )
        if skipped:
            self._stop_at_boundary(
                state,
                None,
                f"{len(skipped)} node(s) skipped by the operator ({', '.join(skipped)}); every other node is "
                "migrated; 'cni-migrate resume' migrates the skipped ones",
            )
        state = self._save(state.with_status(RunStatus.COMPLETED))
        self.emit(Event("run-finished", self.plan.id, phase="apply", outcome="completed"))
        self._hook("post-run", outcome="completed")  # reported by the hook runner only
        return state

    def _ask(self, state: RunState, wave: Wave, gate: Callable[..., Answer] | None, *args: Any) -> GateAnswer:
        """Put a question to a gate; a gate that stops the run ends it at this boundary."""
        if gate is None:
            return CONTINUE
        try:
            return gate(*args) or CONTINUE
        except Interrupted as exc:
            # Paused or aborted by the operator, or the window's end: a clean boundary.
            self._stop_at_boundary(self._release_wave(state, wave), wave, exc.message)

    def _stop_at_boundary(self, state: RunState, wave: Wave | None, message: str) -> NoReturn:
        self._save(state.with_status(RunStatus.INTERRUPTED))
        index = wave.index if wave else 0
        self.emit(Event("run-finished", self.plan.id, wave=index, outcome="interrupted", message=message))
        raise Interrupted(message)

    def _soak(self, state: RunState, wave: Wave) -> RunState:
        """Let the last wave run on Cilium for a while before touching the next one."""
        message = f"soaking {self.soak_seconds:g}s before wave {wave.index}"
        self.emit(Event("soak", self.plan.id, wave=wave.index, message=message))
        self.stop.wait(self.soak_seconds)
        return self._check_stop(state)

    def _rollback_wave(self, state: RunState, index: int) -> NoReturn:
        """The operator's 'roll back that wave': put its migrated nodes back, then stop."""
        wave = next((w for w in self.plan.waves if w.index == index), None)
        if wave is None:
            raise BadInput(f"plan {self.plan.id} has no wave {index}")
        done = [n for n in wave.nodes if state.nodes[n.name].state in (NodeState.MIGRATED, NodeState.IN_PROGRESS)]
        for node in reversed(done):
            state = self._put_back(state, node, MANUAL)
        names = ", ".join(n.name for n in done) or "no migrated node"
        self._stop_at_boundary(
            state,
            wave,
            f"rolled back wave {index} ({names}) on the operator's request; "
            "'cni-migrate resume' migrates it again, 'cni-migrate rollback' undoes the rest",
        )

    def _run_wave(self, state: RunState, wave: Wave, todo: list[NodePlan]) -> RunState:
        # Cordon the whole wave first, so pods evicted from one node never land on another
        # node of the same wave.
        for node in todo:
            if state.nodes[node.name].state is not NodeState.IN_PROGRESS:
                failures = self._hook("pre-node", node=node.name, wave=wave.index)
                if failures:
                    state = self._release_wave(state, wave)
                    state = self._save(state.with_status(RunStatus.INTERRUPTED))
                    raise Interrupted(
                        f"pre-node hook for {node.name} failed: {failures[0]}; "
                        "fix it and continue with 'cni-migrate resume'",
                        node=node.name,
                    )
                state = self._save(state.with_node_state(node.name, NodeState.IN_PROGRESS, self._now()))
            state = self._step(state, node, StepKind.CORDON, "apply", wave)
        for node in todo:
            for kind in FORWARD_STEPS[1:]:
                state = self._check_stop(state)
                try:
                    state = self._step(state, node, kind, "apply", wave)
                except (StepFailed, ValidationFailed) as exc:
                    state = self._put_back(state, node, kind.value, message=exc.message)
                    state = self._release_peers(state, node)
                    raise
            state = self._save(state.with_node_state(node.name, NodeState.MIGRATED, self._now(), message="migrated"))
            self.emit(Event("node-state", self.plan.id, node=node.name, wave=wave.index, outcome="migrated"))
            failures = self._hook("post-node", node=node.name, wave=wave.index)
            if failures:
                state = self._release_wave(state, wave)
                state = self._save(state.with_status(RunStatus.INTERRUPTED))
                raise Interrupted(
                    f"post-node hook for {node.name} failed: {failures[0]}; the node stays migrated; "
                    "continue with 'cni-migrate resume' or roll it back",
                    node=node.name,
                )
        return state

    def _release_wave(self, state: RunState, wave: Wave) -> RunState:
        """Uncordon the wave's in-progress nodes whose drain never started; mark them pending."""
        for node in wave.nodes:
            run = state.nodes[node.name]
            if run.state is NodeState.IN_PROGRESS and step_id(node.name, StepKind.DRAIN) not in run.steps:
                state = self._step(state, node, StepKind.UNCORDON, "release", wave)
                state = self._save(
                    state.with_node_state(
                        node.name, NodeState.PENDING, self._now(), message="not started: the run stopped in its wave"
                    )
                )
        return state

    def _release_peers(self, state: RunState, failed: NodePlan) -> RunState:
        """Uncordon the wave peers of a failed node whose turn never came; mark them pending."""
        wave = self._wave(failed)
        for node in wave.nodes:
            if node is failed or state.nodes[node.name].state is not NodeState.IN_PROGRESS:
                continue
            state = self._step(state, node, StepKind.UNCORDON, "release", wave)
            state = self._save(
                state.with_node_state(
                    node.name,
                    NodeState.PENDING,
                    self._now(),
                    message="not started: the run stopped earlier in its wave",
                )
            )
        return state

    def _wave(self, node: NodePlan) -> Wave:
        return next(w for w in self.plan.waves if node in w.nodes)

    # -- backward ---------------------------------------------------------------------------
    def _put_back(self, state: RunState, node: NodePlan, reason: str, message: str = "") -> RunState:
        run = state.nodes[node.name]
        if run.state is not NodeState.ROLLING_BACK:
            state = self._save(
                state.with_node_state(node.name, NodeState.ROLLING_BACK, self._now(), reason=reason, message=message)
            )
        run = state.nodes[node.name]
        wave = self._wave(node)
        for kind in self._undo_steps(node, run.reason, run.steps):
            state = self._step(state, node, kind, "rollback", wave)
        final = NodeState.ROLLED_BACK if run.reason == MANUAL else NodeState.FAILED
        state = self._save(state.with_node_state(node.name, final, self._now(), message=run.message))
        if final is NodeState.FAILED:
            state = self._save(state.with_status(RunStatus.FAILED))
        self.emit(
            Event("node-state", self.plan.id, node=node.name, wave=wave.index, outcome=final.value, message=run.message)
        )
        if final is NodeState.FAILED:
            self._hook("on-failure", node=node.name, wave=wave.index, step=run.reason, message=run.message)
        return state

    def _undo_steps(self, node: NodePlan, reason: str, records: Mapping[str, object]) -> tuple[StepKind, ...]:
        """Manual rollback: the full rollback sequence. Automatic: the inverse of every
        forward step the node started, last first (uncordon is never undone)."""
        if reason == MANUAL:
            return ROLLBACK_STEPS
        undo = []
        for kind in reversed(FORWARD_STEPS):
            inverse = kind.inverse
            if kind is not StepKind.UNCORDON and inverse is not None and step_id(node.name, kind) in records:
                undo.append(inverse)
        return tuple(undo)

    def _failure(self, state: RunState, node: str) -> MigrateError:
        run = state.nodes[node]
        if run.reason == StepKind.VALIDATE.value:
            return ValidationFailed(run.message or f"validation of {node} failed", node=node)
        return StepFailed(run.message or f"{run.reason} of {node} failed", node=node)

    # -- one step ---------------------------------------------------------------------------
    def _step(self, state: RunState, node: NodePlan, kind: StepKind, phase: str, wave: Wave) -> RunState:
        sid = step_id(node.name, kind, phase)
        if state.nodes[node.name].succeeded(sid):
            return state
        state = self._save(state.with_step(node.name, sid, kind, StepStatus.STARTED, self._now()))
        self.emit(Event("step-started", self.plan.id, node=node.name, wave=wave.index, step=kind.value, phase=phase))
        started = self.clock.monotonic()
        try:
            message = self._steps[kind](self._ctx, node)
        except Interrupted as exc:
            state = self._interrupted(state, node, sid, kind, exc.message)
            raise
        except (StepFailed, ValidationFailed) as exc:
            self._finished(state, node, sid, kind, wave, phase, StepStatus.FAILED, exc.message, started)
            raise
        except ClusterError as exc:
            # The API is unreachable or refuses us: stop, resumable; never roll back for it.
            message = f"{kind.value} of {node.name} stopped: {exc.message}"
            self._interrupted(state, node, sid, kind, message)
            raise Interrupted(message + "; resume when the cluster answers again", node=node.name) from exc
        return self._finished(state, node, sid, kind, wave, phase, StepStatus.SUCCEEDED, message, started)

    def _finished(
        self,
        state: RunState,
        node: NodePlan,
        sid: str,
        kind: StepKind,
        wave: Wave,
        phase: str,
        status: StepStatus,
        message: str,
        started: float,
    ) -> RunState:
        """Record a step's end, then report it."""
        state = self._save(state.with_step(node.name, sid, kind, status, self._now(), message))
        self.emit(
            Event(
                "step-finished",
                self.plan.id,
                node=node.name,
                wave=wave.index,
                step=kind.value,
                phase=phase,
                outcome=status.value,
                message=message,
                duration=self.clock.monotonic() - started,
            )
        )
        return state

    def _interrupted(self, state: RunState, node: NodePlan, sid: str, kind: StepKind, message: str) -> RunState:
        state = state.with_step(node.name, sid, kind, StepStatus.INTERRUPTED, self._now(), message)
        state = self._save(state.with_status(RunStatus.INTERRUPTED))
        self.emit(Event("run-finished", self.plan.id, node=node.name, outcome="interrupted", message=message))
        return state

    def _check_stop(self, state: RunState) -> RunState:
        if not self.stop.is_set():
            return state
        self._save(state.with_status(RunStatus.INTERRUPTED))
        self.emit(Event("run-finished", self.plan.id, outcome="interrupted", message=self.stop.reason))
        raise Interrupted(f"stopped: {self.stop.reason}; continue with 'cni-migrate resume'")

    def _now(self) -> str:
        return self.clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")


def skippable(state: RunState, node: str) -> bool:
    """Not started, or back where it started: a node under way cannot be skipped (it would
    be left half-done), and a migrated one has nothing left to skip."""
    return state.nodes[node].state in (NodeState.PENDING, NodeState.ROLLED_BACK, NodeState.FAILED)


def verify_plan(plan: Plan, cluster: Cluster) -> None:
    identity = cluster.identity()
    if identity.fingerprint != plan.cluster.fingerprint:
        raise PlanClusterMismatch(
            f"plan {plan.id} is for another cluster (plan: {plan.cluster.server}, "
            f"kube-system {plan.cluster.kube_system_uid[:8]}; this: {identity.server}, "
            f"kube-system {identity.kube_system_uid[:8]})"
        )
    live = {(n.name, n.uid) for n in cluster.nodes()}
    planned = set(plan.cluster.nodes)
    if live != planned:
        added = sorted(n for n, _ in live - planned)
        removed = sorted(n for n, _ in planned - live)
        parts = []
        if added:
            parts.append(f"added or replaced: {', '.join(added)}")
        if removed:
            parts.append(f"removed or replaced: {', '.join(removed)}")
        raise PlanStale(f"plan {plan.id} is stale: nodes changed since it was made ({'; '.join(parts)}); plan again")
