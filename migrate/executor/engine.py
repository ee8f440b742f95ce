"""The executor's entry points: verify a plan, apply it (or resume it), roll it back.

    load plan -> verify cluster identity and node set (a new run: and the plan's blocking
      preflight checks again, on the live inventory) -> take the executor lock
      -> open the journal (new, or the interrupted one) and make it match the cluster
      -> Cilium (checked, or installed), the traffic watch -> the waves (``waves``)

``Executor`` wires the rooms of this package for one command; what each does is theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from migrate import reconcile, traffic
from migrate.cilium import INSTALL_CILIUM
from migrate.errors import BadInput, ClusterError, Interrupted, LeaseLost, PreflightBlocked
from migrate.executor import admission
from migrate.executor.commit import GroupCommit
from migrate.executor.config import RunConfig
from migrate.executor.pipelines import MANUAL, Pipelines
from migrate.executor.prepare import Prepare, check_cilium
from migrate.executor.run import Run
from migrate.executor.runner import StepRunner
from migrate.executor.waves import DONE, Waves
from migrate.journal import NodeState, RunState, RunStatus
from migrate.plan import Plan, StepKind
from migrate.ports import CheckpointStore, Clock, Cluster, Event, EventSink, ExecutorLock, HookContext, StopFlag
from migrate.steps import StepContext, StepFn, handoff, registry
from migrate.steps.surge import refuse_unreadable, restore_all


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
        self._report_lock = threading.Lock()
        self._rechecked = False  # the live preflight of a new run passed (``admission.recheck``)

    def reconfigured(self, **changes: Any) -> Executor:
        """A new executor with the same wiring and some options changed (this one's stay as
        they were); it keeps what ``verify`` established, so the checks are not read twice."""
        other = replace(self, config=replace(self.config, **changes))
        other._rechecked = self._rechecked
        return other

    # -- entry points ---------------------------------------------------------------------
    def verify(self, *, to_apply: bool = False, strict: bool = True, surges: bool = True) -> None:
        """Refuse (to apply) a plan with blocking findings; then an identity without the
        permissions the run needs, a plan for another cluster, or (``strict``: a new run) one
        the cluster outgrew, or whose blocking preflight checks fail on the cluster as it is
        now; then (``surges``: apply, resume, rollback) a Deployment whose surge record cannot
        be read. Resume, rollback and finalize are not strict: nodes removed or added since the
        plan are reconciled with the journal (``migrate.reconcile``), and nothing found live
        is a reason to refuse finishing or putting back what a run started."""
        if to_apply and self.plan.blocking:
            checks = ", ".join(sorted({f.check for f in self.plan.blocking}))
            raise PreflightBlocked(f"plan {self.plan.id} has blocking findings ({checks}); fix them and plan again")
        self._check_permissions()
        if not (to_apply and strict) or self._rechecked or not self._starts_new_run():
            admission.verify_plan(self.plan, self.cluster, strict=strict)
        else:
            admission.same_cluster(self.plan, self.cluster.identity())
            inv = self.cluster.inventory()  # one read: the node set and the checks
            admission.same_nodes(self.plan, inv.nodes)
            # Once per executor: the CLI verifies before asking for confirmation, apply verifies again.
            admission.recheck(self.plan, inv)
            self._rechecked = True
        if surges:
            refuse_unreadable(self.cluster.surged_deployments())

    def _starts_new_run(self) -> bool:
        """Whether apply would start a new run: not continue or re-apply a run of the journal,
        nor refuse for one. Decided without writing, as ``apply`` decides it."""
        existing = self.store.load()
        if existing is not None and existing.status is RunStatus.RUNNING:
            return False  # another executor's run, or a killed one's: the lock has the say
        try:
            return admission.admit(self.plan, existing, resume=False) is None
        except BadInput:
            return False  # apply refuses it (RunConflict), after the checks that come first

    def _check_permissions(self) -> None:
        """Refuse, before any write, an identity that could not finish the run."""
        missing = self.cluster.missing_permissions(traffic.PERMISSIONS if self.config.traffic_watch else ())
        if missing:
            raise BadInput(
                f"this identity lacks {len(missing)} permission(s) the run needs ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}); bind the ClusterRole in deploy/rbac.yaml, nothing was changed"
            )

    def apply(self, *, resume: bool = False) -> RunState:
        self.verify(to_apply=True, strict=not resume)
        installer = self.config.cilium_installer
        # Refuse what is bound to be refused before taking the lock: on a real cluster the
        # lock is a Lease, and bad input must not write anything. A run recorded as running
        # may be another executor's at work: for that one the lock has the say.
        existing = self.store.load()
        running = existing is not None and existing.status is RunStatus.RUNNING
        admitted = None if running else admission.admit(self.plan, existing, resume)
        install = False
        cut_short = existing is not None and existing.plan_id == self.plan.id and existing.cut_short(INSTALL_CILIUM)
        completed = admitted is not None and admitted.status is RunStatus.COMPLETED
        if cut_short and installer:
            install = True  # this run's own install was cut short: finish it, whatever it left
        elif not completed:
            install = check_cilium(self.plan, self.cluster, may_install=installer is not None)
        with self._held():
            # Before the journal is opened: a refusing hook leaves it as it was (no new run
            # recorded as running, an interrupted one still interrupted).
            failures = self.config.hooks(HookContext("pre-run", self.plan.id))
            if failures:
                raise PreflightBlocked(f"pre-run hook failed, nothing was changed: {failures[0]}")
            run = self._open(resume)
            # A completed run is complete only if the cluster agrees: each migrated node's
            # CNI configuration is read again (a node put back on Calico by hand is migrated again).
            state = self._reconcile(run, verify_migrated=completed)
            if state.status is RunStatus.COMPLETED and all(r.state in DONE for r in state.nodes.values()):
                return state
            if completed and not install:
                install = check_cilium(self.plan, self.cluster, may_install=installer is not None)
            self._restore_surges(run)
            if resume:
                # Only now, holding the lock: probe and node-task pods of the killed run.
                self.cluster.cleanup_helper_pods()
            prepare = Prepare(run)
            if install or (installer and state.cut_short(INSTALL_CILIUM)):
                prepare.install_cilium(self._runner(run, None))
            watch = None
            if self.config.traffic_watch:
                watch = prepare.start_traffic()
            elif resume:
                prepare.remove_traffic(None, leftover=True)  # a killed run's watch, not asked for this time
            try:
                return Waves(run, self._runner(run, watch)).forward()
            finally:
                if self.config.traffic_watch:
                    prepare.remove_traffic(watch)

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
        # Refuse before the lock, as apply does.
        admission.rollback_journal(self.plan, self.store.load(), self._live(), named=named)
        with self._held():
            existing = self.store.load()
            live = self._live()
            state = admission.rollback_journal(self.plan, existing, live, named=named)
            fresh = existing is None or existing.plan_id != self.plan.id
            chosen = [n for n in nodes if reconcile.present(self.plan, live, n)]
            if nodes:
                # Named by the operator: look at the node's CNI configuration where the journal
                # and the label both say Calico, so a node that is on Cilium is never left so.
                unsure = [n for n in chosen if not live[n].labelled and not _under_way(state, n)]
                live = self._read_cni(live, unsure)
                if fresh and not any(reconcile.off_calico(live[n]) for n in chosen):
                    raise BadInput(
                        f"plan {self.plan.id} was never applied to this cluster and {', '.join(nodes)} "
                        f"{'is' if len(nodes) == 1 else 'are'} on Calico (CNI configuration read): nothing to roll back"
                    )
            else:
                chosen = reconcile.rollback_candidates(self.plan, state, live)
            if fresh:
                if existing is not None:
                    self.store.archive()  # another plan's finished run
                self.store.save(state)
            run = self._begin(state)
            Prepare(run).remove_traffic(None, leftover=True)  # a killed apply's watch
            self._restore_surges(run)
            for name in self._gone(run, live):
                self._report(Event("node-state", self.plan.id, node=name, outcome="gone", message=reconcile.GONE))
            order = [n for n in reversed(self.plan.nodes) if n.name in chosen]
            run.set_status(RunStatus.RUNNING)
            self._report(Event("run-started", self.plan.id, phase="rollback"))
            back = Pipelines(run, self._runner(run, None))
            for node in order:
                record = run.state.nodes[node.name]
                if not _under_way(run.state, node.name) and not reconcile.off_calico(live[node.name]):
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
                back.put_back(node, MANUAL if record.state is not NodeState.ROLLING_BACK else record.reason)
            left = [n for n, r in run.state.nodes.items() if r.state in (NodeState.MIGRATED, NodeState.IN_PROGRESS)]
            state = run.set_status(RunStatus.INTERRUPTED if left else RunStatus.ROLLED_BACK)
            self._report(Event("run-finished", self.plan.id, phase="rollback", outcome=state.status.value))
            return state

    # -- the run ------------------------------------------------------------------------------
    @contextmanager
    def _held(self) -> Iterator[None]:
        """The executor lock, held for the run. A lost Lease ends the run with nothing more
        written (its journal stays as last saved, resumable): only the report says how."""
        try:
            with self.lock.hold():
                yield
        except LeaseLost as exc:
            self._report(Event("run-finished", self.plan.id, outcome="interrupted", message=exc.message))
            raise

    def _open(self, resume: bool) -> Run:
        """The journal of this run: the admitted one, or a new one (archiving any other)."""
        existing = self.store.load()
        admitted = admission.admit(self.plan, existing, resume)
        if admitted is not None:
            return self._begin(admitted)
        if existing is not None:
            self.store.archive()
        state = RunState.new(self.plan)
        self.store.save(state)
        return self._begin(state)

    def _begin(self, state: RunState) -> Run:
        return Run(
            plan=self.plan,
            config=self.config,
            cluster=self.cluster,
            clock=self.clock,
            stop=self.stop,
            journal=GroupCommit(self.store, state),
            report=self._report,
        )

    def _runner(self, run: Run, watch: traffic.TrafficWatch | None) -> StepRunner:
        """The step runner of this run; ``watch``: the traffic watch each validation reads."""
        config = self.config
        context = StepContext(
            cluster=self.cluster,
            options=self.plan.options,
            clock=self.clock,
            stop=self.stop,
            emit=self._report,
            plan_id=self.plan.id,
            agent_timeout=config.agent_timeout,
            probe_timeout=config.probe_timeout,
            probe_retry_gap=config.probe_retry_gap,
            hooks=config.hooks,
            traffic=watch,
            surges=frozenset(key for node in self.plan.nodes for key in node.surge),
            handoffs=handoff.merged([h for node in self.plan.nodes for h in node.handoff]),
            started=run.started_at,
            wave_of={n.name: w.index for w in self.plan.waves for n in w.nodes}.get,
        )
        return StepRunner(run, self._steps, context)

    def _report(self, event: Event) -> None:
        """The one way events leave the executor: the sinks see one event at a time, also
        when the nodes of a wave report from their threads."""
        with self._report_lock:
            self.emit(event)

    def _restore_surges(self, run: Run) -> None:
        """A surge a killed run left (a Deployment above its count, its record on it): put
        back before the run decides anything; a run that cannot stops, resumably. Every
        one, this plan's too: its node's drain may come waves after another node's drain
        finds the surged replacement, which would wait for the record to go."""
        try:
            restore_all(self.cluster, self._report, self.plan.id)
        except ClusterError as exc:
            run.set_status(RunStatus.INTERRUPTED)
            raise Interrupted(f"cannot put back a surged Deployment before the run: {exc.message}") from exc
        # Likewise a pod a killed run took out of its UDP Services: replaced already, deleted.
        try:
            handoff.finish_all(self.cluster, self._report, self.plan.id)
        except ClusterError as exc:
            run.set_status(RunStatus.INTERRUPTED)
            raise Interrupted(f"cannot finish a cut-short hand-off before the run: {exc.message}") from exc

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

    def _gone(self, run: Run, live: dict[str, reconcile.LiveNode]) -> list[str]:
        """Plan nodes no longer in the cluster; recorded as gone in the journal."""
        gone = [n.name for n in self.plan.nodes if not reconcile.present(self.plan, live, n.name)]
        for name in gone:
            if run.state.nodes[name].state is not NodeState.GONE:
                run.node_state(name, NodeState.GONE, message=reconcile.GONE)
        return gone

    def _reconcile(self, run: Run, *, verify_migrated: bool = False) -> RunState:
        """Before the forward run decides anything: the journal made to match the cluster
        (``migrate.reconcile.drift``), each change recorded and reported."""
        live = self._live()
        try:
            names = reconcile.needs_cni(self.plan, run.state, live, verify_migrated=verify_migrated)
            live = self._read_cni(live, names)
        except ClusterError as exc:
            run.set_status(RunStatus.INTERRUPTED)
            raise Interrupted(f"cannot read a node's CNI configuration before the run: {exc.message}") from exc
        for change in reconcile.drift(self.plan, run.state, live):
            run.node_state(change.node, change.to, message=change.message)
            self._report(
                Event(
                    "reconciled",
                    self.plan.id,
                    node=change.node,
                    outcome=change.to.value,
                    message=f"{change.node}: {change.message} (journal: {change.journal.value})",
                )
            )
        return run.state


def _under_way(state: RunState, name: str) -> bool:
    return state.nodes[name].state in (NodeState.MIGRATED, NodeState.IN_PROGRESS, NodeState.ROLLING_BACK)
