"""HelmInstaller: the helm command line it runs, and what it makes of helm's answer.

A stand-in ``helm`` script records its arguments and the values file it was given (content
and mode), so the tests see exactly what a real helm would get.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from migrate.cilium import migration_values
from migrate.errors import BadInput, PermanentError
from migrate.helm import CILIUM_REPO, HelmInstaller, chart_reference
from migrate.plan import PlanOptions

FAKE_HELM = """#!/bin/sh
out="$(dirname "$0")/calls"
values=""
prev=""
for a in "$@"; do [ "$prev" = "--values" ] && values="$a"; prev="$a"; done
python3 - "$out" "$values" "$@" <<'PY'
import json, os, stat, sys
out, values, args = sys.argv[1], sys.argv[2], sys.argv[3:]
mode = oct(stat.S_IMODE(os.stat(values).st_mode)) if values else ""
with open(out, "a") as f:
    f.write(json.dumps({"args": args, "values": open(values).read() if values else "", "mode": mode}) + "\\n")
PY
if [ "$1" = "status" ]; then
  [ -z "$PENDING" ] && { echo "Error: release: not found" >&2; exit 1; }
  printf '{"version": %s, "info": {"status": "%s"}}\n' "$PENDING_REVISION" "$PENDING"
  exit 0
fi
[ -n "$FAIL" ] && { echo "Error: INSTALLATION FAILED: context deadline exceeded" >&2; exit 1; }
exit 0
"""


@pytest.fixture
def helm(tmp_path: Path) -> Path:
    path = tmp_path / "helm"
    path.write_text(FAKE_HELM)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(helm: Path, verb: str = "upgrade") -> list[dict]:
    """The stand-in's calls with ``verb`` ("" for all of them)."""
    every = [json.loads(line) for line in (helm.parent / "calls").read_text().splitlines()]
    return [c for c in every if not verb or c["args"][0] == verb]


def test_a_chart_name_comes_from_ciliums_repository_at_the_pinned_version(helm):
    installer = HelmInstaller.find(str(helm), chart="cilium", version="1.18.4", kubeconfig="/k/config", context="prod")
    values = migration_values(PlanOptions(cilium_pool_cidr="10.50.0.0/16"))
    message = installer(values)
    (call,) = calls(helm)
    args = call["args"]
    assert args[:6] == ["upgrade", "--install", "cilium", "cilium", "--namespace", "kube-system"]
    assert args[args.index("--repo") + 1] == CILIUM_REPO
    assert args[args.index("--version") + 1] == "1.18.4"
    assert "--wait" in args
    assert args[args.index("--kubeconfig") + 1] == "/k/config"
    assert args[args.index("--kube-context") + 1] == "prod"
    assert yaml.safe_load(call["values"]) == values
    assert call["mode"] == "0o600"
    assert message == "installed Cilium (cilium 1.18.4) in migration mode with helm, release kube-system/cilium"


def test_finalize_upgrades_the_release_keeping_its_other_values(helm):
    message = HelmInstaller.find(str(helm), chart="cilium", version="1.18.4").upgrade({"policyEnforcementMode": "x"})
    args = calls(helm)[0]["args"]
    assert args[:4] == ["upgrade", "--reuse-values", "cilium", "cilium"]
    assert "--install" not in args
    assert message == "upgraded release kube-system/cilium (cilium 1.18.4) to the final values with helm"


def test_a_local_chart_is_used_as_it_is(helm, tmp_path):
    chart = tmp_path / "cilium-chart"
    chart.mkdir()
    assert chart_reference(str(chart), "") == (str(chart), "")
    HelmInstaller.find(str(helm), chart=str(chart), version="1.18.4")({"a": 1})
    args = calls(helm)[0]["args"]
    assert args[3] == str(chart)
    assert "--repo" not in args and "--version" not in args
    assert "--kubeconfig" not in args and "--kube-context" not in args  # helm resolves them like kubectl


@pytest.mark.parametrize("chart", ["oci://registry.example/cilium/cilium", "mirror/cilium"])
def test_oci_and_repo_aliases_keep_their_own_source(helm, chart):
    HelmInstaller.find(str(helm), chart=chart, version="1.18.4")({})
    args = calls(helm)[0]["args"]
    assert args[3] == chart and "--repo" not in args
    assert args[args.index("--version") + 1] == "1.18.4"


def test_a_failed_install_is_one_line_with_helms_last_word(helm, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(PermanentError, match=r"^helm upgrade --install cilium failed: Error: INSTALLATION FAILED"):
        HelmInstaller.find(str(helm))({})


def test_no_helm_is_bad_input_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BadInput, match=r"helm is not on PATH \(install it or pass --helm PATH\)"):
        HelmInstaller.find()
    with pytest.raises(BadInput, match="/nowhere/helm is not an executable"):
        HelmInstaller.find("/nowhere/helm")


@pytest.mark.parametrize(
    ("status", "revision", "undo"), [("pending-install", 1, "uninstall"), ("pending-upgrade", 2, "rollback")]
)
def test_a_release_left_pending_by_a_killed_helm_is_reset_before_trying_again(
    helm, monkeypatch, status, revision, undo
):
    monkeypatch.setenv("PENDING", status)
    monkeypatch.setenv("PENDING_REVISION", str(revision))
    HelmInstaller.find(str(helm), kubeconfig="/k", context="c")({})
    verbs = [c["args"][0] for c in calls(helm, "")]
    assert verbs == ["status", undo, "upgrade"]
    (reset,) = calls(helm, undo)
    assert reset["args"][1:4] == ["cilium", "--namespace", "kube-system"]
    assert reset["args"][-4:] == ["--kubeconfig", "/k", "--kube-context", "c"]


def test_a_deployed_release_is_left_alone_before_the_upgrade(helm, monkeypatch):
    monkeypatch.setenv("PENDING", "deployed")
    monkeypatch.setenv("PENDING_REVISION", "1")
    HelmInstaller.find(str(helm)).upgrade({})
    assert [c["args"][0] for c in calls(helm, "")] == ["status", "upgrade"]


@pytest.mark.parametrize(
    ("chart", "version", "error"),
    [
        ("", "1.18.4", "--cilium-chart '' is not a chart reference"),
        ("--set=x", "1.18.4", "is not a chart reference"),
        ("cilium", "", "--cilium-version '' is not a version"),
        ("cilium", "--devel", "is not a version"),
        ("./no/such/chart", "", "--cilium-chart ./no/such/chart does not exist"),
    ],
)
def test_plan_refuses_a_chart_it_cannot_pin(chart, version, error):
    with pytest.raises(BadInput, match=error):
        chart_reference(chart, version)


def test_a_relative_chart_path_is_recorded_absolute_and_a_bare_name_is_never_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cilium").mkdir()  # a directory named like the chart, in the working directory
    assert chart_reference("cilium", "1.18.4") == ("cilium", "1.18.4")
    assert chart_reference("./cilium", "") == (str(tmp_path / "cilium"), "")
    assert not HelmInstaller("helm", chart="cilium").local
