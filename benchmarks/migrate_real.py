"""Benchmark: orchestration overhead against a kubectl-drain baseline (issue 8, items 3-5).

On the test lab's real control plane (kube-apiserver, etcd, controller-manager,
scheduler; kwok nodes, the tests' node agent as kubelet and Cilium agent stand-in), for
each ``--max-unavailable`` value:

- **cni-migrate**: ``plan`` then ``apply --yes`` on a fresh lab; wall time of apply, its
  API requests (apply prints them), its peak RSS (``wait4``), and the time per step kind
  from the journal (so validation, which the baseline does not do, is shown apart);
- **baseline** on another fresh lab of the same shape: the plan's waves in order, the nodes
  of a wave in parallel, each node through ``kubectl cordon`` / ``kubectl drain
  --ignore-daemonsets --delete-emptydir-data --force`` / ``kubectl label`` (Cilium's
  per-node migration label) / ``kubectl uncordon``; its API requests are counted from
  kubectl's ``-v=6`` request log.

The ratio compares the same node operations: cni-migrate's cordon + drain + swap +
uncordon time (per wave: its cordons plus its slowest node's other steps, since a wave's
nodes run at once) against the whole baseline, and its whole apply against it.

Each --max-unavailable value is run --repeat times (fresh labs each time); the table shows
the min and median of those runs.

    python benchmarks/migrate_real.py [--nodes 50] [--max-unavailable 1,10] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate.model import MIGRATION_LABEL  # noqa: E402
from tests import labsupport  # noqa: E402
from tests.realcluster.clilab import CliLab  # noqa: E402

KUBECTL_REQUEST = re.compile(r'"Response" verb="|^I\S+ +\S+ +\S+\] (GET|POST|PUT|PATCH|DELETE) https?://')


def kubectl_path() -> str:
    return labsupport.kubectl_bin()


def run_cni_migrate(lab: CliLab, concurrency: int) -> dict[str, Any]:
    plan = lab.plan("--max-unavailable", str(concurrency), "--cilium-pool-cidr", lab.world["cilium"]["poolCIDR"])
    if plan.code != 0:
        raise SystemExit(f"plan failed: {plan}")
    out, err = lab.tmp / "apply.out", lab.tmp / "apply.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            lab.argv("apply", "p.yaml", "--yes"), cwd=lab.tmp, env=lab.env(), stdout=stdout, stderr=stderr
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"apply exited {proc.returncode}:\n{text}\n{err.read_text()}")
    requests = int(re.search(r"\((\d+) API requests\)", text).group(1))  # type: ignore[union-attr]
    # Step durations from the run's audit log (millisecond precision; the journal keeps seconds).
    per_kind: dict[str, float] = defaultdict(float)
    # wave -> node -> seconds of cordon / of drain + swap + uncordon (the baseline's operations)
    cordons: dict[int, float] = defaultdict(float)
    rest: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    nodes = set()
    calls: dict[str, int] = {}
    for line in next((lab.home / "runs").glob("*/audit.jsonl")).read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "api-requests":  # apply's requests by client method
            calls = {name: int(n) for name, n in (part.rsplit(" ", 1) for part in event["message"].split(", "))}
        if event.get("event") == "step-finished" and event.get("phase") == "apply":
            seconds = event.get("duration", 0.0)
            per_kind[event["step"]] += seconds
            nodes.add(event["node"])
            if event["step"] == "cordon":
                cordons[event.get("wave", 0)] += seconds
            elif event["step"] != "validate":
                rest[event.get("wave", 0)][event["node"]] += seconds
    # The nodes of a wave run at once: a wave's same operations last its cordons plus its
    # slowest node's drain + swap + uncordon (with one node at a time, the sum of its nodes).
    same_ops = sum(cordons.values()) + sum(max(by_node.values(), default=0.0) for by_node in rest.values())
    return {
        "wall_s": round(wall, 1),
        "same_ops_s": round(same_ops, 1),
        "requests": requests,
        "requests_per_node": round(requests / len(nodes), 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "steps_s": {k: round(v, 2) for k, v in sorted(per_kind.items())},
        "step_s_per_node": {k: round(v / len(nodes), 2) for k, v in sorted(per_kind.items())},
        # the ten client methods it called most, per node migrated
        "calls_per_node": {
            name: round(n / len(nodes), 1) for name, n in sorted(calls.items(), key=lambda x: -x[1])[:10]
        },
    }


def run_baseline(lab: CliLab, concurrency: int, kubectl: str) -> dict[str, Any]:
    plan = lab.plan("--max-unavailable", str(concurrency), "--cilium-pool-cidr", lab.world["cilium"]["poolCIDR"])
    if plan.code != 0:
        raise SystemExit(f"plan failed: {plan}")
    waves = [[n["name"] for n in w["nodes"]] for w in yaml.safe_load((lab.tmp / "p.yaml").read_text())["waves"]]
    base = [kubectl, "--kubeconfig", str(lab.kubeconfig), "-v=6"]
    requests = 0

    def one(node: str) -> int:
        count = 0
        for args in (
            ["cordon", node],
            ["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=600s"],
            ["label", "node", node, f"{MIGRATION_LABEL}=true", "--overwrite"],
            ["uncordon", node],
        ):
            proc = subprocess.run([*base, *args], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"kubectl {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
            count += sum(1 for line in proc.stderr.splitlines() if KUBECTL_REQUEST.search(line))
        return count

    t0 = time.monotonic()
    for wave in waves:
        with concurrent.futures.ThreadPoolExecutor(len(wave)) as pool:
            requests += sum(pool.map(one, wave))
    wall = time.monotonic() - t0
    nodes = sum(len(w) for w in waves)
    return {"wall_s": round(wall, 1), "requests": requests, "requests_per_node": round(requests / nodes, 1)}


def bench_once(nodes: int, concurrency: int, kubectl: str, baseline: bool) -> dict[str, Any]:
    """One cni-migrate run and (unless ``baseline`` is False) one baseline run, each on a
    fresh lab of ``nodes`` kwok nodes, and their ratios."""
    run: dict[str, Any] = {}
    for tool in ("cni-migrate", "baseline") if baseline else ("cni-migrate",):
        with tempfile.TemporaryDirectory(prefix="cni-migrate-bench-") as tmp:
            lab = CliLab(Path(tmp), nodes=nodes)
            try:
                lab.wait_settled(timeout=300)
                run[tool] = (
                    run_cni_migrate(lab, concurrency)
                    if tool == "cni-migrate"
                    else run_baseline(lab, concurrency, kubectl)
                )
            finally:
                lab.close()
        print(f"  {tool} at --max-unavailable {concurrency}: {json.dumps(run[tool])}", flush=True)
    if baseline:
        run["ratio_same_ops"] = round(run["cni-migrate"]["same_ops_s"] / run["baseline"]["wall_s"], 2)
        run["ratio_whole_apply"] = round(run["cni-migrate"]["wall_s"] / run["baseline"]["wall_s"], 2)
    return run


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--max-unavailable", default="1,10")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool per --max-unavailable value")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-baseline", action="store_true", help="cni-migrate only (item 5: 1,000 nodes)")
    args = parser.parse_args()
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    kubectl = "" if args.no_baseline else kubectl_path()  # the loop's kubectl, built only when it runs
    rows = []
    for concurrency in (int(c) for c in args.max_unavailable.split(",")):
        runs = [bench_once(args.nodes, concurrency, kubectl, not args.no_baseline) for _ in range(args.repeat)]
        ours = [r["cni-migrate"] for r in runs]
        row: dict[str, Any] = {
            "nodes": args.nodes,
            "max_unavailable": concurrency,
            "runs": runs,
            "ours_wall_s": spread([o["wall_s"] for o in ours]),
            "validate_s": spread([o["steps_s"].get("validate", 0.0) for o in ours]),
            "requests_per_node": spread([o["requests_per_node"] for o in ours]),
            "peak_rss_mb": max(o["peak_rss_mb"] for o in ours),
        }
        if not args.no_baseline:
            row["baseline_wall_s"] = spread([r["baseline"]["wall_s"] for r in runs])
            row["ratio_same_ops"] = spread([r["ratio_same_ops"] for r in runs])
            row["ratio_whole_apply"] = spread([r["ratio_whole_apply"] for r in runs])
            row["kubectl_requests_per_node"] = spread([r["baseline"]["requests_per_node"] for r in runs])
        rows.append(row)
    print(f"min / median of {args.repeat} run(s) each")
    print(
        f"{'nodes':>6} {'max-unav':>8} {'ours_s':>13} {'validate_s':>13} {'baseline_s':>13} "
        f"{'same-ops':>11} {'whole':>11} {'req/node':>11} {'kubectl req/node':>16} {'rss_mb':>7}"
    )

    def pair(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return f"{value['min']} / {value['median']}" if value else "-"

    for r in rows:
        print(
            f"{r['nodes']:>6} {r['max_unavailable']:>8} {pair(r, 'ours_wall_s'):>13} {pair(r, 'validate_s'):>13} "
            f"{pair(r, 'baseline_wall_s'):>13} {pair(r, 'ratio_same_ops'):>11} {pair(r, 'ratio_whole_apply'):>11} "
            f"{pair(r, 'requests_per_node'):>11} {pair(r, 'kubectl_requests_per_node'):>16} {r['peak_rss_mb']:>7}"
        )
    for r in rows:
        last = r["runs"][-1]["cni-migrate"]
        seconds = ", ".join(f"{k} {v}" for k, v in last["step_s_per_node"].items())
        calls = ", ".join(f"{k} {v}" for k, v in last["calls_per_node"].items())
        print(f"at --max-unavailable {r['max_unavailable']}, last run, seconds per node by step: {seconds}")
        print(f"at --max-unavailable {r['max_unavailable']}, last run, API calls per node: {calls}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
