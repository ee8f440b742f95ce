"""Benchmark: the cost of one step transition in the journal (issue 8, item 4).

For plans of 100 / 1,000 / 5,000 nodes, with every node's five forward steps recorded
(the journal at its largest), time ``state.with_step(...)`` (the pure transition) and a
checkpoint of the next state (one node changed), in

- the local journal (``LocalStore``: an appended, fsynced log line; the snapshot rewritten
  every 500 lines or on a status change), and, with ``--incluster``,
- the in-cluster journal (``ConfigMapStore``: the whole journal gzipped into a ConfigMap,
  replaced with a resourceVersion precondition) on the test lab's real API server.

Each save changes another node, so the in-cluster store's delta fills and its snapshot is
rewritten every ``COMPACT_NODES`` saves (the local log every 500). Reports min/median/mean
over repeats (the mean includes those rewrites), the journal size, API requests per save,
and the whole-run cost (10 transitions per node plus node states) the mean implies.

    python benchmarks/checkpoint_cost.py [--sizes 100,1000,5000] [--repeat 200] [--incluster]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate.checkpoints.local import LocalStore  # noqa: E402
from migrate.journal import NodeState, RunState, StepStatus  # noqa: E402
from migrate.plan import FORWARD_STEPS, PlanOptions, Target  # noqa: E402
from migrate.planner import build_plan  # noqa: E402
from tests.builders import synthetic  # noqa: E402

NOW = "2026-11-28T22:00:00Z"


def full_state(nodes: int) -> RunState:
    plan = build_plan(synthetic(nodes, pods_per_node=1), PlanOptions(max_unavailable=20), Target("sim", "b", ""))
    state = RunState.new(plan)
    for node in plan.nodes:
        state = state.with_node_state(node.name, NodeState.IN_PROGRESS, NOW)
        for step in node.steps:
            state = state.with_step(node.name, step.id, step.kind, StepStatus.SUCCEEDED, NOW, "ok")
    return state


def transitions(state: RunState, count: int) -> list[RunState]:
    """``count`` successive states, each changing one node (as a run's saves do)."""
    out = []
    names = list(state.nodes)
    for i in range(count):
        node = names[i % len(names)]
        state = state.with_step(node, f"{node}/cordon", FORWARD_STEPS[0], StepStatus.STARTED, NOW)
        out.append(state)
    return out


def time_saves(store: Any, states: list[RunState]) -> list[float]:
    store.save(states[0])  # the first save of a run writes everything
    saves = []
    for state in states[1:]:
        start = time.perf_counter()
        store.save(state)
        saves.append(time.perf_counter() - start)
    return saves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--incluster", action="store_true", help="also the ConfigMap store on a real API server")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    cluster, lab = None, None
    if args.incluster:
        from migrate.backends.kubernetes import KubernetesCluster
        from tests import labsupport

        lab = labsupport.lab_module().KubeLab(Path(tempfile.mkdtemp(prefix="cni-migrate-bench-")), labsupport.bin_dir())
        cluster = KubernetesCluster.connect(kubeconfig=str(lab.up(nodes=2, fixtures=False)))
    print(
        f"{'store':>9} {'nodes':>6} {'transition_ms':>14} {'save_ms_min':>12} {'save_ms_med':>12} "
        f"{'save_ms_mean':>13} {'journal_kb':>11} {'requests/save':>14} {'run_overhead_s':>15}"
    )
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            state = full_state(size)
            t = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                state.with_step(next(iter(state.nodes)), "x/cordon", FORWARD_STEPS[0], StepStatus.STARTED, NOW)
                t.append(time.perf_counter() - start)
            states = transitions(state, args.repeat + 1)
            stores: list[tuple[str, Any]] = []
            tmp = tempfile.TemporaryDirectory()
            stores.append(("local", LocalStore(Path(tmp.name))))
            if cluster is not None:
                from migrate.backends.kubernetes.journal import ConfigMapStore

                stores.append(("configmap", ConfigMapStore(cluster, f"sha256:{size:016x}{0:048x}")))
            for name, store in stores:
                before = cluster.requests if cluster is not None else 0
                saves = time_saves(store, states)
                requests = ((cluster.requests - before) / len(states)) if name == "configmap" and cluster else 0
                if name == "local":
                    size_kb = store.path.stat().st_size / 1024
                else:
                    size_kb = len(store._read(store.name)["binaryData"]["journal.json.gz"]) * 3 / 4 / 1024
                # The mean includes the snapshot rewrites (compactions): the whole-run cost.
                per = statistics.mean(saves) + statistics.median(t)
                print(
                    f"{name:>9} {size:>6} {statistics.median(t) * 1000:>14.3f} {min(saves) * 1000:>12.2f} "
                    f"{statistics.median(saves) * 1000:>12.2f} {statistics.mean(saves) * 1000:>13.2f} "
                    f"{size_kb:>11.0f} {requests:>14.2f} {per * size * 12:>15.1f}"
                )
            tmp.cleanup()
    finally:
        if lab is not None:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
