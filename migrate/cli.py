"""The command line: parse, wire adapters to the engine, map errors to exit codes.

No migration logic lives here. Exit codes: 0 done, 1 unexpected, 2 bad input, 3 blocked
by preflight, 4 validation failed (node rolled back), 5 interrupted (resumable), 6 a step
failed (node put back). ``--debug`` shows tracebacks; otherwise one line on stderr.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from migrate import failpoints, fileio, output, planfile, policy, reconcile, traffic
from migrate.backends import simworld
from migrate.backends.simulated import SimStore, SimulatedCluster, parse_validation_failure
from migrate.checkpoints import AllLocks
from migrate.checkpoints.local import FileLock, LocalStore, run_dir
from migrate.cilium import INSTALL_CILIUM, final_values, migration_values, site_values
from migrate.errors import BadInput, ClusterError, Interrupted, MigrateError, PreflightBlocked, exit_code
from migrate.executor import CONTINUE, Executor, GateAnswer, NodeGate, WaveGate, skippable, verify_plan
from migrate.finalize import Finalizer
from migrate.helm import CILIUM_CHART, CILIUM_VERSION, HelmInstaller, chart_reference
from migrate.hooks import DEFAULT_DIR as DEFAULT_HOOKS_DIR
from migrate.hooks import HookRunner
from migrate.hooks import failed as failed_hooks
from migrate.journal import NodeState, RunState
from migrate.plan import NodePlan, Plan, PlanOptions, Target, Wave
from migrate.planner import build_plan
from migrate.ports import CheckpointStore, Cluster, Event, ExecutorLock, HookCaller, StopFlag, SystemClock, no_hooks
from migrate.runbook import estimate, render_runbook
from migrate.window import announce, duration, parse_duration, parse_window_end, remaining, wave_fits

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Move a live Kubernetes cluster from Calico to Cilium, node by node.",
)
sim_app = typer.Typer(no_args_is_help=True, help="Simulated clusters (no Kubernetes needed).")
app.add_typer(sim_app, name="sim")

DEBUG = {"on": False}
# Set by the console entry point: the process is cni-migrate's own, not a test's or a caller's.
PROCESS = {"own": False}


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class LogFormat(StrEnum):
    console = "console"
    json = "json"


def home() -> Path:
    if os.environ.get("CNI_MIGRATE_HOME"):
        return Path(os.environ["CNI_MIGRATE_HOME"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cni-migrate"


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    DEBUG["on"] = debug


def run_cli(fn: Callable[[], int | None]) -> None:
    """Run a command body; turn errors into one stderr line and an exit code."""
    try:
        code = fn() or 0
    except MigrateError as exc:
        if DEBUG["on"]:
            raise
        message = exc.message
        if isinstance(exc, Interrupted) and "resume" not in message:
            message += "; the journal is resumable: continue with 'cni-migrate resume'"
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted; the journal is resumable with 'cni-migrate resume'", err=True)
        raise typer.Exit(Interrupted.exit_code) from None
    except BrokenPipeError:
        # The reader of our output left (``| head``) after the command's work was done, or
        # before a command that only reads: nothing is left half-done; say so once.
        output.discard_stdout()
        typer.echo("error: the standard output was closed before all output was written", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


# -- wiring -----------------------------------------------------------------------------------
def connect(target: Target, kubeconfig: str | None = None, context: str | None = None, **images: str | None) -> Cluster:
    """The plan's cluster; ``images`` (probe_image, node_image) override the helper pods'
    images on Kubernetes, e.g. with a mirror in an air-gapped registry."""
    if target.backend == "sim":
        return SimStore(home()).open(target.name)
    if target.backend == "kubernetes":
        from migrate.backends.kubernetes import KubernetesCluster

        chosen = {k: v for k, v in images.items() if v}
        return KubernetesCluster.connect(kubeconfig=kubeconfig, context=context or target.name, **chosen)
    raise BadInput(f"plan names an unknown backend {target.backend!r}")


def choose_target(sim: str | None, kubeconfig: str | None, context: str | None) -> tuple[Target, Cluster]:
    for flag, value in (("--sim", sim), ("--kubeconfig", kubeconfig), ("--context", context)):
        if value is not None and not value.strip():
            raise BadInput(f"{flag} is empty")
    if sim and (kubeconfig or context):
        raise BadInput("--sim cannot be combined with --kubeconfig/--context")
    if sim:
        cluster = SimStore(home()).open(sim)
        return Target("sim", sim, f"sim://{sim}"), cluster
    from migrate.backends.kubernetes import KubernetesCluster

    kube = KubernetesCluster.connect(kubeconfig=kubeconfig, context=context)
    return Target("kubernetes", kube.context_name, kube.server), kube


def load_plan(path: Path) -> Plan:
    return planfile.read(path)


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """First SIGINT/SIGTERM/SIGHUP (the operator's terminal or SSH session went away):
    finish the step, checkpoint, exit 5. Second: stop at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set(f"received {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        # Once asked to stop, or once the run has ended in cni-migrate's own process, the
        # journal is saved and the process is on its way out: a further Ctrl-C must not turn
        # the clean exit into a traceback, or, once the interpreter has begun to shut down and
        # put back the default handlers, into death by signal with the exit code lost.
        done = stop.is_set() or PROCESS["own"]
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if done else h)


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput("no terminal to confirm on: pass --yes to run non-interactively")
    if not typer.confirm(question, default=False):
        raise BadInput("not confirmed; nothing was changed")


def hook_caller(hooks_dir: Path | None, timeout: float) -> HookCaller:
    """Validate the hooks directory now (before any cluster write) and adapt its runner. A
    directory the operator named must exist (a typo must not run the window without its
    checks); the default ``hooks/`` may be absent."""
    if timeout <= 0:
        raise BadInput("--hook-timeout must be positive")
    runner = HookRunner(hooks_dir or DEFAULT_HOOKS_DIR, timeout_seconds=timeout, must_exist=hooks_dir is not None)

    def call(point: str, context: dict[str, Any]) -> list[str]:
        return [r.summary for r in failed_hooks(runner.run(point, context))]

    return call


@contextmanager
def executor_for(
    plan: Plan,
    cluster: Cluster,
    log_format: LogFormat,
    console: output.Console,
    hooks: HookCaller = no_hooks,
) -> Iterator[Executor]:
    """The executor of one command, wired to its stores, locks and sinks. On leaving, the
    node Events still queued are sent, then the audit log gets the command's API requests
    by client method (the Kubernetes backend counts them), unless the command was refused
    before it logged anything: a refused command leaves the audit log as it found it."""
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
    journal: CheckpointStore = store
    lease = getattr(cluster, "lease", None)
    if lease is not None:
        from migrate.backends.kubernetes.journal import ConfigMapStore, Mirrored

        # The journal lives in the cluster too, so another machine can take over and resume.
        journal = Mirrored(ConfigMapStore(cluster, plan.cluster.fingerprint), store)
        # On a real cluster the Lease is what keeps executors on other machines out.
        # The holder names this machine and state home, not the process: the local flock
        # already keeps a second process of this home out, so a resume right after a
        # kill -9 of the holder may take the Lease at once instead of waiting for expiry.
        lease_lock = lease(holder=f"{socket.gethostname()}:{hashlib.sha256(str(home()).encode()).hexdigest()[:10]}")
        lease_lock.on_lost = lambda why: stop.set(f"lost the executor lease: {why}")
        lock = AllLocks(lock, lease_lock)
    executor = Executor(
        plan=plan,
        cluster=cluster,
        store=failpoints.wrap(journal),
        lock=lock,
        clock=SystemClock(),
        emit=emit,
        hooks=hooks,
        stop=stop,
        # A simulated node has nothing to settle: its checks fail or pass at once.
        probe_retry_gap=0.0 if plan.target.backend == "sim" else 5.0,
    )
    try:
        yield executor
    finally:
        node_events.close()
        if node_events.dropped:
            executor.emit(Event("node-events-dropped", plan.id, message=f"{node_events.dropped} node Events not sent"))
        calls = getattr(cluster, "calls", None)
        if calls and logged:
            tally = ", ".join(f"{name} {n}" for name, n in calls.most_common())
            executor.emit(Event("api-requests", plan.id, message=tally))


# -- sim --------------------------------------------------------------------------------------
@sim_app.command("create")
def sim_create(
    name: str,
    nodes: Annotated[int, typer.Option(help="Nodes in all: 1 control-plane + N-1 workers.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed for UIDs and kernel versions.")] = 0,
    fail_validation_on: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fail-validation-on",
            help="NODE, NODE:CHECK, or NODE:CHECK:TIMES (fails that often, then passes) whose validation fails.",
        ),
    ] = None,
    latency: Annotated[float, typer.Option(help="Seconds each API call takes.")] = 0.0,
    without_cilium: Annotated[
        bool, typer.Option(help="No Cilium installed yet (plan with --install-cilium to have apply install it).")
    ] = False,
) -> None:
    def body() -> None:
        if nodes < 2:
            raise BadInput("--nodes must be at least 2 (1 control-plane + 1 worker)")
        if latency < 0:
            raise BadInput("--latency must not be negative")
        world = simworld.default_world(name, nodes=nodes, seed=seed, latency=latency)
        failures: dict[str, list[str]] = {}
        for spec in fail_validation_on or []:
            node, check = parse_validation_failure(spec)
            if node not in world["nodes"]:
                raise BadInput(f"--fail-validation-on names unknown node {node!r}")
            failures.setdefault(node, []).append(check)
        world["failValidation"] = failures
        if without_cilium:
            world["cilium"].update(installed=False, migrationMode=False)
        SimStore(home()).create(name, world)
        cilium = "no Cilium" if without_cilium else "Cilium in migration mode beside it"
        typer.echo(f"created simulated cluster {name}: {nodes} nodes on Calico, {cilium}")

    run_cli(body)


@sim_app.command("show")
def sim_show(name: str, o: Annotated[Format, typer.Option("-o", "--output")] = Format.table) -> None:
    def body() -> None:
        world = SimStore(home()).open(name).world()
        nodes = []
        for node_name, n in sorted(world["nodes"].items()):
            pods = sorted(f"{p['namespace']}/{p['name']}" for p in world["pods"].values() if p["node"] == node_name)
            nodes.append(
                {
                    "name": node_name,
                    "cni": simworld.node_cni(world, node_name),
                    "unschedulable": n["unschedulable"],
                    "labels": n["labels"],
                    "pods": pods,
                }
            )
        if o is Format.table:
            rows = [(n["name"], n["cni"], "yes" if n["unschedulable"] else "no", len(n["pods"])) for n in nodes]
            typer.echo(output.table(("node", "cni", "cordoned", "pods"), rows))
        else:
            typer.echo(output.render({"nodes": nodes}, o.value))

    run_cli(body)


@sim_app.command("delete")
def sim_delete(name: str) -> None:
    def body() -> None:
        SimStore(home()).delete(name)
        typer.echo(f"deleted simulated cluster {name}")

    run_cli(body)


@sim_app.command("list")
def sim_list() -> None:
    def body() -> None:
        typer.echo("\n".join(SimStore(home()).names()) or "no simulated clusters")

    run_cli(body)


def values_path(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".cilium-values.yaml")


def write_plan(the_plan: Plan, path: Path) -> None:
    """The plan file and, next to it, the Helm values that install Cilium in migration mode."""
    fileio.check_target(path, "plan file")  # before its name is used for the values file's
    fileio.check_target(values_path(path), "Cilium values file")  # both or neither
    planfile.write(the_plan, path)
    fileio.write_text(
        values_path(path), output.render(migration_values(the_plan.options), "yaml"), "Cilium values file"
    )


# -- plan -------------------------------------------------------------------------------------
@app.command()
def plan(
    sim: Annotated[Optional[str], typer.Option(help="Plan for this simulated cluster.")] = None,
    kubeconfig: Annotated[Optional[str], typer.Option(help="Path to a kubeconfig (else $KUBECONFIG).")] = None,
    context: Annotated[Optional[str], typer.Option(help="kubeconfig context (else the current one).")] = None,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Plan file to write.")] = None,
    max_unavailable: Annotated[int, typer.Option(help="Nodes migrated at once after the canary.")] = 1,
    canary: Annotated[int, typer.Option(help="Workers in the first, canary wave.")] = 1,
    drain_timeout: Annotated[int, typer.Option(help="Seconds a drain may wait for PDBs.")] = 300,
    force: Annotated[bool, typer.Option(help="Evict pods no controller re-creates.")] = False,
    delete_emptydir_data: Annotated[bool, typer.Option(help="Evict pods with emptyDir data.")] = False,
    exclude_node: Annotated[Optional[list[str]], typer.Option(help="Leave this node out.")] = None,
    cilium_pool_cidr: Annotated[str, typer.Option(help="Cilium cluster-pool CIDR.")] = "10.245.0.0/16",
    reboot_nodes: Annotated[
        bool, typer.Option(help="Reboot each node after its CNI swap (and rollback), not only restart its pods.")
    ] = False,
    install_cilium: Annotated[
        bool, typer.Option(help="apply installs Cilium in migration mode with Helm first (where none runs).")
    ] = False,
    cilium_chart: Annotated[
        str, typer.Option(help="With --install-cilium: a chart in helm.cilium.io, a local chart, or oci://.")
    ] = CILIUM_CHART,
    cilium_version: Annotated[str, typer.Option(help="With --install-cilium: the chart version.")] = CILIUM_VERSION,
    cilium_values: Annotated[
        Optional[Path],
        typer.Option(
            help="With --install-cilium: your own Helm values (image mirrors, resources...) under cni-migrate's; "
            "recorded in the plan."
        ),
    ] = None,
    node_parallelism: Annotated[
        int,
        typer.Option(
            help="Nodes of a wave drained, swapped and validated at once (0: the whole wave; 1: one after another)."
        ),
    ] = 0,
) -> None:
    """Dry run: inspect the cluster, run preflight checks, write a reviewable plan file."""

    def body() -> int:
        options = PlanOptions(
            max_unavailable=max_unavailable,
            canary=canary,
            drain_timeout_seconds=drain_timeout,
            force=force,
            delete_emptydir_data=delete_emptydir_data,
            exclude_nodes=tuple(exclude_node or ()),
            cilium_pool_cidr=cilium_pool_cidr,
            reboot=reboot_nodes,
            node_parallelism=node_parallelism,
            **dict(
                zip(
                    ("install_cilium_chart", "install_cilium_version"),
                    chart_reference(cilium_chart, cilium_version) if install_cilium else ("", ""),
                    strict=True,
                )
            ),
            install_cilium_values=read_site_values(cilium_values, install_cilium),
        )
        target, cluster = choose_target(sim, kubeconfig, context)
        result = build_plan(cluster.inventory(), options, target)
        path = out or Path("plans") / f"{target.name}.yaml"
        write_plan(result, path)
        typer.echo(output.plan_summary(result, path))
        typer.echo(f"  Cilium Helm values for migration mode: {values_path(path)}")
        return 3 if result.blocking else 0

    run_cli(body)


# -- apply / resume / rollback ------------------------------------------------------------------
def window_gate(plan: Plan, end: datetime, clock: SystemClock, say: Callable[[str], None]) -> WaveGate:
    """Stop at a wave boundary when the next wave would not finish before the window ends."""
    per_node = float(max(estimate(plan).nodes.values(), default=0))

    def gate(wave: Wave, state: RunState) -> None:
        todo = [n for n in wave.nodes if state.nodes[n.name].state.value != "migrated"]
        fits, needed = wave_fits(clock.now(), end, len(todo), state, per_node)
        if fits:
            return
        left = remaining(state)
        per = needed / max(len(todo), 1)
        raise Interrupted(
            f"the window ends at {end.isoformat(timespec='minutes')}: wave {wave.index} needs about "
            f"{duration(int(needed))}; stopped before it with {left} node(s) left (about "
            f"{duration(int(per * left))}); continue with 'cni-migrate resume' in the next window"
        )

    return gate


def choose(choices: dict[str, str]) -> str:
    """Ask one question; each choice is answered by its first letter; ask again on anything else."""
    prompt = ", ".join(f"[{key}]{label[1:]}" for key, label in choices.items())
    while True:
        answer = typer.prompt(prompt, default=next(iter(choices))).strip().lower()[:1]
        if answer in choices:
            return answer
        typer.echo(f"  please answer one of: {', '.join(choices)}")


def stop_if_asked(choice: str, where: str) -> None:
    if choice == "p":
        raise Interrupted(f"paused {where}; continue with 'cni-migrate resume'")
    if choice == "a":
        raise Interrupted(f"aborted {where}; 'cni-migrate rollback' undoes what was done")


def guided_gate(say: Callable[[str], None], plan: Plan) -> WaveGate:
    """Before each wave: continue, skip a node, pause (resumable), roll back the last
    migrated wave, or abort."""

    def gate(wave: Wave, state: RunState) -> GateAnswer | None:
        todo = [n.name for n in wave.nodes if state.nodes[n.name].state is not NodeState.MIGRATED]
        say(f"next: wave {wave.index}{' (canary)' if wave.canary else ''}: {', '.join(todo)}")
        say("  each node: cordon -> drain -> swap-cni -> validate -> uncordon")
        done = [
            w.index
            for w in plan.waves
            if w.index < wave.index and any(state.nodes[n.name].state is NodeState.MIGRATED for n in w.nodes)
        ]
        fresh = [n for n in todo if skippable(state, n)]
        choices = {"c": "continue"}
        if fresh:
            choices["s"] = "skip a node"
        choices["p"] = "pause (resume later)"
        if done:
            choices["r"] = f"roll back wave {done[-1]}"
        choices["a"] = "abort"
        choice = choose(choices)
        if choice == "s":
            name = typer.prompt(f"  node to skip ({', '.join(fresh)})").strip()
            if name not in fresh:
                raise Interrupted(f"{name!r} is not a node of wave {wave.index} that can be skipped; paused")
            return GateAnswer(skip=(name,))
        if choice == "r":
            return GateAnswer(rollback_wave=done[-1])
        stop_if_asked(choice, f"before wave {wave.index}")
        return None

    return gate


def node_gate(say: Callable[[str], None]) -> NodeGate:
    """With --confirm-each-node: before a node is cordoned, continue, skip it, pause or abort."""

    def gate(wave: Wave, node: NodePlan, state: RunState) -> GateAnswer | None:
        role = "control-plane node" if node.control_plane else "node"
        say(f"next: {role} {node.name} (wave {wave.index}): cordon -> drain -> swap-cni -> validate -> uncordon")
        choice = choose({"c": "continue", "s": "skip this node", "p": "pause (resume later)", "a": "abort"})
        if choice == "s":
            return GateAnswer(skip=(node.name,))
        stop_if_asked(choice, f"before {node.name}")
        return None

    return gate


def chain(*gates: WaveGate | None) -> WaveGate | None:
    """One gate asking each in turn; the first that skips, rolls back or stops wins."""
    live = [g for g in gates if g is not None]
    if not live:
        return None

    def gate(wave: Wave, state: RunState) -> GateAnswer | None:
        for g in live:
            answer = g(wave, state)
            if answer is not None and answer != CONTINUE:
                return answer
        return None

    return gate


@dataclass(frozen=True)
class RunOptions:
    """How ``apply`` and ``resume`` run a plan; the same flags for both."""

    yes: bool = False
    log_format: LogFormat = LogFormat.console
    kubeconfig: str | None = None
    context: str | None = None
    hooks_dir: Path | None = None  # None: the default hooks/, if there is one
    hook_timeout: float = 60.0
    window_end: str | None = None
    guided: bool = False
    confirm_each_node: bool = False
    pause_after_canary: bool = False
    soak: str | None = None
    probe_image: str | None = None
    node_image: str | None = None
    helm: str | None = None
    traffic_watch: bool = False
    max_probe_failures: int | None = None


def read_site_values(path: Path | None, install: bool) -> dict[str, Any]:
    if path is None:
        return {}
    if not install:
        raise BadInput("--cilium-values are values for the install: use it with --install-cilium")
    text = fileio.read_text(path, "--cilium-values", planfile.MAX_PLAN_BYTES)
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise BadInput(f"--cilium-values {path} is not valid YAML{line}") from None
    return site_values({} if values is None else values, str(path))


def cilium_installer(the_plan: Plan, cluster: Cluster, opts: RunOptions) -> Callable[[dict[str, Any]], str] | None:
    """What installs Cilium for a plan made with --install-cilium: Helm, aimed at the same
    cluster and context as the run (a one-line error when Helm is missing); the simulation's
    own stand-in on a simulated cluster."""
    o = the_plan.options
    if not o.install_cilium_chart:
        if opts.helm:
            raise BadInput(f"--helm is for plans made with --install-cilium; plan {the_plan.id} was not")
        return None
    if isinstance(cluster, SimulatedCluster):
        return cluster.install_cilium
    context = getattr(cluster, "context_name", None)
    return HelmInstaller.find(
        opts.helm,
        chart=o.install_cilium_chart,
        version=o.install_cilium_version,
        kubeconfig=opts.kubeconfig,
        context=None if context == "in-cluster" else context,
    )


def _execute(planpath: Path, resume: bool, opts: RunOptions) -> int:
    the_plan = load_plan(planpath)
    hooks = hook_caller(opts.hooks_dir, opts.hook_timeout)
    clock = SystemClock()
    end = parse_window_end(opts.window_end, clock.now()) if opts.window_end is not None else None
    soak = parse_duration(opts.soak, "--soak") if opts.soak is not None else 0.0
    if opts.max_probe_failures is not None and not opts.traffic_watch:
        raise BadInput("--max-probe-failures is a threshold of the traffic watch: use it with --traffic-watch")
    if opts.max_probe_failures is not None and opts.max_probe_failures < 0:
        raise BadInput("--max-probe-failures must not be negative")
    if opts.confirm_each_node and not opts.guided:
        raise BadInput("--confirm-each-node asks at a terminal: use it with --guided")
    if opts.guided and not sys.stdin.isatty():
        raise BadInput("--guided needs a terminal to ask on; use --yes for unattended runs")
    cluster = connect(
        the_plan.target, opts.kubeconfig, opts.context, probe_image=opts.probe_image, node_image=opts.node_image
    )
    steps = sum(len(n.steps) for n in the_plan.nodes)
    with (
        output.Console(steps, live=False if opts.guided else None) as console,
        executor_for(the_plan, cluster, opts.log_format, console, hooks) as executor,
    ):
        executor.wave_gate = chain(
            window_gate(the_plan, end, clock, console.print) if end else None,
            guided_gate(console.print, the_plan) if opts.guided else None,
        )
        executor.node_gate = node_gate(console.print) if opts.confirm_each_node else None
        executor.pause_after_canary = opts.pause_after_canary
        executor.soak_seconds = soak
        executor.traffic_watch = opts.traffic_watch
        if opts.max_probe_failures is not None:
            executor.max_probe_failures = opts.max_probe_failures
        executor.verify(to_apply=True, strict=not resume)  # first: an identity without the rights is told so
        # Helm is needed until this run's install has succeeded, not on every later resume.
        state = executor.store.load()
        installed = (
            state is not None and state.plan_id == the_plan.id and state.prepare.get(INSTALL_CILIUM) == "succeeded"
        )
        executor.cilium_installer = None if installed else cilium_installer(the_plan, cluster, opts)
        if end is not None:
            console.print(announce(end, clock.now()))
        verb = "Resume" if resume else "Apply"
        confirm(
            f"{verb} plan {the_plan.id} to {the_plan.cluster.server} "
            f"({len(the_plan.nodes)} nodes, {len(the_plan.waves)} waves)?",
            opts.yes or opts.guided,
        )
        with stop_on_signals(executor.stop):
            state = executor.apply(resume=resume)
    done = sum(1 for r in state.nodes.values() if r.state.value == "migrated")
    gone = sorted(n for n, r in state.nodes.items() if r.state.value == "gone")
    requests = getattr(cluster, "requests", None)  # the Kubernetes backend counts its API calls
    load = f" ({requests} API requests)" if requests is not None else ""
    left = f", {len(gone)} gone from the cluster ({', '.join(gone)})" if gone else ""
    typer.echo(f"plan {the_plan.id}: {done}/{len(state.nodes)} node(s) migrated{left}, run {state.status.value}{load}")
    return 0


LogOpt = Annotated[LogFormat, typer.Option("--log-format", help="Also print JSON logs to stderr.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
KubeconfigOpt = Annotated[Optional[str], typer.Option(help="Path to a kubeconfig.")]
ContextOpt = Annotated[Optional[str], typer.Option(help="kubeconfig context.")]


HooksDirOpt = Annotated[
    Optional[Path],
    typer.Option(help=f"Directory of operator hooks, which must exist (default: {DEFAULT_HOOKS_DIR}/ if present)."),
]
HookTimeoutOpt = Annotated[float, typer.Option(help="Seconds each hook may run.")]
WindowOpt = Annotated[Optional[str], typer.Option(help="End of the maintenance window (RFC 3339 or HH:MM local).")]
GuidedOpt = Annotated[
    bool, typer.Option(help="Ask before each wave: continue, skip a node, pause, roll back the last wave, or abort.")
]
EachNodeOpt = Annotated[bool, typer.Option(help="With --guided, also ask before each node.")]
CanaryPauseOpt = Annotated[bool, typer.Option(help="Stop (resumable) after the canary wave, to inspect it.")]
SoakOpt = Annotated[Optional[str], typer.Option(help="Wait this long after each wave before the next (e.g. 2m).")]
TrafficWatchOpt = Annotated[
    bool,
    typer.Option(
        help="Run a prober on every node for the run (the probe image's netexec and curl); a node whose "
        "swap and validation saw more than --max-probe-failures failed requests fails validation."
    ),
]
MaxProbeFailuresOpt = Annotated[
    Optional[int],
    typer.Option(help=f"Failed probe requests a node's window may see (default {traffic.DEFAULT_MAX_FAILURES})."),
]
ProbeImageOpt = Annotated[
    Optional[str], typer.Option(help="Image of the validation probe pods (default: the agnhost e2e image).")
]
NodeImageOpt = Annotated[
    Optional[str], typer.Option(help="Image of the node-task and DNS probe pods (default: busybox 1.36.1).")
]
HelmOpt = Annotated[
    Optional[str], typer.Option(help="The helm binary, for plans made with --install-cilium (else helm on PATH).")
]
PLANFILE = typer.Argument(metavar="PLANFILE")


@app.command()
def apply(
    planpath: Annotated[Path, PLANFILE],
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    hooks_dir: HooksDirOpt = None,
    hook_timeout: HookTimeoutOpt = 60.0,
    window_end: WindowOpt = None,
    guided: GuidedOpt = False,
    confirm_each_node: EachNodeOpt = False,
    pause_after_canary: CanaryPauseOpt = False,
    soak: SoakOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
    helm: HelmOpt = None,
    traffic_watch: TrafficWatchOpt = False,
    max_probe_failures: MaxProbeFailuresOpt = None,
) -> None:
    """Execute a reviewed plan, checkpointing every step."""
    opts = RunOptions(**{k: v for k, v in locals().items() if k != "planpath"})
    run_cli(lambda: _execute(planpath, False, opts))


@app.command()
def resume(
    planpath: Annotated[Path, PLANFILE],
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    hooks_dir: HooksDirOpt = None,
    hook_timeout: HookTimeoutOpt = 60.0,
    window_end: WindowOpt = None,
    guided: GuidedOpt = False,
    confirm_each_node: EachNodeOpt = False,
    pause_after_canary: CanaryPauseOpt = False,
    soak: SoakOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
    helm: HelmOpt = None,
    traffic_watch: TrafficWatchOpt = False,
    max_probe_failures: MaxProbeFailuresOpt = None,
) -> None:
    """Continue an interrupted or failed run from its last checkpoint."""
    opts = RunOptions(**{k: v for k, v in locals().items() if k != "planpath"})
    run_cli(lambda: _execute(planpath, True, opts))


@app.command()
def finalize(
    planpath: Annotated[Path, typer.Argument(metavar="PLANFILE")],
    remove_calico: Annotated[bool, typer.Option(help="Also remove Calico (operator or manifest install).")] = False,
    upgrade_cilium: Annotated[
        bool, typer.Option(help="Upgrade the Cilium that apply installed to the final values first (Helm).")
    ] = False,
    helm: HelmOpt = None,
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
) -> None:
    """After every node is migrated: leave migration mode (and optionally remove Calico)."""

    def body() -> int:
        the_plan = load_plan(planpath)
        if helm and not upgrade_cilium:
            raise BadInput("--helm is for --upgrade-cilium")
        if upgrade_cilium and not the_plan.options.install_cilium_chart:
            raise BadInput(
                f"--upgrade-cilium upgrades the Cilium that apply installed; plan {the_plan.id} did not install it: "
                "upgrade your release with the final values finalize writes next to the plan"
            )
        # The policy check's probe pods need the same (mirrored) images as apply's.
        cluster = connect(the_plan.target, kubeconfig, context, probe_image=probe_image, node_image=node_image)
        upgrader = None
        if upgrade_cilium:
            installer = cilium_installer(
                the_plan, cluster, RunOptions(kubeconfig=kubeconfig, context=context, helm=helm)
            )
            upgrader = installer.upgrade if isinstance(installer, HelmInstaller) else installer
        values = planpath.with_name(planpath.stem + ".cilium-final-values.yaml")
        with output.Console(0, live=False) as console, executor_for(the_plan, cluster, log_format, console) as executor:
            executor.verify(strict=False)
            what = "leave migration mode" + (" and REMOVE CALICO" if remove_calico else "")
            confirm(f"Finalize plan {the_plan.id}: {what}?", yes)
            fileio.write_text(values, output.render(final_values(the_plan.options), "yaml"), "final Cilium values")
            finalizer = Finalizer(the_plan, cluster, executor.store, executor.lock, executor.emit)
            finalizer.cilium_upgrader = upgrader
            for line in finalizer.run(remove_calico):
                typer.echo(line)
        if upgrader is None:
            typer.echo(
                f"final Cilium values: {values}; apply them with: helm upgrade cilium cilium/cilium "
                f"-n kube-system --reuse-values -f {values}, then restart the agents: "
                "kubectl -n kube-system rollout restart daemonset/cilium"
            )
        if finalizer.held_back:
            raise PreflightBlocked(finalizer.held_back)
        return 0

    run_cli(body)


@app.command()
def runbook(
    planpath: Annotated[Path, typer.Argument(metavar="PLANFILE")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the runbook here (else stdout).")] = None,
) -> None:
    """Render the change-board runbook (Markdown) for a plan: steps, commands, rollback."""

    def body() -> None:
        the_plan = load_plan(planpath)
        text = render_runbook(the_plan, str(planpath))
        if out is None:
            typer.echo(text, nl=False)
        else:
            fileio.write_text(out, text, "runbook", mode=0o644)
            typer.echo(f"runbook for plan {the_plan.id} written to {out}")

    run_cli(body)


@app.command()
def rollback(
    planpath: Annotated[Path, typer.Argument(metavar="PLANFILE")],
    node: Annotated[Optional[list[str]], typer.Option("--node", help="Only this node (repeatable).")] = None,
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
) -> None:
    """Put nodes back on Calico (default: every node the run touched), last first."""

    def body() -> int:
        the_plan = load_plan(planpath)
        # Rollback runs node tasks (restore the CNI config) and probes: an air-gapped site's
        # mirrored images must reach them as they reached apply's.
        cluster = connect(the_plan.target, kubeconfig, context, probe_image=probe_image, node_image=node_image)
        with output.Console(0, live=False) as console, executor_for(the_plan, cluster, log_format, console) as executor:
            executor.verify(strict=False)
            which = ", ".join(node) if node else "every node the run touched"
            confirm(f"Roll back {which} of plan {the_plan.id} to Calico?", yes)
            with stop_on_signals(executor.stop):
                state = executor.rollback(node or ())
        back = sorted(n for n, r in state.nodes.items() if r.state.value == "rolled-back")
        typer.echo(f"plan {the_plan.id}: rolled back {', '.join(back) or 'nothing'}; run {state.status.value}")
        return 0

    run_cli(body)


@app.command()
def status(
    planpath: Annotated[Path, typer.Argument(metavar="PLANFILE")],
    o: Annotated[Format, typer.Option("-o", "--output")] = Format.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Show the journal only; do not read the cluster.")] = False,
) -> None:
    """Per-node state of a plan's run (pending, in-progress, migrated, failed, rolled-back),
    beside each node as the cluster shows it now (read only: one node list, no write)."""

    def body() -> None:
        the_plan = load_plan(planpath)
        directory = run_dir(home(), the_plan.cluster.fingerprint)
        store = LocalStore(directory)
        state = store.load()
        archived = False
        if state is None or state.plan_id != the_plan.id:
            state = store.archived(the_plan.id)
            archived = state is not None
        view = output.LiveView() if offline else live_view(the_plan, kubeconfig, context)
        holder = FileLock(directory).holder()
        if holder:
            view = replace(view, executor=f"{holder} on this machine")
        record = output.status_record(the_plan, state, view, archived=archived)
        typer.echo(output.status_table(record) if o is Format.table else output.render(record, o.value))

    run_cli(body)


def live_view(the_plan: Plan, kubeconfig: str | None, context: str | None) -> output.LiveView:
    """The plan's cluster as it is now, for status: a read of its nodes and executor Lease.
    A cluster that cannot be read (an outage, a deleted simulation, another cluster behind
    the context) is said so beside the journal, never a reason to show nothing."""
    try:
        cluster = connect(the_plan.target, kubeconfig, context)
        verify_plan(the_plan, cluster, strict=False)
        nodes = reconcile.live_map(cluster.nodes())
        lease = getattr(cluster, "lease", None)
        holder = lease().holder_now() if lease is not None else None
    except (BadInput, ClusterError) as exc:
        return output.LiveView(error=exc.message)
    return output.LiveView(nodes=nodes, executor=holder or "")


@app.command("policy-report")
def policy_report(
    sim: Annotated[Optional[str], typer.Option(help="Simulated cluster name.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    o: Annotated[Format, typer.Option("-o", "--output")] = Format.table,
    write: Annotated[
        Optional[Path], typer.Option(help="Write each translated Cilium policy as YAML into this directory.")
    ] = None,
) -> None:
    """What happens to each network policy: kept, translated to Cilium, or untranslatable (why)."""

    def body() -> None:
        _, cluster = choose_target(sim, kubeconfig, context)
        verdicts = policy.report(cluster.network_policies())
        written = []
        if write is not None:
            if write.exists() and not write.is_dir():
                raise BadInput(f"--write {write} is not a directory")
            try:
                write.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BadInput(f"cannot create --write directory {write}: {exc.strerror}") from None
            for v in verdicts:
                if v.cilium is not None:
                    path = write / f"{v.cilium['kind'].lower()}-{v.namespace + '-' if v.namespace else ''}{v.name}.yaml"
                    fileio.write_text(path, output.render(v.cilium, "yaml"), "translated policy", mode=0o644)
                    written.append(str(path))
        if o is Format.table:
            rows = [
                (v.kind, f"{v.namespace}/{v.name}" if v.namespace else v.name, v.outcome, "; ".join(v.reasons))
                for v in verdicts
            ]
            typer.echo(output.table(("kind", "policy", "outcome", "why"), rows))
            counts = {k: sum(1 for v in verdicts if v.outcome == k) for k in ("kept", "translated", "untranslatable")}
            typer.echo(
                ", ".join(f"{n} {k}" for k, n in counts.items())
                + (f"; wrote {len(written)} file(s) to {write}" if write else "")
            )
        else:
            records = [
                {
                    "kind": v.kind,
                    "namespace": v.namespace,
                    "name": v.name,
                    "outcome": v.outcome,
                    "reasons": list(v.reasons),
                    "cilium": v.cilium,
                }
                for v in verdicts
            ]
            typer.echo(output.render({"policies": records}, o.value))

    run_cli(body)


# -- demo -------------------------------------------------------------------------------------
@app.command()
def demo(
    name: Annotated[str, typer.Option(help="Name of the simulated cluster.")] = "demo",
    nodes: Annotated[int, typer.Option(help="Nodes in all.")] = 6,
    max_unavailable: Annotated[int, typer.Option(help="Nodes at once after the canary.")] = 2,
) -> None:
    """The one-command tour: simulated cluster -> plan -> apply -> every node on Cilium."""

    def body() -> int:
        store = SimStore(home())
        if name in store.names():
            store.delete(name)
        store.create(name, simworld.default_world(name, nodes=nodes))
        typer.echo(f"== simulated cluster {name}: {nodes} nodes, Calico everywhere, Cilium in migration mode\n")
        cluster = store.open(name)
        options = PlanOptions(max_unavailable=max_unavailable, force=True, delete_emptydir_data=True)
        the_plan = build_plan(cluster.inventory(), options, Target("sim", name, f"sim://{name}"))
        path = Path("plans") / f"{name}.yaml"
        write_plan(the_plan, path)
        typer.echo("== plan (cni-migrate plan --sim demo --force --delete-emptydir-data --max-unavailable 2)")
        typer.echo(output.plan_summary(the_plan, path) + "\n")
        typer.echo(f"== apply (cni-migrate apply {path} --yes)")
        code = _execute(path, False, RunOptions(yes=True))
        world = cluster.world()
        typer.echo("\n== result")
        rows = [
            (
                n,
                simworld.node_cni(world, n),
                "yes" if world["nodes"][n]["unschedulable"] else "no",
                sum(1 for p in world["pods"].values() if p["node"] == n),
            )
            for n in sorted(world["nodes"])
        ]
        typer.echo(output.table(("node", "cni", "cordoned", "pods"), rows))
        typer.echo(f"\nnext: cni-migrate status {path}   |   cni-migrate rollback {path} --node worker-1 --yes")
        return code

    run_cli(body)


def run() -> None:
    """The console entry point. Usage errors (an unknown option, a bad value) are one line
    and exit 2, like every other bad input; Ctrl-C at a prompt is exit 5."""
    PROCESS["own"] = True
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo(
            "error: interrupted at a prompt; a started run's journal is resumable with 'cni-migrate resume'", err=True
        )
        sys.exit(Interrupted.exit_code)
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        message = getattr(exc, "format_message", None)
        if type(exc).__name__ == "NoArgsIsHelpError" or message is None:
            if show is not None:
                show()  # the help text, as typer would print it
            sys.exit(getattr(exc, "exit_code", 2))
        typer.echo(f"error: {' '.join(message().split())} (see --help)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
