"""Bad input against a real API server: every case one line, exit 2, and no write.

One lab serves all cases. Watches on everything cni-migrate could write (nodes' spec and
labels, pods, Events, and the ConfigMaps and Leases of its namespace) run while the CLI
is fed broken plan files, flags, kubeconfigs and credentials (a wrong CA, an expired
client certificate, one from an unknown CA, a bogus token); afterwards the watches must
have seen nothing from it.
"""

from __future__ import annotations

import base64
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from migrate import planfile
from migrate.model import ClusterIdentity
from migrate.plan import Plan
from tests.realcluster.clilab import CliLab, Result, Watcher
from tests.realcluster.test_cli_real import read_only_identity

pytestmark = pytest.mark.realcluster
OFFLINE = ("status", "runbook")  # commands that read only files: no --kubeconfig


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def sign(pki: Path, csr: str, ca: Path, out: str, *, days: int) -> None:
    """Sign ``csr`` with the CA whose files are ``ca``.crt and ``ca``.key."""
    ca_crt, ca_key = str(ca.with_suffix(".crt")), str(ca.with_suffix(".key"))
    openssl(
        pki,
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        out,
        "-days",
        str(days),
    )


def kubeconfig_variant(
    lab: CliLab,
    path: Path,
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    server: str | None = None,
) -> Path:
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    if ca is not None:
        doc["clusters"][0]["cluster"]["certificate-authority-data"] = b64(ca)
    if server is not None:
        doc["clusters"][0]["cluster"]["server"] = server
    user = doc["users"][0]["user"]
    if cert is not None and key is not None:
        user["client-certificate-data"], user["client-key-data"] = b64(cert), b64(key)
    if token is not None:
        doc["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def credentials(lab: CliLab, tmp: Path) -> dict[str, Path]:
    """Kubeconfigs with broken TLS or credentials, made with openssl."""
    pki = tmp / "bad-pki"
    pki.mkdir()
    openssl(
        pki,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other-ca.key",
        "-out",
        "other-ca.crt",
        "-subj",
        "/CN=not-the-lab-ca",
        "-days",
        "1",
    )
    openssl(
        pki,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "user.key",
        "-out",
        "user.csr",
        "-subj",
        "/O=system:masters/CN=intruder",
    )
    # Signed by the lab CA but valid for no time at all: expired a second later.
    sign(pki, "user.csr", lab.lab.pki / "ca", "expired.crt", days=0)
    sign(pki, "user.csr", pki / "other-ca", "foreign.crt", days=1)
    time.sleep(1.5)
    return {
        "wrong-ca": kubeconfig_variant(lab, tmp / "wrong-ca.kubeconfig", ca=pki / "other-ca.crt"),
        "expired-cert": kubeconfig_variant(
            lab, tmp / "expired.kubeconfig", cert=pki / "expired.crt", key=pki / "user.key"
        ),
        "foreign-cert": kubeconfig_variant(
            lab, tmp / "foreign.kubeconfig", cert=pki / "foreign.crt", key=pki / "user.key"
        ),
        "bogus-token": kubeconfig_variant(lab, tmp / "token.kubeconfig", token="not-a-token"),
        "closed-port": kubeconfig_variant(lab, tmp / "closed.kubeconfig", server="https://127.0.0.1:1"),
    }


def plan_variants(lab: CliLab, tmp: Path) -> dict[str, Path]:
    good = tmp / "p.yaml"
    text = good.read_text()
    plan = planfile.read(good)
    variants = {
        "garbage": "{{{ not yaml",
        "foreign-kind": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        "checksum-edited": text.replace("maxUnavailable: 2", "maxUnavailable: 3"),
        "truncated": text[: len(text) // 2],
        "empty": "",
        "future-schema": text.replace("cni-migrate.io/v1", "cni-migrate.io/v9"),
    }
    out = {}
    for name, body in variants.items():
        out[name] = tmp / f"{name}.yaml"
        out[name].write_text(body)

    def with_cluster(**changes: object) -> Plan:
        return replace(plan, cluster=replace(plan.cluster, **changes))

    # Made on another cluster: its own kube-system UID, so its own fingerprint.
    other = ClusterIdentity("00000000-0000-0000-0000-000000000000", plan.cluster.server)
    out["other-cluster"] = tmp / "other-cluster.yaml"
    planfile.write(
        with_cluster(kube_system_uid=other.kube_system_uid, fingerprint=other.fingerprint), out["other-cluster"]
    )
    # Its UID edited to match another cluster, the fingerprint left: caught at load.
    out["uid-edited"] = tmp / "uid-edited.yaml"
    planfile.write(with_cluster(kube_system_uid=other.kube_system_uid), out["uid-edited"])
    # Sound, but for a node set the cluster no longer has: one node replaced (a new UID).
    (name, _), *rest = plan.cluster.nodes
    stale = with_cluster(nodes=((name, "11111111-1111-1111-1111-111111111111"), *rest))
    out["stale"] = tmp / "stale.yaml"
    planfile.write(stale, out["stale"])
    return out


def test_forty_bad_inputs_each_exit_2_with_one_line_and_no_cluster_write(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=3)
    watchers: dict[str, Watcher] = {}
    try:
        assert lab.plan("--max-unavailable", "2").code == 0
        plans = plan_variants(lab, tmp_path)
        creds = credentials(lab, tmp_path)
        creds["read-only"] = read_only_identity(lab)  # may get/list/watch nodes and pods, nothing else
        hooks = tmp_path / "bad-hooks"
        hooks.mkdir()
        (hooks / "pre-run").write_text("#!/bin/sh\nexit 0\n")  # not executable
        (tmp_path / "not-yaml.kubeconfig").write_text("{{{ nope")
        (tmp_path / "no-contexts.kubeconfig").write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
        coordination = client.CoordinationV1Api
        watchers = {
            "nodes": Watcher(lab.kubeconfig, "list_node"),
            "pods": Watcher(lab.kubeconfig, "list_pod_for_all_namespaces"),
            "events": Watcher(lab.kubeconfig, "list_event_for_all_namespaces"),
            "configmaps": Watcher(lab.kubeconfig, "list_namespaced_config_map", namespace="cni-migrate"),
            "leases": Watcher(lab.kubeconfig, "list_namespaced_lease", api_class=coordination, namespace="cni-migrate"),
        }
        for w in watchers.values():
            w.start()
        time.sleep(1)  # let the kwok heartbeats and settled controllers show their steady state
        marks = {name: len(w.records) for name, w in watchers.items()}

        p = "p.yaml"
        cases: list[tuple[tuple[str, ...], str, Path | None]] = [
            (("apply", "missing.yaml", "--yes"), "does not exist", None),
            *[
                (("apply", plans[n].name, "--yes"), "", None)
                for n in ("garbage", "foreign-kind", "checksum-edited", "truncated", "empty", "future-schema")
            ],
            (("apply", plans["other-cluster"].name, "--yes"), "another cluster", None),
            (("apply", plans["stale"].name, "--yes"), "stale", None),
            (("apply", plans["uid-edited"].name, "--yes"), "edited", None),
            (("resume", plans["garbage"].name, "--yes"), "", None),
            (("rollback", plans["truncated"].name, "--yes"), "", None),
            (("finalize", plans["checksum-edited"].name, "--yes"), "", None),
            (("status", "missing.yaml"), "does not exist", None),
            (("runbook", plans["foreign-kind"].name), "", None),
            (("apply", p), "--yes", None),
            (("apply", p, "--guided"), "terminal", None),
            (("apply", p, "--yes", "--confirm-each-node"), "--guided", None),
            (("apply", p, "--yes", "--soak", "soon"), "not a duration", None),
            (("apply", p, "--yes", "--window-end", "25:00"), "time of day", None),
            (("apply", p, "--yes", "--window-end", "2020-01-01T00:00:00Z"), "in the past", None),
            (("apply", p, "--yes", "--window-end", "2099-01-01T00:00:00"), "time zone", None),
            (("apply", p, "--yes", "--hooks-dir", str(hooks)), "not executable", None),
            (("apply", p, "--yes", "--hook-timeout", "0"), "--hook-timeout", None),
            (("resume", p, "--yes"), "no interrupted run", None),
            (("rollback", p, "--yes"), "never applied", None),
            (("rollback", p, "--yes", "--node", "ghost"), "not in plan", None),
            (("finalize", p, "--yes"), "", None),
            (("plan", "--max-unavailable", "0"), "--max-unavailable", None),
            (("plan", "--exclude-node", "ghost"), "unknown node", None),
            (("plan", "--cilium-pool-cidr", "10.245.0.0/33"), "not a CIDR", None),
            (("plan", "--sim", "x"), "cannot be combined", None),
            (("plan", "--context", "nope"), "nope", None),
            (("policy-report", "--context", "nope"), "nope", None),
            (("plan",), "does not exist", tmp_path / "missing.kubeconfig"),
            (("plan",), "not valid YAML", tmp_path / "not-yaml.kubeconfig"),
            (("plan",), "", tmp_path / "no-contexts.kubeconfig"),
            *[(("plan",), "", creds[n]) for n in creds if n != "read-only"],
            *[(("apply", p, "--yes"), "", creds[n]) for n in ("wrong-ca", "expired-cert", "bogus-token")],
            (("apply", p, "--yes", "--context", "reader"), "lacks", creds["read-only"]),
            (("rollback", p, "--yes", "--context", "reader"), "lacks", creds["read-only"]),
            (("status", p, "-o", "xml"), "", None),
        ]
        failures = []
        for args, message, kubeconfig in cases:
            if args[0] in OFFLINE:
                proc = subprocess.run([*lab.base, *args], cwd=lab.tmp, env=lab.env(), capture_output=True, text=True)
                r = Result(proc.returncode, proc.stdout, proc.stderr)
            else:
                r = lab.cli(*args, kubeconfig=kubeconfig, timeout=120)
            lines = r.err.strip().splitlines()
            ok = r.code == 2 and len(lines) == 1 and "Traceback" not in r.err and message in r.err
            if not ok:
                failures.append((args, kubeconfig.name if kubeconfig else "", r.code, r.err[-400:]))
        assert not failures, "\n".join(map(str, failures))
        assert len(cases) >= 40, len(cases)

        time.sleep(1)  # anything written would be on the watches by now
        writes = []
        for name, w in watchers.items():
            for kind, obj in w.records[marks[name] :]:
                if name == "nodes":
                    continue  # judged below, on spec and labels only (kwok heartbeats change status)
                if name == "events" and "cni-migrate" not in str(obj.get("reportingComponent") or obj.get("source")):
                    continue  # the controllers' own Events
                if (
                    name == "pods"
                    and obj["metadata"]["namespace"] not in ("cni-migrate",)
                    and kind != "DELETED"
                    and not obj["metadata"].get("deletionTimestamp")
                ):
                    continue  # controllers updating pod status
                writes.append((name, kind, obj["metadata"].get("namespace"), obj["metadata"]["name"]))

        def shape(o: dict) -> tuple:
            labels = tuple(sorted((o["metadata"].get("labels") or {}).items()))
            return o["metadata"]["name"], o["spec"].get("unschedulable"), labels

        before = {shape(o) for _, o in watchers["nodes"].records[: marks["nodes"]]}
        after = {shape(o) for _, o in watchers["nodes"].records[marks["nodes"] :]}
        writes += [("node", "changed", "", s[0]) for s in after - before]
        assert not writes, writes
        print(f"\n{len(cases)} bad inputs: exit 2, one line each, no write seen by the watches")
    finally:
        for w in watchers.values():
            w.stop()
        lab.close()
