"""Rehearsal on a copy (issue 26, part 4): a real cluster dumped with tools/dump-cluster and
kubectl, copied into a simulated cluster, plans exactly what the real cluster plans, and the
whole apply and rollback run on the copy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from migrate import planfile
from migrate.plan import Plan
from tests import labsupport
from tests.realcluster.clilab import CliLab, Result

pytestmark = pytest.mark.realcluster
REPO = Path(__file__).resolve().parents[2]


def shape(plan: Plan) -> object:
    return (
        [[n.name for n in wave.nodes] for wave in plan.waves],
        sorted((f.check, f.severity.value, f.message, f.subjects) for f in plan.findings),
        plan.excluded,
        plan.options,
    )


def test_a_copy_of_a_real_cluster_plans_what_the_cluster_plans_and_rehearses_it(tmp_path: Path) -> None:
    lab = CliLab(tmp_path, nodes=5)
    try:
        dumped = subprocess.run(
            [str(REPO / "tools" / "dump-cluster"), "--kubeconfig", str(lab.kubeconfig)],
            env={**os.environ, "KUBECTL": labsupport.kubectl_bin()},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert dumped.returncode == 0, dumped.stderr
        (tmp_path / "cluster.yaml").write_text(dumped.stdout)

        def sim(*args: str) -> Result:
            proc = subprocess.run(
                [*lab.base, *args], cwd=tmp_path, env=lab.env(), capture_output=True, text=True, timeout=300
            )
            return Result(proc.returncode, proc.stdout, proc.stderr)

        created = sim("sim", "create", "copy", "--from", "cluster.yaml")
        assert created.code == 0, created
        assert "created simulated cluster copy from cluster.yaml: 5 nodes" in created.out, created.out

        flags = ("--force", "--delete-emptydir-data", "--max-unavailable", "2")
        real = lab.plan(*flags, out="real.yaml")
        assert real.code == 0, real
        rehearsal = sim("plan", "--sim", "copy", *flags, "--out", "copy.yaml")
        assert rehearsal.code == 0, rehearsal
        assert shape(planfile.read(tmp_path / "copy.yaml")) == shape(planfile.read(tmp_path / "real.yaml"))

        applied = sim("apply", "copy.yaml", "--yes")
        assert applied.code == 0, applied
        shown = sim("sim", "show", "copy")
        assert shown.out.count(" cilium ") == 5, shown.out
        rolled = sim("rollback", "copy.yaml", "--yes")
        assert rolled.code == 0, rolled
        shown = sim("sim", "show", "copy")
        assert shown.out.count(" calico ") == 5, shown.out
        # The real cluster was only read: every node still on Calico, none cordoned.
        assert lab.cordoned() == []
    finally:
        lab.close()
