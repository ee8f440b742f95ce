"""The commands before a run, none of which writes to a cluster: ``plan`` (inventory,
preflight, the plan file and its Helm values), ``runbook`` and ``policy-report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from migrate import fileio, output, planfile, policy
from migrate.cilium import migration_values, site_values
from migrate.cli.app import run_cli
from migrate.cli.options import Format, KubeconfigOpt, OutputOpt, PlanFileArg
from migrate.cli.wiring import choose_target
from migrate.errors import BadInput
from migrate.helm import CILIUM_CHART, CILIUM_VERSION, chart_reference
from migrate.plan import Plan, PlanOptions
from migrate.planner import build_plan
from migrate.policyaddresses import ClusterRanges
from migrate.runbook import render_runbook


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


def plan(
    sim: Annotated[
        Optional[str], typer.Option("--sim", metavar="NAME", help="Plan for this simulated cluster.")
    ] = None,
    kubeconfig: Annotated[
        Optional[str], typer.Option("--kubeconfig", metavar="FILE", help="Path to a kubeconfig (else $KUBECONFIG).")
    ] = None,
    context: Annotated[
        Optional[str], typer.Option("--context", metavar="NAME", help="kubeconfig context (else the current one).")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", metavar="FILE", help="Plan file to write (default: plans/TARGET.yaml)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing plan file.")] = False,
    o: OutputOpt = Format.table,
    max_unavailable: Annotated[
        int, typer.Option("--max-unavailable", metavar="N", help="Nodes migrated at once after the canary.")
    ] = 1,
    canary: Annotated[int, typer.Option("--canary", metavar="N", help="Workers in the first, canary wave.")] = 1,
    drain_timeout: Annotated[
        int, typer.Option("--drain-timeout", metavar="SECONDS", help="Seconds a drain may wait for PDBs.")
    ] = 300,
    force: Annotated[bool, typer.Option("--force", help="Evict pods no controller re-creates.")] = False,
    delete_emptydir_data: Annotated[
        bool, typer.Option("--delete-emptydir-data", help="Evict pods with emptyDir data.")
    ] = False,
    exclude_node: Annotated[
        Optional[list[str]],
        typer.Option("--exclude-node", metavar="NODE", help="Leave this node out (repeatable)."),
    ] = None,
    cilium_pool_cidr: Annotated[
        str, typer.Option("--cilium-pool-cidr", metavar="CIDR", help="Cilium cluster-pool CIDR.")
    ] = "10.245.0.0/16",
    reboot_nodes: Annotated[
        bool,
        typer.Option(
            "--reboot-nodes", help="Reboot each node after its CNI swap (and rollback), not only restart its pods."
        ),
    ] = False,
    install_cilium: Annotated[
        bool,
        typer.Option(
            "--install-cilium", help="apply installs Cilium in migration mode with Helm first (where none runs)."
        ),
    ] = False,
    cilium_chart: Annotated[
        str,
        typer.Option(
            "--cilium-chart",
            metavar="CHART",
            help="With --install-cilium: a chart in helm.cilium.io, a local chart, or oci://.",
        ),
    ] = CILIUM_CHART,
    cilium_version: Annotated[
        str, typer.Option("--cilium-version", metavar="VERSION", help="With --install-cilium: the chart version.")
    ] = CILIUM_VERSION,
    cilium_values: Annotated[
        Optional[Path],
        typer.Option(
            "--cilium-values",
            metavar="FILE",
            help="With --install-cilium: your own Helm values (image mirrors, resources...) under cni-migrate's; "
            "recorded in the plan.",
        ),
    ] = None,
    node_parallelism: Annotated[
        int,
        typer.Option(
            "--node-parallelism",
            metavar="N",
            help="Nodes of a wave drained, swapped and validated at once (0: the whole wave; 1: one after another).",
        ),
    ] = 0,
    without_surge: Annotated[
        bool,
        typer.Option(
            "--without-surge",
            help="Never surge. By default a drain that would strand a Deployment (a budget allowing no disruption, "
            "or no Ready replica left) first brings its replacements up elsewhere.",
        ),
    ] = False,
    max_surge: Annotated[
        int,
        typer.Option("--max-surge", metavar="N", help="At most N extra pods surged in one wave (0: no cap).", min=0),
    ] = 0,
    without_handoff: Annotated[
        bool,
        typer.Option(
            "--without-handoff",
            help="Never hand off. By default a drain takes a UDP Service's backend (CoreDNS) out of its Service "
            "while it still answers and stops it only once its endpoint is gone, so its clients see no timeouts.",
        ),
    ] = False,
) -> None:
    """Write a reviewable plan from the cluster (a dry run).

    Reads the cluster, runs the preflight checks and writes the plan file (and the Helm
    values for Cilium's migration mode next to it); nothing is written to the cluster."""

    def body() -> int:
        chart, version = chart_reference(cilium_chart, cilium_version) if install_cilium else ("", "")
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
            install_cilium_chart=chart,
            install_cilium_version=version,
            install_cilium_values=read_site_values(cilium_values, install_cilium),
            surge=not without_surge,
            max_surge=max_surge,
            handoff=not without_handoff,
        )
        backend = choose_target(sim, kubeconfig, context)
        path = out or Path("plans") / f"{backend.target.name}.yaml"
        if path.is_file() and not overwrite:
            # A reviewed plan is what apply runs: replacing it must be asked for, before
            # the cluster is read and whatever the new plan would say.
            raise BadInput(f"plan file {path} exists: pass --overwrite to replace it, or --out another file")
        result = build_plan(backend.cluster.inventory(), options, backend.target)
        write_plan(result, path)
        if o is Format.table:
            typer.echo(output.plan_summary(result, path))
            typer.echo(f"  Cilium Helm values for migration mode: {values_path(path)}")
        else:
            record = {"planFile": str(path), "ciliumValues": str(values_path(path)), "plan": result.to_record()}
            typer.echo(output.render(record, o.value))
        return 3 if result.blocking else 0

    run_cli(body)


def runbook(
    planpath: PlanFileArg,
    out: Annotated[
        Optional[Path], typer.Option("--out", metavar="FILE", help="Write the runbook here (else stdout).")
    ] = None,
) -> None:
    """Render a plan's runbook (Markdown) for the change board.

    Every step with its manual kubectl equivalent, the validation, the estimated duration,
    and the rollback command for every point of the run."""

    def body() -> None:
        the_plan = planfile.read(planpath)
        text = render_runbook(the_plan, str(planpath))
        if out is None:
            typer.echo(text, nl=False)
        else:
            fileio.write_text(out, text, "runbook", mode=0o644)
            typer.echo(f"runbook for plan {the_plan.id} written to {out}")

    run_cli(body)


def policy_report(
    sim: Annotated[Optional[str], typer.Option("--sim", metavar="NAME", help="Simulated cluster name.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: Annotated[
        Optional[str], typer.Option("--context", metavar="NAME", help="kubeconfig context (else the current one).")
    ] = None,
    o: OutputOpt = Format.table,
    write: Annotated[
        Optional[Path],
        typer.Option(
            "--write",
            metavar="DIR",
            help="Write each Cilium policy as YAML here: translations, and those to go beside kept NetworkPolicies.",
        ),
    ] = None,
    cilium_pool_cidr: Annotated[
        Optional[str],
        typer.Option(
            "--cilium-pool-cidr",
            metavar="CIDR",
            help="Cilium's pod pool, as planned (default: the installed Cilium's, else plan's default).",
        ),
    ] = None,
) -> None:
    """Say what becomes of each network policy.

    Kept (Kubernetes NetworkPolicy), translated to a Cilium policy, or untranslatable, and why.
    Addresses in rules are judged against the cluster's pod pools, node addresses and Service range."""

    def body() -> None:
        if cilium_pool_cidr is not None:
            PlanOptions(cilium_pool_cidr=cilium_pool_cidr)  # the plan's checks of the pool, one BadInput line
        cluster = choose_target(sim, kubeconfig, context).cluster
        inv = cluster.inventory()
        pool = cilium_pool_cidr or inv.cilium.cluster_pool_cidr or PlanOptions().cilium_pool_cidr
        verdicts = policy.report(cluster.network_policies(), ClusterRanges.from_inventory(inv, pool))
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
                    path = write / v.file_name
                    fileio.write_text(path, output.render(v.cilium, "yaml"), "translated policy", mode=0o644)
                    written.append(str(path))
        if o is Format.table:
            typer.echo(output.policy_table(verdicts, written, write))
        else:
            typer.echo(output.render({"policies": [v.to_record() for v in verdicts]}, o.value))

    run_cli(body)
