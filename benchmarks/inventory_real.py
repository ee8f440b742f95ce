"""Benchmark: reading the inventory from a real API server (issue 8, item 2).

Starts the test lab's control plane (etcd, kube-apiserver, controller-manager, scheduler,
kwok; binaries from ``tools/kube/build``) with 1,000 kwok nodes, Calico's fixtures (a
calico-node pod per node) and 30,000 pods spread over the nodes and 30 namespaces, with
one PodDisruptionBudget per 15 pods' app. Then, each in a fresh process:

- ``inventory``: ``KubernetesCluster.inventory()``, every list paginated (500 a page);
- ``plan``: the same read plus planning and preflight, as ``cni-migrate plan`` does.

Beside them, interleaved with them in every round, two baselines over exactly the lists the
inventory reads (those the API server serves):

- ``kubectl``: ``kubectl get <those lists> -A -o json --chunk-size=500 > /dev/null`` (kubectl
  built by ``tools/kube/build kubectl``; its discovery cache warm after the first round);
- ``floor``: the same lists fetched page by page (500 a page) and not decoded at all: the
  bytes are read and dropped, the continue token cut out of each page's head. What the
  API server can serve, with nothing done with it.

Reports min/median wall time, API requests (counted by the backend) and peak RSS, and the
ratios ``plan / kubectl`` and ``plan / floor`` of each round (min and median).
The pods are bare pods bound to their node by ``spec.nodeName`` (the scheduler and the
ReplicaSet controller would take minutes on two cores to make the same objects); kwok
starts them, so they carry addresses and Running status like real ones.

    python benchmarks/inventory_real.py [--nodes 1000] [--pods 30000] [--repeat 3] [--json out.json]
    python benchmarks/inventory_real.py --hold             # the populated lab, kept up to profile against
    python benchmarks/inventory_real.py --lab KUBECONFIG   # measure in that lab
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMESPACES = 30
PODS_PER_APP = 15
PAGE = 500
# What KubernetesCluster.inventory() lists: (API path, kubectl's name for it).
LISTS = (
    ("/api/v1/nodes", "nodes"),
    ("/api/v1/pods", "pods"),
    ("/apis/policy/v1/poddisruptionbudgets", "poddisruptionbudgets.policy"),
    ("/apis/apps/v1/daemonsets", "daemonsets.apps"),
    ("/apis/apps/v1/deployments", "deployments.apps"),
    ("/apis/autoscaling/v2/horizontalpodautoscalers", "horizontalpodautoscalers.autoscaling"),
    ("/apis/networking.k8s.io/v1/networkpolicies", "networkpolicies.networking.k8s.io"),
    ("/apis/networking.k8s.io/v1/servicecidrs", "servicecidrs.networking.k8s.io"),
    ("/apis/crd.projectcalico.org/v1/felixconfigurations", "felixconfigurations.crd.projectcalico.org"),
    ("/apis/crd.projectcalico.org/v1/ippools", "ippools.crd.projectcalico.org"),
    ("/apis/operator.tigera.io/v1/installations", "installations.operator.tigera.io"),
    ("/apis/crd.projectcalico.org/v1/networkpolicies", "networkpolicies.crd.projectcalico.org"),
    ("/apis/crd.projectcalico.org/v1/globalnetworkpolicies", "globalnetworkpolicies.crd.projectcalico.org"),
)
CONTINUE = re.compile(rb'"continue":"([^"]*)"')


def get(api: Any, path: str, query: list[tuple[str, Any]]) -> tuple[int, bytes]:
    """One GET with the kubeconfig's credentials; the body as bytes, not decoded."""
    method, url, headers, _, _ = api.param_serialize("GET", path, query_params=query, auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers)
    return response.status, response.read()


def served_lists(kubeconfig: str) -> list[tuple[str, str]]:
    """The LISTS this API server serves (a CRD that is not installed is not read by anyone)."""
    from kubernetes import config

    api = config.new_client_from_config(kubeconfig)
    served = []
    for path, name in LISTS:
        status, body = get(api, path, [("limit", 1)])
        if status == 404:
            continue
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {body[:200]!r}")
        served.append((path, name))
    return served


def floor(kubeconfig: str) -> dict[str, Any]:
    """The served lists, page by page, read as bytes and dropped: nothing decoded."""
    from kubernetes import config

    paths = [path for path, _ in served_lists(kubeconfig)]
    api = config.new_client_from_config(kubeconfig)
    t0 = time.perf_counter()
    requests = received = 0
    for path in paths:
        token = ""
        while True:
            status, body = get(api, path, [("limit", PAGE), *([("continue", token)] if token else [])])
            if status != 200:
                raise SystemExit(f"GET {path}: HTTP {status}: {body[:200]!r}")
            requests += 1
            received += len(body)
            found = CONTINUE.search(body, 0, 4096)  # metadata comes before the items
            token = found.group(1).decode() if found else ""
            if not token:
                break
    return {
        "what": "floor",
        "total_s": time.perf_counter() - t0,
        "requests": requests,
        "mb": received / 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def kubectl(kubectl_bin: str, kubeconfig: str, names: list[str], cache: str) -> dict[str, Any]:
    argv = [kubectl_bin, "--kubeconfig", kubeconfig, "--cache-dir", cache, "get", ",".join(names), "-A"]
    t0 = time.perf_counter()
    subprocess.run([*argv, "-o", "json", f"--chunk-size={PAGE}"], stdout=subprocess.DEVNULL, check=True)
    return {"what": "kubectl", "total_s": time.perf_counter() - t0}


def measure(kubeconfig: str, what: str) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from migrate.backends.kubernetes import KubernetesCluster
    from migrate.plan import PlanOptions, Target
    from migrate.planner import build_plan

    t0 = time.perf_counter()
    cluster = KubernetesCluster.connect(kubeconfig=kubeconfig)
    inventory = cluster.inventory()
    read = time.perf_counter() - t0
    row: dict[str, Any] = {
        "what": what,
        "nodes": len(inventory.nodes),
        "pods": len(inventory.pods),
        "pdbs": len(inventory.pdbs),
        "read_s": read,
    }
    if what == "plan":
        target = Target("kubernetes", cluster.context_name, cluster.server)
        plan = build_plan(inventory, PlanOptions(max_unavailable=20, force=True), target)
        row["waves"] = len(plan.waves)
    row["total_s"] = time.perf_counter() - t0
    row["requests"] = cluster.requests
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def populate(lab: Any, nodes: list[str], pods: int) -> None:
    """Namespaces, PDBs and bare pods bound round-robin to the workers; waits for kwok to
    start them all."""
    from kubernetes import client, config

    api = config.new_client_from_config(str(lab.kubeconfig))
    core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    namespaces = [f"bench-{i:02d}" for i in range(NAMESPACES)]
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})

    def pdb(app: int) -> None:
        ns = namespaces[app % NAMESPACES]
        policy.create_namespaced_pod_disruption_budget(
            ns,
            {
                "metadata": {"name": f"app-{app}"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": f"app-{app}"}}},
            },
        )

    def pod(i: int) -> None:
        app = i // PODS_PER_APP
        core.create_namespaced_pod(
            namespaces[app % NAMESPACES],
            {
                "metadata": {"name": f"p-{i}", "labels": {"app": f"app-{app}"}},
                "spec": {
                    "nodeName": nodes[i % len(nodes)],
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                },
            },
        )

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(pdb, range((pods + PODS_PER_APP - 1) // PODS_PER_APP)))
        list(pool.map(pod, range(pods)))
    print(f"created {pods} pods in {time.monotonic() - start:.0f} s", flush=True)

    # kwok starts them; on two cores it can miss one now and then (a run ended with 1 of
    # 30,000 never Running). The benchmark reads objects, not containers: a handful of
    # stragglers that stop moving for 2 minutes are reported and the run goes on.
    deadline = time.monotonic() + 900
    last, since = -1, time.monotonic()
    while True:
        pending = core.list_pod_for_all_namespaces(field_selector="status.phase!=Running", limit=1)
        left = (pending.metadata.remaining_item_count or 0) + len(pending.items)
        if not left:
            print(f"all pods Running {time.monotonic() - start:.0f} s after the first was created", flush=True)
            return
        if left != last:
            last, since = left, time.monotonic()
        if left <= max(pods // 1000, 1) and time.monotonic() - since > 120:
            print(f"{left} pod(s) not Running and not moving for 2 min: going on without them", flush=True)
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{left} pods still not Running after 15 min")
        time.sleep(2)


def rounds(
    kubeconfig: str, repeat: int, kubectl_bin: str, tmp: str
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """``repeat`` rounds of plan, kubectl, floor and inventory, interleaved: each round meets
    the same machine."""
    names = [name for _, name in served_lists(kubeconfig)]
    cache = str(Path(tmp) / "kubectl-cache")

    def fresh(what: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, __file__, "--measure", kubeconfig, what], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    kubectl(kubectl_bin, kubeconfig, names, cache)  # warms kubectl's discovery cache
    runs: dict[str, list[dict[str, Any]]] = {w: [] for w in ("inventory", "plan", "kubectl", "floor")}
    for _ in range(repeat):
        runs["plan"].append(fresh("plan"))
        runs["kubectl"].append(kubectl(kubectl_bin, kubeconfig, names, cache))
        runs["floor"].append(fresh("floor"))
        runs["inventory"].append(fresh("inventory"))
    return runs, names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--kubectl", help="kubectl to compare with (default: tools/kube/build kubectl)")
    parser.add_argument(
        "--hold", action="store_true", help="after populating, print the kubeconfig and keep the lab up until Ctrl-C"
    )
    parser.add_argument("--lab", metavar="KUBECONFIG", help="measure in a lab already up (one --hold printed)")
    parser.add_argument("--measure", nargs=2, metavar=("KUBECONFIG", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kubeconfig, what = args.measure
        print(json.dumps(floor(kubeconfig) if what == "floor" else measure(kubeconfig, what)))
        return 0

    from tests import labsupport

    kubectl_bin = args.kubectl or labsupport.kubectl_bin()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory(prefix="cni-migrate-bench-") as tmp:
        if args.lab:
            runs, names = rounds(args.lab, args.repeat, kubectl_bin, tmp)
        else:
            lab_py = labsupport.lab_module()
            lab = lab_py.KubeLab(Path(tmp) / "lab", labsupport.bin_dir(), die_with_parent=True)
            # Pod CIDRs 10.64.0.0/24 onwards: the lab's default 192.168.<i>.0/24 stops at 255 nodes.
            specs = [lab_py.NodeSpec("cp-1", control_plane=True, pod_cidr="10.64.0.0/24")] + [
                lab_py.NodeSpec(f"worker-{i}", pod_cidr=f"10.{64 + i // 256}.{i % 256}.0/24")
                for i in range(1, args.nodes)
            ]
            t0 = time.monotonic()
            kubeconfig = lab.up(node_specs=specs, timeout=900)
            print(f"lab up: {len(specs)} nodes with calico-node in {time.monotonic() - t0:.0f} s")
            try:
                t0 = time.monotonic()
                populate(lab, [s.name for s in specs[1:]], args.pods)
                print(f"populated: {args.pods} pods in {time.monotonic() - t0:.0f} s")
                if args.hold:
                    print(f"lab held: --lab {kubeconfig} (Ctrl-C or SIGTERM ends it)", flush=True)
                    # Also when started in the background, where a shell ignores SIGINT for it.
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    signal.signal(signal.SIGTERM, signal.default_int_handler)
                    try:
                        while True:
                            time.sleep(3600)
                    except KeyboardInterrupt:
                        return 0
                runs, names = rounds(str(kubeconfig), args.repeat, kubectl_bin, tmp)
            finally:
                lab.down()
    rows = []
    for what, rs in runs.items():
        times = [r["total_s"] for r in rs]
        rows.append(
            {
                "what": what,
                **{k: rs[0].get(k, "") for k in ("nodes", "pods", "pdbs", "requests")},
                "min_s": round(min(times), 2),
                "median_s": round(statistics.median(times), 2),
                "read_median_s": round(statistics.median(r["read_s"] for r in rs), 2) if "read_s" in rs[0] else "",
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 1) if "peak_rss_mb" in rs[0] else "",
            }
        )
    header = ("what", "nodes", "pods", "pdbs", "requests", "min_s", "median_s", "read_median_s", "peak_rss_mb")
    print(" ".join(f"{h:>13}" for h in header))
    for row in rows:
        print(" ".join(f"{row[h]:>13}" for h in header))
    ratios = {}
    for base in ("kubectl", "floor"):
        each = [p["total_s"] / b["total_s"] for p, b in zip(runs["plan"], runs[base], strict=True)]
        ratios[f"plan/{base}"] = {"min": round(min(each), 2), "median": round(statistics.median(each), 2)}
        print(
            f"plan / {base}: min {min(each):.2f}, median {statistics.median(each):.2f} (each round: "
            f"{', '.join(f'{r:.2f}' for r in each)})"
        )
    print(f"lists compared: {', '.join(names)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratios, "lists": names}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
