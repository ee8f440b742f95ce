"""The simulated backend's own commands: ``sim create/show/delete/list``, and ``demo``, the
one-command tour on a simulated cluster. The only commands that know which backend they use."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from migrate import output
from migrate.backends import simbundle, simworld
from migrate.backends.simulated import SimStore, parse_validation_failure
from migrate.cli.app import home, run_cli
from migrate.cli.commands_plan import write_plan
from migrate.cli.commands_run import execute
from migrate.cli.options import Format, OutputOpt, RunOptions
from migrate.errors import BadInput
from migrate.plan import PlanOptions
from migrate.planner import build_plan

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The simulated cluster's name.")]


def sim_create(
    name: NameArg,
    nodes: Annotated[
        Optional[int],
        typer.Option("--nodes", metavar="N", help="Nodes in all: 1 control-plane + N-1 workers.  [default: 6]"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for UIDs and kernel versions.")] = 0,
    fail_validation_on: Annotated[
        Optional[list[str]],
        typer.Option(
            "--fail-validation-on",
            metavar="NODE[:CHECK[:TIMES]]",
            help="Make this node's validation fail (that check only; TIMES times, then pass). Repeatable.",
        ),
    ] = None,
    latency: Annotated[float, typer.Option("--latency", metavar="SECONDS", help="Seconds each API call takes.")] = 0.0,
    without_cilium: Annotated[
        bool,
        typer.Option(
            "--without-cilium", help="No Cilium installed yet (plan with --install-cilium to have apply install it)."
        ),
    ] = False,
    from_: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--from",
            metavar="FILE",
            help="A copy of a real cluster: kubectl's YAML or JSON dump of it (tools/dump-cluster; "
            "docs/rehearsal.md). Repeat for several files.",
        ),
    ] = None,
) -> None:
    """Create a simulated cluster.

    Calico on every node, Cilium in migration mode beside it (or none: --without-cilium),
    the default workloads with their PodDisruptionBudgets, or a copy of a real cluster (--from)."""

    def body() -> None:
        if from_ and nodes is not None:
            raise BadInput("--nodes and --from exclude each other: a copy has the dumped cluster's nodes")
        if (nodes or 6) < 2:
            raise BadInput("--nodes must be at least 2 (1 control-plane + 1 worker)")
        if latency < 0:
            raise BadInput("--latency must not be negative")
        copied = ""
        if from_:
            world, copied = copy_of(name, from_, seed)
            world["latency"] = latency
        else:
            world = simworld.default_world(name, nodes=nodes or 6, seed=seed, latency=latency)
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
        if copied:
            typer.echo(copied)
            return
        cilium = "no Cilium" if without_cilium else "Cilium in migration mode beside it"
        typer.echo(f"created simulated cluster {name}: {nodes or 6} nodes on Calico, {cilium}")

    run_cli(body)


def copy_of(name: str, paths: list[Path], seed: int) -> tuple[simworld.World, str]:
    """A world copied from a dump, and the line that says what it holds and what it cannot."""
    from migrate.backends import simcopy
    from migrate.backends.kubernetes.dump import read_dump  # the client only for this command

    dump = read_dump(paths)
    copy = simcopy.world_from(
        name, dump.inventory, dump.workloads, dump.policies, cilium_config=dump.cilium_config, seed=seed
    )
    world = copy.world
    cnis = Counter(simworld.node_cni(world, n) for n in world["nodes"])
    said = [
        f"created simulated cluster {name} from {', '.join(p.name for p in paths)}: {len(world['nodes'])} nodes "
        f"({', '.join(f'{n} on {cni}' for cni, n in sorted(cnis.items()))}), {len(world['pods'])} pods, "
        f"{len(world['workloads'])} workloads, {len(world['pdbs'])} PodDisruptionBudgets"
    ]
    if copy.unmanaged:
        kinds = ", ".join(f"{kind} {n}" for kind, n in copy.unmanaged.items())
        said.append(f"pods of controllers the simulation does not run are not re-created once evicted: {kinds}")
    if dump.skipped:
        said.append("skipped: " + ", ".join(f"{kind} {n}" for kind, n in dump.skipped.items()))
    return world, "\n".join(said)


def world_nodes(world: simworld.World) -> list[dict[str, Any]]:
    """Each node of a simulated world: its CNI, whether it is cordoned, its labels and pods."""
    on: dict[str, list[str]] = {}
    for p in world["pods"].values():
        on.setdefault(p["node"], []).append(f"{p['namespace']}/{p['name']}")
    nodes = []
    for node_name, n in sorted(world["nodes"].items()):
        pods = sorted(on.get(node_name, []))
        nodes.append(
            {
                "name": node_name,
                "cni": simworld.node_cni(world, node_name),
                "unschedulable": n["unschedulable"],
                "labels": n["labels"],
                "pods": pods,
            }
        )
    return nodes


def sim_show(name: NameArg, o: OutputOpt = Format.table) -> None:
    """Show a simulated cluster's nodes: CNI, cordoned, labels, pods."""

    def body() -> None:
        nodes = world_nodes(SimStore(home()).open(name).world())
        if o is Format.table:
            typer.echo(output.nodes_table(nodes))
        else:
            typer.echo(output.render({"nodes": nodes}, o.value))

    run_cli(body)


def sim_delete(name: NameArg) -> None:
    """Delete a simulated cluster and everything it holds."""

    def body() -> None:
        SimStore(home()).delete(name)
        typer.echo(f"deleted simulated cluster {name}")

    run_cli(body)


def sim_list() -> None:
    """List the simulated clusters."""

    def body() -> None:
        typer.echo("\n".join(SimStore(home()).names()) or "no simulated clusters")

    run_cli(body)


def demo(
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Name of the simulated cluster.")] = "demo",
    nodes: Annotated[int, typer.Option("--nodes", metavar="N", help="Nodes in all.")] = 6,
    max_unavailable: Annotated[
        int, typer.Option("--max-unavailable", metavar="N", help="Nodes at once after the canary.")
    ] = 2,
) -> None:
    """A one-command tour on a simulated cluster.

    Simulated cluster -> plan -> apply -> every node on Cilium."""

    def body() -> int:
        store = SimStore(home())
        if name in store.names():
            store.delete(name)
        store.create(name, simworld.default_world(name, nodes=nodes))
        typer.echo(f"== simulated cluster {name}: {nodes} nodes, Calico everywhere, Cilium in migration mode\n")
        cluster = store.open(name)
        options = PlanOptions(max_unavailable=max_unavailable, force=True, delete_emptydir_data=True)
        the_plan = build_plan(cluster.inventory(), options, simbundle.target(name))
        path = Path("plans") / f"{name}.yaml"
        write_plan(the_plan, path)
        typer.echo("== plan (cni-migrate plan --sim demo --force --delete-emptydir-data --max-unavailable 2)")
        typer.echo(output.plan_summary(the_plan, path) + "\n")
        typer.echo(f"== apply (cni-migrate apply {path} --yes)")
        code = execute(path, False, RunOptions(yes=True))
        typer.echo("\n== result")
        typer.echo(output.nodes_table(world_nodes(cluster.world())))
        typer.echo(f"\nnext: cni-migrate status {path}   |   cni-migrate rollback {path} --node worker-1 --yes")
        return code

    run_cli(body)
