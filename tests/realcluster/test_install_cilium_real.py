"""apply --install-cilium with Helm and Cilium's real chart, on the real control plane.

Helm (built from its pinned Go module) installs the chart of the pinned release (taken from
Cilium's Go module) with the values cni-migrate derives from the plan. What this proves:
the values make the real chart render a cilium-config that passes cni-migrate's own live
check, and the chart's agent DaemonSet is what the per-node swap restarts. kwok nodes run
no containers: the tests' node agent starts the chart's pods, as a kubelet would.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from migrate.helm import CILIUM_VERSION
from tests import labsupport
from tests.realcluster.clilab import CliLab

pytestmark = pytest.mark.realcluster


def test_apply_installs_the_real_chart_in_migration_mode_then_migrates(tmp_path):
    helm, chart = labsupport.helm_bin(), labsupport.cilium_chart(CILIUM_VERSION)
    lab = CliLab(tmp_path, nodes=3, cilium=False)
    try:
        r = lab.plan("--install-cilium", "--cilium-chart", str(chart))
        assert r.code == 0, r
        assert "apply installs it in migration mode before the first node" in r.out

        r = lab.cli("apply", "p.yaml", "--yes", "--helm", str(helm), timeout=900)
        assert r.code == 0, r
        assert "install-cilium: installed Cilium" in r.out
        assert "3/3 node(s) migrated" in r.out

        # Helm's release record, and the chart's own objects.
        releases = lab.core.list_namespaced_secret("kube-system", label_selector="owner=helm,name=cilium").items
        assert [s.metadata.labels["status"] for s in releases] == ["deployed"]
        config = lab.core.read_namespaced_config_map("cilium-config", "kube-system").data
        assert config["custom-cni-conf"] == "true"
        assert config["enable-policy"] == "never"
        assert config["cluster-pool-ipv4-cidr"] == "10.245.0.0/16"
        assert config["tunnel-port"] == "8473"
        agents = lab.apps.read_namespaced_daemon_set("cilium", "kube-system")
        assert agents.status.number_ready == 3

        status = json.loads(
            subprocess.run(
                [*lab.base, "status", "p.yaml", "-o", "json"],
                cwd=lab.tmp,
                env=lab.env(),
                capture_output=True,
                check=True,
            ).stdout
        )
        assert status["prepare"] == {"install-cilium": "succeeded"}
        assert {n["state"] for n in status["nodes"]} == {"migrated"}
        # Every node's swap restarted the chart's agent there: its pods are newer than the install.
        assert sorted(node for node, what, _ in lab.agent.log if what == "agent-start") == sorted(lab.nodes * 2)

        # finalize --upgrade-cilium: the same release, upgraded to the final values, then the
        # agents restarted one node at a time to pick them up.
        r = lab.cli("finalize", "p.yaml", "--yes", "--upgrade-cilium", "--helm", str(helm), timeout=900)
        assert r.code == 0, r
        assert r.out.splitlines()[0].startswith("upgrade-cilium: upgraded release kube-system/cilium")
        # With the final values, policy is enforced: the allowed client connects, the denied one not.
        assert "check-policy: NetworkPolicy enforced" in r.out
        config = lab.core.read_namespaced_config_map("cilium-config", "kube-system").data
        assert (config["custom-cni-conf"], config["enable-policy"], config["cni-uninstall"]) == (
            "false",
            "default",
            "true",
        )
        assert config["cluster-pool-ipv4-cidr"] == "10.245.0.0/16"  # --reuse-values kept the rest
        releases = lab.core.list_namespaced_secret("kube-system", label_selector="owner=helm,name=cilium").items
        assert sorted((s.metadata.labels["version"], s.metadata.labels["status"]) for s in releases) == [
            ("1", "superseded"),
            ("2", "deployed"),
        ]
        assert sorted(node for node, what, _ in lab.agent.log if what == "agent-start") == sorted(lab.nodes * 3)
    finally:
        lab.close()
