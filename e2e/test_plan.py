"""cni-migrate plan against the real kind cluster (its kubeconfig, the real apiserver)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kindlab
import yaml


def cni_migrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI from this checkout (python -m migrate.cli with the repo on PYTHONPATH)."""
    env = {**(env or os.environ), "PYTHONPATH": str(kindlab.REPO)}
    return subprocess.run(
        [sys.executable, "-m", "migrate.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        cwd=kindlab.REPO,
    )


def test_plan_blocks_without_calico(workload: kindlab.Cluster, artifacts: Path) -> None:
    out = artifacts / "plan.yaml"
    proc = cni_migrate("plan", "--kubeconfig", str(workload.kubeconfig), "--context", workload.context, "-o", str(out))
    (artifacts / "plan.txt").write_text(proc.stdout + proc.stderr)
    print("\n" + proc.stdout + proc.stderr)
    assert proc.returncode == 3, f"exit {proc.returncode}: {proc.stderr}"
    plan = yaml.safe_load(out.read_text())
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
    planned = sorted(n["name"] for w in plan["waves"] for n in w["nodes"])
    excluded = sorted(e["name"] for e in plan["excluded"])
    assert sorted(planned + excluded) == sorted(n["metadata"]["name"] for n in workload.nodes())
    assert set(workload.workers()) <= set(planned)
    for name in planned:  # the plan also lists the nodes on the console
        assert name in proc.stdout
