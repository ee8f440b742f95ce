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
from migrate.cli.options import ContextOpt, Format, KubeconfigOpt, OutputOpt, PlanFileArg
from migrate.cli.wiring import choose_target
from migrate.errors import BadInput
from migrate.helm import CILIUM_CHART, CILIUM_VERSION, chart_reference
from migrate.plan import Plan, PlanOptions
from migrate.planner import build_plan
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
    surge: Annotated[
        bool,
        typer.Option(
            "--surge/--no-surge",
            help="A drain that would strand a Deployment (a budget allowing no disruption, or no Ready replica "
            "left) first brings its replacements up elsewhere.",
        ),
    ] = True,
    max_surge: Annotated[
        int, typer.Option(help="At most this many extra pods surged in one wave (0: no cap).", min=0)
    ] = 0,
) -> None:
    """Dry run: inspect the cluster, run preflight checks, write a reviewable plan file."""

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
            surge=surge,
            max_surge=max_surge,
        )
        backend = choose_target(sim, kubeconfig, context)
        result = build_plan(backend.cluster.inventory(), options, backend.target)
        path = out or Path("plans") / f"{backend.target.name}.yaml"
        write_plan(result, path)
        typer.echo(output.plan_summary(result, path))
        typer.echo(f"  Cilium Helm values for migration mode: {values_path(path)}")
        return 3 if result.blocking else 0

    run_cli(body)


def runbook(
    planpath: PlanFileArg,
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write the runbook here (else stdout).")] = None,
) -> None:
    """Render the change-board runbook (Markdown) for a plan: steps, commands, rollback."""

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
    sim: Annotated[Optional[str], typer.Option(help="Simulated cluster name.")] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    o: OutputOpt = Format.table,
    write: Annotated[
        Optional[Path], typer.Option(help="Write each translated Cilium policy as YAML into this directory.")
    ] = None,
) -> None:
    """What happens to each network policy: kept, translated to Cilium, or untranslatable (why)."""

    def body() -> None:
        verdicts = policy.report(choose_target(sim, kubeconfig, context).cluster.network_policies())
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
