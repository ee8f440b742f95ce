"""Wiring adapters to the engine: the backend a plan or the flags name (each backend builds
its own ``Backend``), the operator's hooks, what installs Cilium, and the ``Executor`` —
built, and for apply and resume configured, in one place (``executor_for`` and
``executor_for_run``)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

from migrate import failpoints, output
from migrate.backends import simbundle
from migrate.backends.bundle import Backend, CiliumTools
from migrate.checkpoints import AllLocks
from migrate.checkpoints.local import FileLock, LocalStore, run_dir
from migrate.cilium import INSTALL_CILIUM
from migrate.cli.app import ask, home
from migrate.cli.gates import chain, guided_gate, node_gate, window_gate
from migrate.cli.options import LogFormat, RunOptions
from migrate.errors import BadInput
from migrate.executor import Executor, RunConfig
from migrate.hooks import DEFAULT_DIR as DEFAULT_HOOKS_DIR
from migrate.hooks import HookRunner
from migrate.hooks import failed as failed_hooks
from migrate.plan import Plan, Target
from migrate.ports import CheckpointStore, Event, ExecutorLock, HookCaller, HookContext, StopFlag, SystemClock


# -- the backend --------------------------------------------------------------------------------
def connect(target: Target, kubeconfig: str | None = None, context: str | None = None, **images: str | None) -> Backend:
    """The plan's cluster; ``images`` (probe_image, node_image) override the helper pods'
    images on Kubernetes, e.g. with a mirror in an air-gapped registry."""
    if target.backend == "sim":
        return simbundle.backend(home(), target.name)
    if target.backend == "kubernetes":
        # Imported when needed: the official client is slow to import, and most commands
        # (every one on a simulated cluster) never use it.
        from migrate.backends.kubernetes.bundle import backend

        return backend(kubeconfig, context or target.name, **images)
    raise BadInput(f"plan names an unknown backend {target.backend!r}")


def choose_target(sim: str | None, kubeconfig: str | None, context: str | None) -> Backend:
    """The cluster the flags name, for the commands that start from one (plan, policy-report)."""
    for flag, value in (("--sim", sim), ("--kubeconfig", kubeconfig), ("--context", context)):
        if value is not None and not value.strip():
            raise BadInput(f"{flag} is empty")
    if sim and (kubeconfig or context):
        raise BadInput("--sim cannot be combined with --kubeconfig/--context")
    if sim:
        return simbundle.backend(home(), sim)
    from migrate.backends.kubernetes.bundle import backend

    return backend(kubeconfig, context)


def hook_caller(hooks_dir: Path | None, timeout: float) -> HookCaller:
    """Validate the hooks directory now (before any cluster write) and adapt its runner. A
    directory the operator named must exist (a typo must not run the window without its
    checks); the default ``hooks/`` may be absent."""
    if timeout <= 0:
        raise BadInput("--hook-timeout must be positive")
    runner = HookRunner(hooks_dir or DEFAULT_HOOKS_DIR, timeout_seconds=timeout, must_exist=hooks_dir is not None)

    def call(context: HookContext) -> list[str]:
        return [r.summary for r in failed_hooks(runner.run(context.point, context.to_record()))]

    return call


def cilium_tools(the_plan: Plan, backend: Backend, helm: str | None) -> CiliumTools | None:
    """What installs Cilium for a plan made with --install-cilium, as the backend provides it
    (Helm aimed at the run's cluster and context; a one-line error when Helm is missing);
    None for a plan made without it."""
    o = the_plan.options
    if not o.install_cilium_chart:
        if helm:
            raise BadInput(f"--helm is for plans made with --install-cilium; plan {the_plan.id} was not")
        return None
    return backend.cilium(helm, o.install_cilium_chart, o.install_cilium_version)


# -- the executor: built and configured here, nowhere else --------------------------------------
@contextmanager
def executor_for(
    plan: Plan,
    backend: Backend,
    log_format: LogFormat,
    console: output.Console,
    config: RunConfig | None = None,
) -> Iterator[Executor]:
    """The executor of one command, wired to its stores, locks and sinks, run as ``config``
    says (with the backend's probe retry gap). On leaving, the
    node Events still queued are sent, then the audit log gets the command's API requests
    by client method (where the backend counts them), unless the command was refused
    before it logged anything: a refused command leaves the audit log as it found it."""
    cluster = backend.cluster
    directory = run_dir(home(), plan.cluster.fingerprint)
    store = LocalStore(directory)
    store.check_writable()
    audit = output.configure_logging(directory / "audit.jsonl", log_format is LogFormat.json)
    node_events = output.NodeEvents(cluster)
    logged = False

    def note(_: Event) -> None:
        nonlocal logged
        logged = True

    emit = output.fan_out(note, audit, console, node_events)
    stop = StopFlag()
    console.on_closed = lambda: stop.set("the standard output was closed")
    lock: ExecutorLock = FileLock(directory)
    journal: CheckpointStore = backend.journal(plan.cluster.fingerprint, store)
    if backend.lease is not None:
        # On a real cluster the Lease is what keeps executors on other machines out.
        # The holder names this machine and state home, not the process: the local flock
        # already keeps a second process of this home out, so a resume right after a
        # kill -9 of the holder may take the Lease at once instead of waiting for expiry.
        lease_lock = backend.lease(f"{socket.gethostname()}:{hashlib.sha256(str(home()).encode()).hexdigest()[:10]}")
        lease_lock.on_lost = lambda why: stop.set(f"lost the executor lease: {why}")
        lock = AllLocks(lock, lease_lock)
    executor = Executor(
        plan=plan,
        cluster=cluster,
        store=failpoints.wrap(journal),
        lock=lock,
        clock=SystemClock(),
        emit=emit,
        stop=stop,
        config=replace(config or RunConfig(), probe_retry_gap=backend.probe_retry_gap),
    )
    try:
        yield executor
    finally:
        node_events.close()
        if node_events.dropped:
            executor.emit(Event("node-events-dropped", plan.id, message=f"{node_events.dropped} node Events not sent"))
        calls = backend.stats.calls if backend.stats is not None else None
        if calls and logged:
            tally = ", ".join(f"{name} {n}" for name, n in calls.most_common())
            executor.emit(Event("api-requests", plan.id, message=tally))


@contextmanager
def executor_for_run(
    the_plan: Plan,
    backend: Backend,
    opts: RunOptions,
    console: output.Console,
    hooks: HookCaller,
    *,
    resume: bool,
    end: datetime | None,
    soak: float,
    clock: SystemClock,
) -> Iterator[Executor]:
    """``executor_for`` configured for apply or resume: the gates (window end, guided
    questions), the canary pause, the soak, the traffic watch; then the plan verified
    against the cluster, and what installs Cilium if this run has still to install it."""
    asker = partial(ask, console)
    config = RunConfig(
        wave_gate=chain(
            window_gate(the_plan, end, clock, console.print) if end else None,
            guided_gate(asker, console.print, the_plan) if opts.guided else None,
        ),
        node_gate=node_gate(asker, console.print) if opts.confirm_each_node else None,
        pause_after_canary=opts.pause_after_canary,
        soak_seconds=soak,
        hooks=hooks,
        traffic_watch=opts.traffic_watch,
        max_probe_failures=RunConfig.max_probe_failures if opts.max_probe_failures is None else opts.max_probe_failures,
    )
    with executor_for(the_plan, backend, opts.log_format, console, config) as executor:
        executor.verify(to_apply=True, strict=not resume)  # first: an identity without the rights is told so
        # Helm is needed until this run's install has succeeded, not on every later resume.
        state = executor.store.load()
        installed = state is not None and state.plan_id == the_plan.id and state.done(INSTALL_CILIUM)
        tools = None if installed else cilium_tools(the_plan, backend, opts.helm)
        if tools is not None:
            executor = executor.reconfigured(cilium_installer=tools.install)
        yield executor
