"""Benchmark: plan building at 500 / 1,000 / 5,000 / 10,000 nodes (issue 8, item 1).

Generates a seeded synthetic inventory (30 pods per node, 2,000 PDBs at 5,000 nodes,
scaled alike, a tenth of them allowing no disruption, which the pdb-budget check reports),
builds the plan with the real planner and preflight, and reports min and
median wall time over repeats plus peak RSS (each size in a fresh process, so the peak is
that size's own). Goals: 5,000 nodes / 150,000 pods / 2,000 PDBs in < 2 s and < 500 MB.

    python benchmarks/plan_scale.py [--sizes 500,1000,5000,10000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_size(nodes: int, repeat: int) -> dict[str, object]:
    from migrate.plan import PlanOptions, Target
    from migrate.planfile import dump
    from migrate.planner import build_plan
    from tests.builders import synthetic

    t0 = time.perf_counter()
    inv = synthetic(nodes, pods_per_node=30, pdbs=nodes * 2 // 5, seed=7, zero_budget=0.1)
    generate = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        # A fresh inventory object each time: the pod index is built as part of planning.
        fresh = type(inv)(**{f: getattr(inv, f) for f in inv.__dataclass_fields__})
        t = time.perf_counter()
        plan = build_plan(
            fresh, PlanOptions(max_unavailable=20, force=True, delete_emptydir_data=True), Target("sim", "bench", "")
        )
        dump(plan)
        times.append(time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "nodes": nodes,
        "pods": len(inv.pods),
        "pdbs": len(inv.pdbs),
        "waves": len(plan.waves),
        "min_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "generate_s": round(generate, 2),
        "peak_rss_mb": round(rss_mb, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,5000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeat)))
        return 0
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout))
    header = ("nodes", "pods", "pdbs", "waves", "min_s", "median_s", "peak_rss_mb")
    print(" ".join(f"{h:>11}" for h in header))
    for row in rows:
        print(" ".join(f"{row[h]:>11}" for h in header))
    goal = next((r for r in rows if r["nodes"] == 5000), None)
    if goal:
        ok = goal["median_s"] < 2 and goal["peak_rss_mb"] < 500
        print(f"goal at 5,000 nodes (< 2 s, < 500 MB): {'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
