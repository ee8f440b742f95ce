"""The executor: run a reviewed plan against a cluster, one checkpointed step at a time.

    load plan -> verify cluster identity and node set (a new run: and the plan's blocking
      preflight checks again, on the live inventory) -> take the executor lock
      -> open the journal (new, or the interrupted one) -> for each wave: cordon every
      node of the wave, then per node drain, swap-cni, validate, uncordon
      -> on a failed step put the node back (the inverse of each step it completed)

Every step is recorded as started before it runs and as succeeded/failed/interrupted
after, through the ``CheckpointStore``; a step recorded as succeeded is never run again.
Steps are idempotent, so one that started but never finished is simply run again.
The executor reports through ``EventSink`` and never prints.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from migrate import preflight, reconcile, traffic
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
from migrate.model import ClusterIdentity, Inventory, NodeInfo
from migrate.plan import FORWARD_STEPS, ROLLBACK_STEPS, NodePlan, Plan, Severity, StepKind, Wave, step_id
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
# Nothing left for the forward run to do on a node in these states.
DONE = (NodeState.MIGRATED, NodeState.GONE)
SKIPPED = "skipped by the operator"
# What a failed step's error tells beyond its message, kept in the journal for status -o json.
FAILURE_DETAIL = ("check", "observed", "expected", "tries")


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


@dataclass(frozen=True)
class RunConfig:
    """What the operator asked of one run, fixed before it starts: the executor reads it and
    never changes it, so the options a run had are the ones it was built with."""

    # Called before each wave / each node of a wave (see ``WaveGate``, ``NodeGate``).
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
    # apply --traffic-watch: probers on every node for the run; a node whose window saw more
    # than max_probe_failures failed requests fails its validation.
    traffic_watch: bool = False
    max_probe_failures: int = traffic.DEFAULT_MAX_FAILURES
    traffic_start_timeout: float = 120.0


@dataclass
class Executor:
    """One command's run of a plan. ``config`` is fixed at construction; the ports (store,
    emit, ...) are the wiring the shell (or a test) hands it."""

    plan: Plan
    cluster: Cluster
    store: CheckpointStore
    lock: ExecutorLock
    clock: Clock
    emit: EventSink
    stop: StopFlag
    config: RunConfig = RunConfig()

    def __post_init__(self) -> None:
        self._steps: dict[StepKind, StepFn] = registry()
        self._state: RunState | None = None
        self._mutex = threading.Lock()  # guards the run state
        self._save_lock = threading.Lock()  # one journal write at a time
        self._changes = 0  # transitions made by _commit
        self._saved = 0  # ... of which the journal holds the first this many
        self._report_lock = threading.Lock()
        self._halt = threading.Event()  # set when one node of a wave stops: the others stop too
        self._stop_reported = False  # the operator's stop is reported once, not once per node thread
        self._traffic: traffic.TrafficWatch | None = None
        self._rechecked = False  # the live preflight of a new run passed (``_recheck``)
        self._ctx = StepContext(
            cluster=self.cluster,
            options=self.plan.options,
            clock=self.clock,
            stop=self.stop,
            emit=self._report,
            plan_id=self.plan.id,
            agent_timeout=self.config.agent_timeout,
            probe_timeout=self.config.probe_timeout,
            probe_retry_gap=self.config.probe_retry_gap,
            hooks=self.config.hooks,
        )

    # -- entry points ---------------------------------------------------------------------
    def reconfigured(self, **changes: Any) -> Executor:
        """A new executor with the same wiring and some options changed (this one's stay as
        they were); it keeps what ``verify`` established, so the checks are not read twice."""
        other = replace(self, config=replace(self.config, **changes))
        other._rechecked = self._rechecked
        return other

    def verify(self, *, to_apply: bool = False, strict: bool = True) -> None:
        """Refuse (to apply) a plan with blocking findings; then an identity without the
        permissions the run needs, a plan for another cluster, or (``strict``: a new run) one
        the cluster outgrew, or whose blocking preflight checks fail on the cluster as it is
        now. Resume, rollback and finalize are not strict: nodes removed or added since the
        plan are reconciled with the journal (``migrate.reconcile``), and nothing found live
        is a reason to refuse finishing or putting back what a run started."""
        if to_apply and self.plan.blocking:
            checks = ", ".join(sorted({f.check for f in self.plan.blocking}))
            raise PreflightBlocked(f"plan {self.plan.id} has blocking findings ({checks}); fix them and plan again")
        self._check_permissions()
        if not (to_apply and strict) or self._rechecked or not self._starts_new_run():
            verify_plan(self.plan, self.cluster, strict=strict)
            return
        _same_cluster(self.plan, self.cluster.identity())
        inv = self.cluster.inventory()  # one read: the node set and the checks
        _same_nodes(self.plan, inv.nodes)
        self._recheck(inv)

    def _starts_new_run(self) -> bool:
        """Whether apply would start a new run: not continue or re-apply a run of the journal,
        nor refuse for one. Decided without writing, as ``apply`` decides it."""
        existing = self.store.load()
        if existing is not None and existing.status is RunStatus.RUNNING:
            return False  # another executor's run, or a killed one's: the lock has the say
        try:
            return self._admit(existing, resume=False) is None
        except BadInput:
            return False  # apply refuses it (RunConflict), after the checks that come first

    def _recheck(self, inv: Inventory) -> None:
        """The findings in the file are the cluster as it was at plan time (and a file edited
        and summed again may have lost one): before a new run touches a node, run the plan's
        checks again on the live inventory and refuse on any blocking finding. Once per
        executor: the CLI verifies before asking for confirmation, apply verifies again."""
        blocking = [f for f in preflight.recheck(self.plan, inv) if f.severity is Severity.BLOCKING]
        if blocking:
            found = "; ".join(f"{f.check}: {f.message}" for f in blocking)
            raise PreflightBlocked(
                f"blocking preflight checks fail on the cluster now that plan {self.plan.id} does not record (the "
                f"cluster changed since the plan was made, or its file was edited): {found}; fix that and plan "
                "again, nothing was changed",
                checks=sorted({f.check for f in blocking}),
            )
        self._rechecked = True

    def apply(self, *, resume: bool = False) -> RunState:
        self.verify(to_apply=True, strict=not resume)
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
        completed = admitted is not None and admitted.status is RunStatus.COMPLETED
        if cut_short and self.config.cilium_installer:
            install = True  # this run's own install was cut short: finish it, whatever it left
        elif not completed:
            install = self._check_cilium(may_install=self.config.cilium_installer is not None)
        with self.lock.hold():
            # Before the journal is opened: a refusing hook leaves it as it was (no new run
            # recorded as running, an interrupted one still interrupted).
            failures = self._hook("pre-run", step="", node="")
            if failures:
                raise PreflightBlocked(f"pre-run hook failed, nothing was changed: {failures[0]}")
            self._open(resume)
            # A completed run is complete only if the cluster agrees: each migrated node's
            # CNI configuration is read again (a node put back on Calico by hand is migrated again).
            state = self._reconcile(verify_migrated=completed)
            if state.status is RunStatus.COMPLETED and all(
                r.state in (NodeState.MIGRATED, NodeState.GONE) for r in state.nodes.values()
            ):
                return state
            if completed and not install:
                install = self._check_cilium(may_install=self.config.cilium_installer is not None)
            if resume:
                # Only now, holding the lock: probe and node-task pods of the killed run.
                self.cluster.cleanup_helper_pods()
            if install or (self.config.cilium_installer and state.prepare.get(INSTALL_CILIUM) == "started"):
                self._install_cilium()
            if self.config.traffic_watch:
                self._start_traffic()
            elif resume:
                self._remove_traffic(leftover=True)  # a killed run's watch, not asked for this time
            try:
                return self._forward()
            finally:
                if self.config.traffic_watch:
                    self._remove_traffic()

    def _check_permissions(self) -> None:
        """Refuse, before any write, an identity that could not finish the run."""
        missing = self.cluster.missing_permissions(traffic.PERMISSIONS if self.config.traffic_watch else ())
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

    def _install_cilium(self) -> None:
        """Install Cilium in migration mode before the first node, recorded in the journal as
        started and succeeded (an interrupted install is run again on resume: it is an
        idempotent ``helm upgrade --install``); then check the live configuration it made."""
        assert self.config.cilium_installer is not None
        self._commit(lambda s: s.with_prepare(INSTALL_CILIUM, "started"))
        self._report(Event("prepare", self.plan.id, step=INSTALL_CILIUM, message="installing Cilium in migration mode"))
        try:
            message = self.config.cilium_installer(migration_values(self.plan.options))
        except ClusterError as exc:
            self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
            raise Interrupted(
                f"installing Cilium stopped: {exc.message}; no node was touched; "
                "fix it and run 'cni-migrate resume PLANFILE' (with --helm PATH if helm is not on PATH)"
            ) from exc
        try:
            self._check_cilium()
        except PreflightBlocked:
            self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
            raise
        self._commit(lambda s: s.with_prepare(INSTALL_CILIUM, "succeeded"))
        self._report(Event("prepare", self.plan.id, step=INSTALL_CILIUM, outcome="succeeded", message=message))

    def _start_traffic(self) -> None:
        """Deploy the traffic watch before the first node and let the validate step read it;
        a watch that does not report stops the run before any node is touched (a silent
        prober would fail every node's validation)."""
        try:
            message = self.cluster.start_traffic_watch(self.config.traffic_start_timeout)
        except ClusterError as exc:
            self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
            self._remove_traffic()
            raise Interrupted(
                f"the traffic watch did not start: {exc.message}; no node was touched; fix it (or leave out "
                "--traffic-watch) and run 'cni-migrate resume PLANFILE'"
            ) from exc
        self._report(Event("prepare", self.plan.id, step=traffic.CHECK, message=message))
        self._traffic = traffic.TrafficWatch(
            read=self.cluster.traffic_reports, now=self.clock.now, max_failures=self.config.max_probe_failures
        )
        self._ctx = replace(self._ctx, traffic=self._traffic, started=self._started_at)

    def _remove_traffic(self, *, leftover: bool = False) -> None:
        """Report what the watch saw per node, then remove it; a cluster that refuses is told
        to the operator, never allowed to mask how the run ended. ``leftover``: only a killed
        run's watch, if any, is looked for (quietly: this identity may have no rights there)."""
        if self._traffic is not None:
            for node, seen in sorted(self._traffic.seen.items()):
                self._report(
                    Event("prepare", self.plan.id, node=node, step=traffic.CHECK, message=f"{node}: {seen.describe()}")
                )
        try:
            removed = self.cluster.stop_traffic_watch()
        except ClusterError as exc:
            if leftover:
                return  # looking for a watch this run never asked for: not worth a word
            # The run's outcome stands; the probers are harmless and the next run removes them.
            message = (
                f"could not remove the traffic watch ({exc.message}); delete namespace {traffic.NAMESPACE}'s objects"
            )
            self._report(Event("prepare", self.plan.id, step=traffic.CHECK, message=message))
            return
        if removed:
            self._report(Event("prepare", self.plan.id, step=traffic.CHECK, message="traffic watch removed"))

    def _started_at(self, node: str, kind: StepKind) -> str:
        record = self._current.nodes[node].steps.get(step_id(node, kind))
        return record.started_at if record is not None else ""

    def rollback(self, nodes: Sequence[str] = ()) -> RunState:
        """Put nodes back on Calico: those named, or every node the run touched and every
        node of the plan the cluster shows with the migration label. What the live cluster
        shows decides, not only the journal: a node the journal calls pending that is on
        Cilium is put back; a node gone from the cluster is reported and left alone."""
        self.verify(strict=False)
        unknown = sorted(set(nodes) - {n.name for n in self.plan.nodes})
        if unknown:
            raise BadInput(f"--node names node(s) not in plan {self.plan.id}: {', '.join(unknown)}")
        named = bool(nodes)
        self._rollback_journal(self.store.load(), self._live(), named=named)  # refuse before the lock, as apply does
        with self.lock.hold():
            existing = self.store.load()
            live = self._live()
            self._state = self._rollback_journal(existing, live, named=named)
            fresh = existing is None or existing.plan_id != self.plan.id
            chosen = [n for n in nodes if reconcile.present(self.plan, live, n)]
            if nodes:
                # Named by the operator: look at the node's CNI configuration where the journal
                # and the label both say Calico, so a node that is on Cilium is never left so.
                unsure = [n for n in chosen if not live[n].labelled and not self._under_way(n)]
                live = self._read_cni(live, unsure)
                if fresh and not any(reconcile.off_calico(live[n]) for n in chosen):
                    raise BadInput(
                        f"plan {self.plan.id} was never applied to this cluster and {', '.join(nodes)} "
                        f"{'is' if len(nodes) == 1 else 'are'} on Calico (CNI configuration read): nothing to roll back"
                    )
            else:
                chosen = reconcile.rollback_candidates(self.plan, self._state, live)
            if fresh:
                if existing is not None:
                    self.store.archive()  # another plan's finished run
                self.store.save(self._state)
            self._remove_traffic(leftover=True)  # a killed apply's watch
            for name in self._gone(live):
                self._report(Event("node-state", self.plan.id, node=name, outcome="gone", message=reconcile.GONE))
            order = [n for n in reversed(self.plan.nodes) if n.name in chosen]
            self._commit(lambda s: s.with_status(RunStatus.RUNNING))
            self._report(Event("run-started", self.plan.id, phase="rollback"))
            for node in order:
                run = self._state.nodes[node.name]
                if not self._under_way(node.name) and not reconcile.off_calico(live[node.name]):
                    self._report(
                        Event(
                            "node-state",
                            self.plan.id,
                            node=node.name,
                            outcome="skipped",
                            message=f"{node.name} is on Calico ({live[node.name].describe()}): nothing to put back",
                        )
                    )
                    continue
                self._put_back(node, MANUAL if run.state is not NodeState.ROLLING_BACK else run.reason)
            left = [n for n, r in self._state.nodes.items() if r.state in (NodeState.MIGRATED, NodeState.IN_PROGRESS)]
            state = self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED if left else RunStatus.ROLLED_BACK))
            self._report(Event("run-finished", self.plan.id, phase="rollback", outcome=state.status.value))
            return state

    # -- journal ----------------------------------------------------------------------------
    def _commit(self, change: Callable[[RunState], RunState]) -> RunState:
        """Apply one transition to the run's state and checkpoint it. The nodes of a wave
        run in threads: each changes only its own node's record (and the run's status), so
        transitions are applied one at a time to the latest state, never to a stale copy."""
        with self._mutex:
            assert self._state is not None
            self._state = change(self._state)
            self._changes += 1
            mine, state = self._changes, self._state
        # Group commit: a thread waits here while another saves; by its turn, that save may
        # already have carried its change (the save writes the latest state, with every
        # change made so far). Either way it returns only once its change is checkpointed,
        # and the nodes of a wave do not queue one journal write each behind one another.
        with self._save_lock:
            if self._saved < mine:
                with self._mutex:
                    latest, upto = self._state, self._changes
                self.store.save(latest)
                self._saved = upto
        return state

    def _node_state(self, name: str, state: NodeState, *, message: str = "", reason: str | None = None) -> None:
        self._commit(lambda s: s.with_node_state(name, state, self._now(), message=message, reason=reason))

    @property
    def _current(self) -> RunState:
        assert self._state is not None
        return self._state

    def _check_journal(self, state: RunState) -> None:
        if state.fingerprint != self.plan.cluster.fingerprint:
            raise PlanClusterMismatch("the checkpoint journal belongs to another cluster")
        if state.plan_id != self.plan.id:
            counts = Counter(r.state.value for r in state.nodes.values())
            where = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            under_way = sorted(
                n for n, r in state.nodes.items() if r.state in (NodeState.IN_PROGRESS, NodeState.ROLLING_BACK)
            )
            busy = f"; under way: {', '.join(under_way)}" if under_way else ""
            raise RunConflict(
                f"this cluster's journal holds an unfinished run of plan {state.plan_id} ({state.status.value}: "
                f"{where}{busy}), not of plan {self.plan.id}; finish it first with that plan's file: "
                f"'cni-migrate resume PLANFILE' (to go on) or 'cni-migrate rollback PLANFILE' (to undo it), "
                "then apply this plan"
            )

    def _rollback_journal(
        self, state: RunState | None, live: Mapping[str, reconcile.LiveNode], *, named: bool = False
    ) -> RunState:
        """The run to roll back: this plan's, or a new record when there is none (or only
        another plan's finished one) but nodes of this plan carry the migration label, or
        the operator ``named`` nodes (whose CNI configuration is then read)."""
        if state is not None and (state.plan_id == self.plan.id or not state.finished):
            self._check_journal(state)
            return state
        labelled = [
            n.name for n in self.plan.nodes if reconcile.present(self.plan, live, n.name) and live[n.name].labelled
        ]
        if not labelled and not named:
            raise BadInput(
                f"plan {self.plan.id} was never applied to this cluster and none of its nodes carries the migration "
                "label: nothing to roll back"
            )
        return RunState.new(self.plan).with_status(RunStatus.INTERRUPTED)

    def _under_way(self, name: str) -> bool:
        return self._current.nodes[name].state in (NodeState.MIGRATED, NodeState.IN_PROGRESS, NodeState.ROLLING_BACK)

    # -- the live cluster ---------------------------------------------------------------------
    def _live(self) -> dict[str, reconcile.LiveNode]:
        """Every node as the cluster shows it now (one node list; read-only)."""
        return reconcile.live_map(self.cluster.nodes())

    def _read_cni(self, live: dict[str, reconcile.LiveNode], names: Sequence[str]) -> dict[str, reconcile.LiveNode]:
        """``live`` with these nodes' CNI configuration read (a node task each: under the lock only)."""
        if not names:
            return live
        read = dict(live)
        for name in names:
            read[name] = replace(live[name], cni=self.cluster.node_cni(name))
        return read

    def _gone(self, live: Mapping[str, reconcile.LiveNode]) -> list[str]:
        """Plan nodes no longer in the cluster; recorded as gone in the journal."""
        gone = [n.name for n in self.plan.nodes if not reconcile.present(self.plan, live, n.name)]
        for name in gone:
            if self._current.nodes[name].state is not NodeState.GONE:
                self._node_state(name, NodeState.GONE, message=reconcile.GONE)
        return gone

    def _reconcile(self, *, verify_migrated: bool = False) -> RunState:
        """Before the forward run decides anything: the journal made to match the cluster
        (``migrate.reconcile.drift``), each change recorded and reported."""
        live = self._live()
        try:
            names = reconcile.needs_cni(self.plan, self._current, live, verify_migrated=verify_migrated)
            live = self._read_cni(live, names)
        except ClusterError as exc:
            self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
            raise Interrupted(f"cannot read a node's CNI configuration before the run: {exc.message}") from exc
        for change in reconcile.drift(self.plan, self._current, live):
            self._node_state(change.node, change.to, message=change.message)
            self._report(
                Event(
                    "reconciled",
                    self.plan.id,
                    node=change.node,
                    outcome=change.to.value,
                    message=f"{change.node}: {change.message} (journal: {change.journal.value})",
                )
            )
        return self._current

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
            self._state = admitted
            return admitted
        if existing is not None:
            self.store.archive()
        self._state = RunState.new(self.plan)
        self.store.save(self._state)
        return self._state

    # -- forward ----------------------------------------------------------------------------
    def _hook(self, point: str, **context: object) -> list[str]:
        return self.config.hooks(point, {"plan_id": self.plan.id, **context})

    def _report(self, event: Event) -> None:
        """The one way events leave the executor: the sinks see one event at a time, also
        when the nodes of a wave report from their threads."""
        with self._report_lock:
            self.emit(event)

    def _forward(self) -> RunState:
        self._commit(lambda s: s.with_status(RunStatus.RUNNING))
        self._report(Event("run-started", self.plan.id, phase="apply"))
        if any(r.state not in DONE for r in self._current.nodes.values()):
            try:
                if self.cluster.ensure_object(node_config(self.plan.cluster.node_config_api)):
                    self._report(Event("prepared", self.plan.id, message="created CiliumNodeConfig cilium-default"))
            except ClusterError as exc:
                self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
                raise Interrupted(f"cannot create CiliumNodeConfig cilium-default: {exc.message}") from exc
        rolling = [n for n in self.plan.nodes if self._current.nodes[n.name].state is NodeState.ROLLING_BACK]
        if rolling:
            # Put-backs were interrupted: finish them, and end the run as it would have. In a
            # parallel wave a peer may have been under way (drained, swapped): it finishes,
            # validated, as it would have; only peers whose drain never started are released.
            for node in rolling:
                self._put_back(node, self._current.nodes[node.name].reason)
            for wave in self.plan.waves:
                if not any(n in wave.nodes for n in rolling):
                    continue
                under_way = [
                    n
                    for n in wave.nodes
                    if self._current.nodes[n.name].state is NodeState.IN_PROGRESS
                    and step_id(n.name, StepKind.DRAIN) in self._current.nodes[n.name].steps
                ]
                if under_way:
                    self._pipelines(wave, under_way)
                self._release_wave(wave)
            raise self._failure(rolling[0].name)
        skipped: list[str] = []
        ran = 0  # waves run by this process
        for wave in self.plan.waves:
            todo = [n for n in wave.nodes if self._current.nodes[n.name].state not in DONE]
            if not todo:
                continue
            self._check_stop()
            if ran and self.config.soak_seconds > 0:
                self._soak(wave)
            answer = self._ask(wave, self.config.wave_gate, wave, self._current)
            if answer.rollback_wave is not None:
                self._rollback_wave(answer.rollback_wave)
            skipped += [n for n in answer.skip if skippable(self._current, n)]
            todo = [n for n in todo if n.name not in skipped]
            if self.config.node_gate is not None:
                for node in list(todo):
                    if self._current.nodes[node.name].state is NodeState.IN_PROGRESS:
                        continue  # already under way: asking now would leave it half-done
                    if node.name in self._ask(wave, self.config.node_gate, wave, node, self._current).skip:
                        skipped.append(node.name)
                        todo.remove(node)
            for name in skipped:
                if self._current.nodes[name].message != SKIPPED:
                    self._node_state(name, NodeState.PENDING, message=SKIPPED)
                    self._report(Event("node-state", self.plan.id, node=name, wave=wave.index, outcome="skipped"))
            if not todo:
                continue
            self._check_stop()
            self._report(Event("wave-started", self.plan.id, wave=wave.index, message=", ".join(n.name for n in todo)))
            self._run_wave(wave, todo)
            ran += 1
            later = any(
                self._current.nodes[n.name].state not in DONE and n.name not in skipped
                for w in self.plan.waves[wave.index :]
                for n in w.nodes
            )
            if wave.canary and self.config.pause_after_canary and later:
                self._stop_at_boundary(
                    wave,
                    f"paused after the canary wave {wave.index} ({', '.join(n.name for n in todo)}): check it, "
                    "then continue with 'cni-migrate resume'",
                )
        if skipped:
            self._stop_at_boundary(
                None,
                f"{len(skipped)} node(s) skipped by the operator ({', '.join(skipped)}); every other node is "
                "migrated; 'cni-migrate resume' migrates the skipped ones",
            )
        state = self._commit(lambda s: s.with_status(RunStatus.COMPLETED))
        self._report(Event("run-finished", self.plan.id, phase="apply", outcome="completed"))
        self._hook("post-run", outcome="completed")  # reported by the hook runner only
        return state

    def _ask(self, wave: Wave, gate: Callable[..., Answer] | None, *args: Any) -> GateAnswer:
        """Put a question to a gate; a gate that stops the run ends it at this boundary."""
        if gate is None:
            return CONTINUE
        try:
            return gate(*args) or CONTINUE
        except Interrupted as exc:
            # Paused or aborted by the operator, or the window's end: a clean boundary.
            self._release_wave(wave)
            self._stop_at_boundary(wave, exc.message)

    def _stop_at_boundary(self, wave: Wave | None, message: str) -> NoReturn:
        self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
        index = wave.index if wave else 0
        self._report(Event("run-finished", self.plan.id, wave=index, outcome="interrupted", message=message))
        raise Interrupted(message)

    def _soak(self, wave: Wave) -> None:
        """Let the last wave run on Cilium for a while before touching the next one."""
        message = f"soaking {self.config.soak_seconds:g}s before wave {wave.index}"
        self._report(Event("soak", self.plan.id, wave=wave.index, message=message))
        self.stop.wait(self.config.soak_seconds)
        self._check_stop()

    def _rollback_wave(self, index: int) -> NoReturn:
        """The operator's 'roll back that wave': put its migrated nodes back, then stop."""
        wave = next((w for w in self.plan.waves if w.index == index), None)
        if wave is None:
            raise BadInput(f"plan {self.plan.id} has no wave {index}")
        done = [
            n for n in wave.nodes if self._current.nodes[n.name].state in (NodeState.MIGRATED, NodeState.IN_PROGRESS)
        ]
        for node in reversed(done):
            self._put_back(node, MANUAL)
        names = ", ".join(n.name for n in done) or "no migrated node"
        self._stop_at_boundary(
            wave,
            f"rolled back wave {index} ({names}) on the operator's request; "
            "'cni-migrate resume' migrates it again, 'cni-migrate rollback' undoes the rest",
        )

    def _run_wave(self, wave: Wave, todo: list[NodePlan]) -> None:
        # Cordon the whole wave first, so pods evicted from one node never land on another
        # node of the same wave.
        for node in todo:
            if self._current.nodes[node.name].state is not NodeState.IN_PROGRESS:
                failures = self._hook("pre-node", node=node.name, wave=wave.index)
                if failures:
                    self._release_wave(wave)
                    self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
                    raise Interrupted(
                        f"pre-node hook for {node.name} failed: {failures[0]}; "
                        "fix it and continue with 'cni-migrate resume'",
                        node=node.name,
                    )
                self._node_state(node.name, NodeState.IN_PROGRESS)
            self._step(node, StepKind.CORDON, "apply", wave)
        self._pipelines(wave, todo)

    def _pipelines(self, wave: Wave, todo: list[NodePlan]) -> None:
        """Drain, swap, validate and uncordon the wave's nodes, the plan's ``node_parallelism``
        at a time (0: all of them at once, as max-unavailable allows; 1: one after another).
        After a node fails (it is put back) or stops, no further node starts. Those already
        under way go on after a failure, so it leaves no peer half-done; a stop (signal,
        window end, lost API) halts them all at their next step."""
        queue = deque(todo)
        failed: list[MigrateError] = []
        stopped: list[Interrupted] = []
        crashed: list[BaseException] = []
        guard = threading.Lock()
        self._halt.clear()

        def worker() -> None:
            while True:
                with guard:
                    if failed or stopped or crashed or not queue:
                        return
                    node = queue.popleft()
                try:
                    self._pipeline(node, wave)
                except (StepFailed, ValidationFailed) as exc:
                    with guard:
                        failed.append(exc)
                except Interrupted as exc:
                    with guard:
                        stopped.append(exc)  # before the halt: the first stop is the one reported
                    self._halt.set()
                except BaseException as exc:  # noqa: BLE001 - a bug (or SystemExit) in one thread: stop the others, re-raised below
                    with guard:
                        crashed.append(exc)
                    self._halt.set()

        width = min(self.plan.options.node_parallelism or len(todo), len(todo))
        if width <= 1:
            worker()
        else:
            threads = [threading.Thread(target=worker, name=f"{wave.index}-{i}", daemon=True) for i in range(width)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if crashed:
            raise crashed[0]
        if failed or any(isinstance(exc, _HookStop) for exc in stopped):
            # Peers whose turn never came go back to service.
            self._release_wave(wave)
        if failed:
            first = failed[0]
            self._commit(lambda s: s.with_status(RunStatus.FAILED))
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
            self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
            raise stopped[0]

    def _pipeline(self, node: NodePlan, wave: Wave) -> None:
        """One node, from drain to migrated; a failed step puts it back and re-raises."""
        for kind in FORWARD_STEPS[1:]:
            self._check_stop()
            try:
                self._step(node, kind, "apply", wave)
            except (StepFailed, ValidationFailed) as exc:
                self._put_back(node, kind.value, message=exc.message)
                raise
        self._node_state(node.name, NodeState.MIGRATED, message="migrated")
        self._report(Event("node-state", self.plan.id, node=node.name, wave=wave.index, outcome="migrated"))
        failures = self._hook("post-node", node=node.name, wave=wave.index)
        if failures:
            raise _HookStop(
                f"post-node hook for {node.name} failed: {failures[0]}; the node stays migrated; "
                "continue with 'cni-migrate resume' or roll it back",
                node=node.name,
            )

    def _release_wave(self, wave: Wave) -> None:
        """Uncordon the wave's in-progress nodes whose drain never started; mark them pending."""
        for node in wave.nodes:
            run = self._current.nodes[node.name]
            if run.state is NodeState.IN_PROGRESS and step_id(node.name, StepKind.DRAIN) not in run.steps:
                self._step(node, StepKind.UNCORDON, "release", wave)
                self._node_state(node.name, NodeState.PENDING, message="not started: the run stopped in its wave")

    def _wave(self, node: NodePlan) -> Wave:
        return next(w for w in self.plan.waves if node in w.nodes)

    # -- backward ---------------------------------------------------------------------------
    def _put_back(self, node: NodePlan, reason: str, message: str = "") -> None:
        if self._current.nodes[node.name].state is not NodeState.ROLLING_BACK:
            self._node_state(node.name, NodeState.ROLLING_BACK, reason=reason, message=message)
        run = self._current.nodes[node.name]
        wave = self._wave(node)
        for kind in self._undo_steps(node, run.reason, run.steps):
            self._step(node, kind, "rollback", wave)
        final = NodeState.ROLLED_BACK if run.reason == MANUAL else NodeState.FAILED
        self._node_state(node.name, final, message=run.message)
        if final is NodeState.FAILED:
            self._commit(lambda s: s.with_status(RunStatus.FAILED))
        self._report(
            Event("node-state", self.plan.id, node=node.name, wave=wave.index, outcome=final.value, message=run.message)
        )
        if final is NodeState.FAILED:
            self._hook("on-failure", node=node.name, wave=wave.index, step=run.reason, message=run.message)

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

    def _failure(self, node: str) -> MigrateError:
        run = self._current.nodes[node]
        if run.reason == StepKind.VALIDATE.value:
            return ValidationFailed(run.message or f"validation of {node} failed", node=node)
        return StepFailed(run.message or f"{run.reason} of {node} failed", node=node)

    # -- one step ---------------------------------------------------------------------------
    def _step(self, node: NodePlan, kind: StepKind, phase: str, wave: Wave) -> None:
        sid = step_id(node.name, kind, phase)
        if self._current.nodes[node.name].succeeded(sid):
            return
        self._commit(lambda s: s.with_step(node.name, sid, kind, StepStatus.STARTED, self._now()))
        self._report(Event("step-started", self.plan.id, node=node.name, wave=wave.index, step=kind.value, phase=phase))
        started = self.clock.monotonic()
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
        self._commit(lambda s: s.with_step(node.name, sid, kind, status, self._now(), message, detail))
        self._report(
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

    def _interrupted(self, node: NodePlan, sid: str, kind: StepKind, message: str) -> None:
        self._commit(
            lambda s: s.with_step(node.name, sid, kind, StepStatus.INTERRUPTED, self._now(), message).with_status(
                RunStatus.INTERRUPTED
            )
        )
        self._report(Event("run-finished", self.plan.id, node=node.name, outcome="interrupted", message=message))

    def _check_stop(self) -> None:
        """Between steps: the operator's stop (signal, prompt, window end), or another node of
        the wave that stopped (its own step reported why)."""
        if self.stop.is_set():
            with self._mutex:
                first, self._stop_reported = not self._stop_reported, True
            if first:
                self._commit(lambda s: s.with_status(RunStatus.INTERRUPTED))
                self._report(Event("run-finished", self.plan.id, outcome="interrupted", message=self.stop.reason))
            raise Interrupted(f"stopped: {self.stop.reason}; continue with 'cni-migrate resume'")
        if self._halt.is_set():
            raise Interrupted("stopped: another node of the wave stopped; continue with 'cni-migrate resume'")

    def _now(self) -> str:
        return self.clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")


class _HookStop(Interrupted):
    """A post-node hook failed: the run stops, and the wave's nodes not yet started are
    released (an operator's check said no, unlike a signal, which keeps the wave cordoned)."""


def skippable(state: RunState, node: str) -> bool:
    """Not started, or back where it started: a node under way cannot be skipped (it would
    be left half-done), and a migrated one has nothing left to skip."""
    return state.nodes[node].state in (NodeState.PENDING, NodeState.ROLLED_BACK, NodeState.FAILED)


def verify_plan(plan: Plan, cluster: Cluster, *, strict: bool = True) -> None:
    """The plan is for this cluster; ``strict`` (a new run): and for the nodes it has now."""
    _same_cluster(plan, cluster.identity())
    if strict:
        _same_nodes(plan, cluster.nodes())


def _same_cluster(plan: Plan, identity: ClusterIdentity) -> None:
    if identity.fingerprint != plan.cluster.fingerprint:
        raise PlanClusterMismatch(
            f"plan {plan.id} is for another cluster (plan: {plan.cluster.server}, "
            f"kube-system {plan.cluster.kube_system_uid[:8]}; this: {identity.server}, "
            f"kube-system {identity.kube_system_uid[:8]})"
        )


def _same_nodes(plan: Plan, nodes: Sequence[NodeInfo]) -> None:
    live = {(n.name, n.uid) for n in nodes}
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
