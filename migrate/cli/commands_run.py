"""The commands that run a plan and look at its run: ``apply`` and ``resume`` (one body,
one set of options), ``finalize``, ``rollback`` and ``status``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from migrate import fileio, output, planfile, reconcile
from migrate.checkpoints.local import FileLock, LocalStore, run_dir
from migrate.cilium import final_values
from migrate.cli.app import confirm, home, run_cli, stop_on_signals
from migrate.cli.options import (
    ContextOpt,
    Format,
    HelmOpt,
    KubeconfigOpt,
    LogFormat,
    LogOpt,
    NodeImageOpt,
    OutputOpt,
    PlanFileArg,
    ProbeImageOpt,
    RunOptions,
    YesOpt,
    with_run_options,
)
from migrate.cli.wiring import cilium_tools, connect, executor_for, executor_for_run, hook_caller
from migrate.errors import BadInput, ClusterError, PreflightBlocked
from migrate.executor import verify_plan
from migrate.finalize import Finalizer
from migrate.plan import Plan
from migrate.ports import SystemClock
from migrate.window import announce, parse_duration, parse_window_end


def execute(planpath: Path, resume: bool, opts: RunOptions) -> int:
    """Apply (or resume) a plan: the options checked before the cluster is reached, then the
    executor run to its end, a stop or a failure."""
    the_plan = planfile.read(planpath)
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
    backend = connect(
        the_plan.target, opts.kubeconfig, opts.context, probe_image=opts.probe_image, node_image=opts.node_image
    )
    steps = sum(len(n.steps) for n in the_plan.nodes)
    with (
        output.Console(steps) as console,
        executor_for_run(
            the_plan, backend, opts, console, hooks, resume=resume, end=end, soak=soak, clock=clock
        ) as executor,
    ):
        console.done_before(output.steps_done(the_plan, executor.store.load()))
        if end is not None:
            console.print(announce(end, clock.now()))
        verb = "Resume" if resume else "Apply"
        confirm(
            f"{verb} plan {the_plan.id} to {the_plan.cluster.server} "
            f"({len(the_plan.nodes)} nodes, {len(the_plan.waves)} waves)?",
            opts.yes or opts.guided,
            console,
        )
        with stop_on_signals(executor.stop):
            state = executor.apply(resume=resume)
    requests = backend.stats.requests if backend.stats is not None else None
    typer.echo(output.run_summary(the_plan, state, requests))
    return 0


@with_run_options
def apply(planpath: Path, opts: RunOptions) -> None:
    """Run a reviewed plan, checkpointing every step."""
    run_cli(lambda: execute(planpath, False, opts))


@with_run_options
def resume(planpath: Path, opts: RunOptions) -> None:
    """Continue a stopped or failed run from its last checkpoint."""
    run_cli(lambda: execute(planpath, True, opts))


def finalize(
    planpath: PlanFileArg,
    remove_calico: Annotated[
        bool, typer.Option("--remove-calico", help="Also remove Calico (operator or manifest install).")
    ] = False,
    upgrade_cilium: Annotated[
        bool,
        typer.Option(
            "--upgrade-cilium", help="Upgrade the Cilium that apply installed to the final values first (Helm)."
        ),
    ] = False,
    helm: HelmOpt = None,
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
) -> None:
    """Leave migration mode once every node is migrated.

    Writes the final Helm values (or, with --upgrade-cilium, upgrades the release apply
    installed); once Cilium runs with them: restarts the agents, checks that Cilium enforces
    policy, deletes the per-node config and, with --remove-calico, removes Calico."""

    def body() -> int:
        the_plan = planfile.read(planpath)
        if helm and not upgrade_cilium:
            raise BadInput("--helm is for --upgrade-cilium")
        if upgrade_cilium and not the_plan.options.install_cilium_chart:
            raise BadInput(
                f"--upgrade-cilium upgrades the Cilium that apply installed; plan {the_plan.id} did not install it: "
                "upgrade your release with the final values finalize writes next to the plan"
            )
        # The policy check's probe pods need the same (mirrored) images as apply's.
        backend = connect(the_plan.target, kubeconfig, context, probe_image=probe_image, node_image=node_image)
        upgrader = None
        if upgrade_cilium:
            tools = cilium_tools(the_plan, backend, helm)
            upgrader = tools.upgrade if tools is not None else None
        values = planpath.with_name(planpath.stem + ".cilium-final-values.yaml")
        with output.Console(0, live=False) as console, executor_for(the_plan, backend, log_format, console) as executor:
            executor.verify(strict=False, surges=False)  # finalize touches no Deployment
            what = "leave migration mode" + (" and REMOVE CALICO" if remove_calico else "")
            confirm(f"Finalize plan {the_plan.id}: {what}?", yes)
            fileio.write_text(values, output.render(final_values(the_plan.options), "yaml"), "final Cilium values")
            finalizer = Finalizer(the_plan, backend.cluster, executor.store, executor.lock, executor.emit)
            finalizer.cilium_upgrader = upgrader
            for line in finalizer.run(remove_calico):
                typer.echo(line)
        if upgrader is None and finalizer.values_pending:
            typer.echo(
                f"final Cilium values: {values}; apply them with: helm upgrade cilium cilium/cilium "
                f"-n kube-system --reuse-values -f {values}, then run finalize again: it restarts the agents "
                "(kubectl -n kube-system rollout restart daemonset/cilium, one node at a time), proves policy is "
                "enforced, and only then deletes the CiliumNodeConfig (Cilium's migration guide's order)"
            )
        if finalizer.held_back:
            raise PreflightBlocked(finalizer.held_back)
        return 0

    run_cli(body)


def rollback(
    planpath: PlanFileArg,
    node: Annotated[
        Optional[list[str]], typer.Option("--node", metavar="NODE", help="Only this node (repeatable).")
    ] = None,
    yes: YesOpt = False,
    log_format: LogOpt = LogFormat.console,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    probe_image: ProbeImageOpt = None,
    node_image: NodeImageOpt = None,
) -> None:
    """Put nodes back on Calico, last migrated first.

    Default: every node the run touched; --node picks some."""

    def body() -> int:
        the_plan = planfile.read(planpath)
        # Rollback runs node tasks (restore the CNI config) and probes: an air-gapped site's
        # mirrored images must reach them as they reached apply's.
        backend = connect(the_plan.target, kubeconfig, context, probe_image=probe_image, node_image=node_image)
        with output.Console(0, live=False) as console, executor_for(the_plan, backend, log_format, console) as executor:
            executor.verify(strict=False)
            which = ", ".join(node) if node else "every node the run touched"
            confirm(f"Roll back {which} of plan {the_plan.id} to Calico?", yes)
            with stop_on_signals(executor.stop):
                state = executor.rollback(node or ())
        typer.echo(output.rollback_summary(the_plan, state))
        return 0

    run_cli(body)


def status(
    planpath: PlanFileArg,
    o: OutputOpt = Format.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Show the journal only; do not read the cluster.")] = False,
) -> None:
    """Show each node's state in a plan's run.

    Pending, in-progress, migrated, failed or rolled-back, beside each node as the cluster
    shows it now (read only: one node list, no write; --offline reads the journal only)."""

    def body() -> None:
        the_plan = planfile.read(planpath)
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
        backend = connect(the_plan.target, kubeconfig, context)
        verify_plan(the_plan, backend.cluster, strict=False)
        nodes = reconcile.live_map(backend.cluster.nodes())
        holder = backend.lease(None).holder_now() if backend.lease is not None else None
        surges = tuple(backend.cluster.surged_deployments())
        handed_off = tuple(pod for pod, _ in backend.cluster.handed_off_pods())
    except (BadInput, ClusterError) as exc:
        return output.LiveView(error=exc.message)
    return output.LiveView(nodes=nodes, executor=holder or "", surges=surges, handed_off=handed_off)
