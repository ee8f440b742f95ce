"""``tools/kube/lab up|down|status|env``: the lab from a shell. Every command takes the
lab directory, so ``down`` and ``status`` work on a lab another process started."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import LabError
from .lab import KubeLab
from .nodes import NodeSpec, node_ready
from .processes import COMPONENTS

DESCRIPTION = "A real Kubernetes control plane on loopback, with kwok-simulated nodes."


def _default_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(base) / f"cni-migrate-lab-{os.getuid()}"


def _parse_overrides(values: list[str]) -> dict[str, dict[str, Any]]:
    """NAME:field=value[,field=value] -> {NAME: {field: value}}"""
    out: dict[str, dict[str, Any]] = {}
    fields = {f.name: f for f in dataclasses.fields(NodeSpec)}
    for item in values:
        name, sep, rest = item.partition(":")
        if not sep:
            raise SystemExit(f"--node-override {item!r}: expected NAME:field=value[,field=value]")
        for kv in rest.split(","):
            k, sep, v = kv.partition("=")
            k = k.strip().replace("-", "_")
            if not sep or k not in fields:
                raise SystemExit(f"--node-override {item!r}: unknown field {k!r}; known: {sorted(fields)}")
            val: Any = v
            if k in ("control_plane", "unschedulable"):
                val = v.lower() in ("1", "true", "yes")
            elif k in ("labels", "annotations"):
                val = dict(p.split("=", 1) for p in v.split(";") if p)
            out.setdefault(name, {})[k] = val
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/kube/lab", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start a lab; prints 'export KUBECONFIG=...'")
    p_up.add_argument("--nodes", type=int, default=6, help="1 control-plane + N-1 workers (default 6)")
    p_up.add_argument(
        "--node-override",
        action="append",
        default=[],
        metavar="NAME:field=value,...",
        help="e.g. worker-2:kernel_version=4.19.0 (NodeSpec fields; repeatable)",
    )
    p_up.add_argument("--no-fixtures", action="store_true", help="skip Calico/Cilium fixtures")
    p_up.add_argument(
        "--pod-delete-delay-ms", type=int, default=0, help="how long kwok keeps terminating pods before deleting them"
    )
    p_up.add_argument("--timeout", type=float, default=180)
    for p in [p_up] + [
        sub.add_parser(n, help=h)
        for n, h in (
            ("down", "stop every lab process and remove the lab's files"),
            ("status", "show components, ports and nodes"),
            ("env", "print 'export KUBECONFIG=...' for a running lab"),
        )
    ]:
        p.add_argument("--dir", type=Path, default=_default_dir(), help="lab directory (default %(default)s)")
        p.add_argument("--bin-dir", type=Path, default=None, help="prebuilt binaries (default: tools/kube/build)")
        if p.prog.endswith("down"):
            p.add_argument("--keep-logs", action="store_true", help="keep DIR/logs")
    args = ap.parse_args(argv)
    lab = KubeLab(
        args.dir, args.bin_dir, **({"pod_delete_delay_ms": args.pod_delete_delay_ms} if args.cmd == "up" else {})
    )
    try:
        if args.cmd == "up":
            t0 = time.monotonic()
            print(f"lab: starting in {lab.workdir}", file=sys.stderr)
            lab.up(
                args.nodes, _parse_overrides(args.node_override), fixtures=not args.no_fixtures, timeout=args.timeout
            )
            print(
                f"lab: up in {time.monotonic() - t0:.1f}s ({lab.kubernetes_version}, "
                f"{args.nodes} kwok nodes); logs in {lab.workdir / 'logs'}",
                file=sys.stderr,
            )
            print(f"export KUBECONFIG={lab.kubeconfig}")
        elif args.cmd == "down":
            stopped = lab.down(keep_logs=args.keep_logs)
            print(f"lab: stopped {len(stopped)} process(es) {stopped}", file=sys.stderr)
        elif args.cmd == "env":
            if not lab.running():
                print("lab: not running", file=sys.stderr)
                return 1
            print(f"export KUBECONFIG={lab.kubeconfig}")
        elif args.cmd == "status":
            pids = lab.pids()
            st = lab.state()
            for comp in COMPONENTS:
                port = st.get("ports", {}).get(comp, "-")
                print(f"{comp:26} {'running pid ' + str(pids[comp]) if comp in pids else 'stopped':22} port {port}")
            if "kube-apiserver" in pids:
                for n in lab.api.get("/api/v1/nodes")["items"]:
                    info = n["status"].get("nodeInfo", {})
                    print(
                        f"node {n['metadata']['name']:20} ready={node_ready(n)!s:5} "
                        f"kernel={info.get('kernelVersion')} kubelet={info.get('kubeletVersion')}"
                    )
            return 0 if pids else 1
    except (LabError, ValueError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        if args.cmd == "up" and (lab.workdir / "logs").exists():
            print(
                f"lab: logs kept in {lab.workdir / 'logs'}; clean up with: lab down --dir {lab.workdir}",
                file=sys.stderr,
            )
        return 1
    return 0
