"""Benchmark: the cost of one step transition in the local journal (issue 8, item 4).

For plans of 100 / 1,000 / 5,000 nodes, with every node's five forward steps recorded
(the journal at its largest), time ``state.with_step(...)`` (the pure transition) and
``LocalStore.save`` (serialise + write + fsync + rename + directory fsync). Reports
min/median over repeats, the journal size, and the whole-run cost (10 transitions per node
plus node states) that the per-transition time implies.

    python benchmarks/checkpoint_cost.py [--sizes 100,1000,5000] [--repeat 20]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{'nodes':>7} {'transition_ms':>14} {'save_ms_min':>12} {'save_ms_med':>12} {'journal_kb':>11} "
        f"{'run_overhead_s':>15}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        state = full_state(size)
        node = next(iter(state.nodes))
        kind = FORWARD_STEPS[0]
        t = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            state.with_step(node, f"{node}/cordon", kind, StepStatus.STARTED, NOW)
            t.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(Path(tmp))
            saves = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                store.save(state)
                saves.append(time.perf_counter() - start)
            size_kb = store.path.stat().st_size / 1024
        per = statistics.median(saves) + statistics.median(t)
        transitions = size * 12
        print(
            f"{size:>7} {statistics.median(t) * 1000:>14.3f} {min(saves) * 1000:>12.2f} "
            f"{statistics.median(saves) * 1000:>12.2f} {size_kb:>11.0f} {per * transitions:>15.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
