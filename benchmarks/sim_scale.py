"""Benchmark: the simulated cluster at scale (issue 29, "The simulation does not scale").

Drives the installed CLI as a user would, each command in its own process under a fresh
``CNI_MIGRATE_HOME``:

- ``sim create NAME --nodes N`` for each size: wall time (a size that runs past
  ``--timeout`` is reported as such and the larger sizes are skipped);
- one parallel wave (``--no-wave`` skips it): ``sim create`` at ``--wave-nodes`` (200)
  nodes, a plan of the canary and one wave of ``--wave`` (10) workers (every other node
  excluded), ``apply`` of it with
  the wave's nodes at once (``--node-parallelism 0``) and one after another (``1``).
  The speedup is the serial wave's time over the parallel wave's (each from its audit log:
  first step started to last step finished); the whole apply's wall and CPU seconds are
  beside it. Once with no simulated API latency, once with 50 ms a call (``--latency``);
- the same wave's calls to the simulated cluster alone, in this process (``--no-calls``
  skips it): from a thread per node against one thread, the engine and process start left
  out (on a loaded machine they move more than the wave).

    python benchmarks/sim_scale.py [--sizes 200,1000,5000] [--timeout 300] [--wave-nodes 200]
                                   [--wave 10] [--latency 0,0.05] [--json out.json]
    python benchmarks/sim_scale.py --profile 1000   # cProfile of sim create at 1,000 nodes
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLI = str(Path(sys.executable).with_name("cni-migrate"))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(home: Path, *args: str, timeout: float | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one CLI command; raises on a failure, ``TimeoutExpired`` past
    ``timeout``. The CPU time is the steadier number on a machine shared with other work."""
    env = {**os.environ, "CNI_MIGRATE_HOME": str(home)}
    start, start_cpu = time.perf_counter(), cpu()
    done = subprocess.run([CLI, *args], cwd=home, env=env, capture_output=True, text=True, timeout=timeout)
    took, took_cpu = time.perf_counter() - start, cpu() - start_cpu
    if done.returncode != 0:
        raise RuntimeError(f"cni-migrate {' '.join(args[:4])} ... exit {done.returncode}: {done.stderr[-2000:]}")
    return round(took, 2), round(took_cpu, 2)


def create_times(sizes: list[int], timeout: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="sim-scale-") as tmp:
            try:
                took, took_cpu = run(Path(tmp), "sim", "create", "c", "--nodes", str(size), timeout=timeout)
                rows.append({"nodes": size, "create_s": took, "create_cpu_s": took_cpu})
            except subprocess.TimeoutExpired:
                rows.append({"nodes": size, "create_s": f">{timeout:.0f}", "create_cpu_s": "-"})
                break  # a larger world takes longer still
    return rows


def wave_times(nodes: int, wave: int, latency: float, timeout: float) -> dict[str, object]:
    """Apply of the canary plus one wave of ``wave`` workers, parallel and serial."""
    row: dict[str, object] = {"nodes": nodes, "wave": wave, "latency": latency}
    for parallelism in ("0", "1"):
        with tempfile.TemporaryDirectory(prefix="sim-wave-") as tmp:
            home = Path(tmp)
            run(home, "sim", "create", "c", "--nodes", str(nodes), "--latency", str(latency), timeout=timeout)
            keep = {f"worker-{i}" for i in range(1, wave + 2)}  # the canary and one wave
            excluded = [f"worker-{i}" for i in range(1, nodes) if f"worker-{i}" not in keep] + ["cp-1"]
            plan = ["plan", "--sim", "c", "--force", "--delete-emptydir-data", "--out", "p.yaml"]
            plan += ["--max-unavailable", str(wave), "--node-parallelism", parallelism, "--without-surge"]
            for name in excluded:
                plan += ["--exclude-node", name]
            row["plan_s"] = run(home, *plan, timeout=timeout)[0]
            key = "parallel" if parallelism == "0" else "serial"
            row[f"{key}_apply_s"], row[f"{key}_apply_cpu_s"] = run(home, "apply", "p.yaml", "--yes", timeout=timeout)
            row[f"{key}_wave_s"] = wave_span(home, 2)
    row["speedup"] = round(float(row["serial_wave_s"]) / float(row["parallel_wave_s"]), 2)  # type: ignore[arg-type]
    return row


def wave_span(home: Path, wave: int) -> float:
    """Seconds from the first step of ``wave`` started to its last finished, from the run's
    audit log: the wave alone, without the process's start and the reads before the first
    node (which, on a loaded machine, move more than the wave itself)."""
    stamps = [
        datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        for log in home.glob("runs/*/audit.jsonl")
        for event in map(json.loads, log.read_text().splitlines())
        if event.get("wave") == wave and event.get("event") in ("step-started", "step-finished")
    ]
    return round((max(stamps) - min(stamps)).total_seconds(), 2)


def node_calls(cluster: Any, name: str) -> None:
    """One node's calls as a migration makes them (``calls_times``)."""
    from migrate.errors import MigrateError

    cluster.set_unschedulable(name, True)
    for pod in cluster.pods_on_node(name):
        if pod.owner is not None and pod.owner.kind != "DaemonSet":
            with contextlib.suppress(MigrateError):  # a budget refused it: a drain would retry later
                cluster.evict(pod)
    cluster.set_node_label(name, "bench", "true")
    cluster.get_node(name)
    cluster.set_unschedulable(name, False)


def calls_times(nodes: int, wave: int, latency: float) -> dict[str, object]:
    """The simulated cluster alone, in this process: each of ``wave`` workers' calls as a
    migration makes them (cordon, list its pods, evict them, label, read it back,
    uncordon), from a thread per node and from one thread: the engine, its journal and the
    process's start left out."""
    from concurrent.futures import ThreadPoolExecutor

    from migrate.backends import simworld
    from migrate.backends.simulated import SimStore

    row: dict[str, object] = {"nodes": nodes, "wave": wave, "latency": latency}
    for mode in ("threads", "serial"):
        with tempfile.TemporaryDirectory(prefix="sim-calls-") as tmp:
            cluster = SimStore(Path(tmp)).create("c", simworld.default_world("c", nodes=nodes, latency=latency))
            cluster.get_node("cp-1")  # the process's first read, outside the measure

            calls = functools.partial(node_calls, cluster)
            names = [f"worker-{i}" for i in range(1, wave + 1)]
            start = time.perf_counter()
            if mode == "threads":
                with ThreadPoolExecutor(max_workers=wave) as pool:
                    list(pool.map(calls, names))
            else:
                for name in names:
                    calls(name)
            row[f"{mode}_s"] = round(time.perf_counter() - start, 2)
    row["speedup"] = round(float(row["serial_s"]) / float(row["threads_s"]), 2)  # type: ignore[arg-type]
    return row


def profile(size: str) -> None:
    """cProfile of ``sim create`` at ``size`` nodes, in this process."""
    with tempfile.TemporaryDirectory(prefix="sim-profile-") as tmp:
        os.environ["CNI_MIGRATE_HOME"] = tmp
        os.chdir(tmp)
        import cProfile
        import pstats

        from migrate.cli import app

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            app(["sim", "create", "c", "--nodes", size], standalone_mode=False)
        finally:
            profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000,5000")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one command may take")
    parser.add_argument("--wave-nodes", type=int, default=200)
    parser.add_argument("--wave", type=int, default=10)
    parser.add_argument("--latency", default="0,0.05", help="the simulated API's seconds a call (a list: a wave each)")
    parser.add_argument("--calls", action=argparse.BooleanOptionalAction, default=True, help="the store alone too")
    parser.add_argument("--no-wave", dest="wave_nodes_run", action="store_false", help="skip the wave through the CLI")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", metavar="N", help="cProfile sim create at N nodes instead")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return 0
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    creates = create_times([int(s) for s in args.sizes.split(",") if s], args.timeout)
    print(f"{'nodes':>7} {'create_s':>9} {'create_cpu_s':>13}")
    for row in creates:
        print(f"{row['nodes']:>7} {row['create_s']:>9} {row['create_cpu_s']:>13}")
    waves = []
    if args.wave_nodes_run:
        for latency in (float(s) for s in args.latency.split(",")):
            waves.append(wave_times(args.wave_nodes, args.wave, latency, args.timeout))
        header = ("nodes", "wave", "latency", "parallel_wave_s", "serial_wave_s", "speedup")
        header += ("parallel_apply_s", "serial_apply_s", "parallel_apply_cpu_s", "serial_apply_cpu_s")
        print(" ".join(f"{h:>20}" for h in header))
        for row in waves:
            print(" ".join(f"{row[h]!s:>20}" for h in header))
    calls = [calls_times(args.wave_nodes, args.wave, float(s)) for s in args.latency.split(",")] if args.calls else []
    if calls:
        header = ("nodes", "wave", "latency", "threads_s", "serial_s", "speedup")
        print("the simulated cluster's calls alone:\n" + " ".join(f"{h:>10}" for h in header))
        for row in calls:
            print(" ".join(f"{row[h]!s:>10}" for h in header))
    if args.json:
        args.json.write_text(json.dumps({"create": creates, "wave": waves, "calls": calls}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
