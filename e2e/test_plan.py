"""cni-migrate plan against the real kind cluster (its kubeconfig, the real apiserver)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kindlab
import pytest
import yaml


def run_plan(workload: kindlab.KindCluster, artifacts: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = artifacts / "plan.yaml"
    # The artifacts directory outlives a run (/tmp/cni-migrate-e2e): replace the last run's plan.
    proc = kindlab.cni_migrate(
        "plan",
        "--kubeconfig",
        str(workload.kubeconfig),
        "--context",
        workload.context,
        "--out",
        str(out),
        "--overwrite",
    )
    (artifacts / "plan.txt").write_text(proc.stdout + proc.stderr)
    print("\n" + proc.stdout + proc.stderr)
    return proc, yaml.safe_load(out.read_text())


def check_waves(proc: subprocess.CompletedProcess[str], plan: dict, workload: kindlab.KindCluster) -> None:
    planned = sorted(n["name"] for w in plan["waves"] for n in w["nodes"])
    excluded = sorted(e["name"] for e in plan["excluded"])
    assert sorted(planned + excluded) == sorted(n["metadata"]["name"] for n in workload.nodes())
    assert set(workload.workers()) <= set(planned)
    for name in planned:  # the plan also lists the nodes on the console
        assert name in proc.stdout


def test_plan_blocks_without_calico(workload: kindlab.KindCluster, artifacts: Path) -> None:
    if workload.cni == "calico":
        pytest.skip("the cluster runs Calico: test_plan_on_calico")
    proc, plan = run_plan(workload, artifacts)
    assert proc.returncode == 3, f"exit {proc.returncode}: {proc.stderr}"
    findings = {f["check"]: f for f in plan["findings"]}
    # The stand-in CNI is not Calico: nothing to migrate from, the one blocker; Cilium is
    # not installed either, a warning; the policy pair's NetworkPolicy is listed as not
    # enforced during the window. Nothing else (PDB budgets, permissions, nodes) is off.
    assert {c: f["severity"] for c, f in findings.items()} == {
        "calico-installed": "blocking",
        "cilium-installed": "warning",
        "network-policy": "warning",  # the workload's policy pair: not enforced during the window
    }, findings
    assert findings["network-policy"]["subjects"] == ["NetworkPolicy e2e/policy-target"]
    check_waves(proc, plan, workload)


def test_plan_on_calico(workload: kindlab.KindCluster, artifacts: Path) -> None:
    """On the lab's Calico (manifest install, VXLAN Always, kubernetes-internal-ip address
    detection) the plan has no blocker: Cilium is not installed yet, the workload's policy
    pair is not enforced during the window, and kube-proxy's clusterCIDR (Calico's pool)
    does not cover Cilium's (three warnings); the single-replica Deployments surge; exit 0."""
    if workload.cni != "calico":
        pytest.skip(f"CNI is {workload.cni}, not Calico")
    proc, plan = run_plan(workload, artifacts)
    findings = {f["check"]: f for f in plan["findings"]}
    assert {c: f["severity"] for c, f in findings.items()} == {
        "cilium-installed": "warning",
        "network-policy": "warning",
        "kube-proxy-cluster-cidr": "warning",
    }, findings
    surged = sorted(d for w in plan["waves"] for n in w["nodes"] for d in n.get("surge", []))
    assert "e2e/solo" in surged and "e2e/web" not in surged, surged  # web's budget allows one at a time
    assert findings["network-policy"]["subjects"] == ["NetworkPolicy e2e/policy-target"]
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    check_waves(proc, plan, workload)
