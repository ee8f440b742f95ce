"""The runbook: a golden file for the demo cluster, and what a change board must find in it.

Regenerate the golden file (and the shipped example) after an intended change with
``UPDATE_GOLDEN=1 pytest tests/unit/test_runbook.py`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from migrate.backends import simworld
from migrate.backends.simulated import SimStore
from migrate.errors import MigrateError
from migrate.estimate import ASSUMED_PODS_PER_NODE, DRAIN_SECONDS_PER_POD, STEP_SECONDS, estimate
from migrate.plan import ClusterSnapshot, Finding, NodePlan, Plan, PlanOptions, Severity, StepKind, Target, Wave
from migrate.planner import build_plan
from migrate.runbook import manual_commands, render_runbook, view
from migrate.verdicts import CHECKS

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "runbook-demo.md"
EXAMPLE = ROOT / "runbooks" / "examples" / "demo.md"
PLAN_PATH = "plans/demo.yaml"


@pytest.fixture
def demo_plan(tmp_path: Path) -> Plan:
    cluster = SimStore(tmp_path).create("demo", simworld.default_world("demo"))
    options = PlanOptions(max_unavailable=2, force=True, delete_emptydir_data=True)
    return build_plan(cluster.inventory(), options, Target("sim", "demo", "sim://demo"))


def test_demo_runbook_matches_the_golden_file(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    if os.environ.get("UPDATE_GOLDEN"):
        for path in (GOLDEN, EXAMPLE):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    assert text == GOLDEN.read_text(), "runbook changed: review, then regenerate with UPDATE_GOLDEN=1"


def test_shipped_example_is_the_demo_runbook(demo_plan):
    assert EXAMPLE.read_text() == render_runbook(demo_plan, PLAN_PATH)


def test_rendering_twice_gives_the_same_text(demo_plan):
    assert render_runbook(demo_plan, PLAN_PATH) == render_runbook(demo_plan, PLAN_PATH)


def test_every_node_appears_with_its_steps_and_rollback_command(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    assert len(demo_plan.nodes) == 6
    for node in demo_plan.nodes:
        assert f"#### Node `{node.name}`" in text
        assert f"cni-migrate rollback {PLAN_PATH} --node {node.name} --yes" in text
        assert f"kubectl cordon {node.name}\n" in text
        assert f"kubectl uncordon {node.name}\n" in text
        for step in node.steps:
            assert f"(`{step.id}`)" in text
    assert f"cni-migrate rollback {PLAN_PATH} --yes" in text
    assert f"cni-migrate resume {PLAN_PATH} --yes" in text


def test_scope_names_cluster_plan_and_checksum(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    assert "sim://demo" in text
    assert demo_plan.id in text and demo_plan.checksum in text
    assert "| Nodes to migrate | 6 of 6 |" in text
    assert "| Waves | 4 |" in text


def test_every_exit_code_is_explained(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    for code in (0, 2, 3, 4, 5, 6):
        assert f"\n| {code} | " in text


def test_policy_caveat_lists_network_policies(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    assert "policyEnforcementMode=never" in text
    assert "- `NetworkPolicy shop/allow-frontend-to-api`" in text


def test_validate_lists_every_check(demo_plan):
    text = render_runbook(demo_plan, PLAN_PATH)
    for check in CHECKS:
        assert f"- `{check}`: " in text


def test_blocking_findings_are_shown_before_anything_else(demo_plan):
    blocked = dataclasses.replace(
        demo_plan,
        findings=(
            *demo_plan.findings,
            Finding("pdb-budget", Severity.BLOCKING, "PDB shop/api allows no disruption", "scale up", ("shop/api",)),
        ),
    )
    text = render_runbook(blocked, PLAN_PATH)
    banner = text.index("**BLOCKED: `cni-migrate apply` refuses this plan (exit 3).**")
    assert banner < text.index("## 1. Scope")
    assert "- **BLOCKING `pdb-budget`**: PDB shop/api allows no disruption" in text
    assert "  - Fix: scale up" in text
    assert "cni-migrate plan --sim demo --max-unavailable 2" in text  # how to make the plan again
    assert "BLOCKED" not in render_runbook(demo_plan, PLAN_PATH)


def test_drain_command_carries_the_plan_flags():
    plan = _plan(PlanOptions(drain_timeout_seconds=120))
    node = plan.nodes[0]
    assert manual_commands(plan, node, StepKind.DRAIN) == ["kubectl drain w1 --ignore-daemonsets --timeout=120s"]
    plan = _plan(PlanOptions(force=True, delete_emptydir_data=True))
    assert manual_commands(plan, node, StepKind.DRAIN) == [
        "kubectl drain w1 --ignore-daemonsets --delete-emptydir-data --force --timeout=300s"
    ]


def test_the_replan_command_and_options_carry_reboots_and_the_cilium_install():
    options = PlanOptions(reboot=True, install_cilium_chart="oci://mirror/cilium", install_cilium_version="1.18.4")
    text = render_runbook(_plan(options), PLAN_PATH)
    assert view(_plan(options), PLAN_PATH)["commands"]["plan"].endswith(
        "--reboot-nodes --install-cilium --cilium-chart oci://mirror/cilium --cilium-version 1.18.4 "
        "--out plans/demo.yaml --overwrite"
    )
    assert "| install Cilium with Helm first (--install-cilium) | yes: chart oci://mirror/cilium 1.18.4 |" in text
    assert "| reboot nodes after the swap (--reboot-nodes) | yes |" in text


def test_a_node_cordoned_before_the_run_is_left_cordoned():
    plan = _plan(keep_cordoned=True)
    assert manual_commands(plan, plan.nodes[0], StepKind.UNCORDON) == []
    text = render_runbook(plan, "p.yaml")
    assert "Left cordoned" in text and "kubectl uncordon w1" not in text


def test_odd_names_are_shell_quoted_in_commands():
    plan = _plan(node="w1;reboot")
    text = render_runbook(plan, "my plans/p.yaml")
    assert "kubectl cordon 'w1;reboot'" in text
    assert "cni-migrate rollback 'my plans/p.yaml' --node 'w1;reboot' --yes" in text


def test_estimate_is_fixed_steps_plus_pods_and_a_wave_lasts_as_its_slowest_node():
    plan = _plan()
    fixed = sum(STEP_SECONDS.values())
    cordon = STEP_SECONDS[StepKind.CORDON]
    assumed = estimate(plan)
    assert assumed.assumed_pods and assumed.nodes["w1"] == fixed + DRAIN_SECONDS_PER_POD * ASSUMED_PODS_PER_NODE
    counted = estimate(plan, {"w1": 3, "w2": 0})
    assert not counted.assumed_pods
    assert counted.nodes == {"w1": fixed + 3 * DRAIN_SECONDS_PER_POD, "w2": fixed}
    # The whole wave at once (the default): both cordons, then the slower node's other steps.
    assert counted.waves == {1: cordon + counted.nodes["w1"]}
    assert counted.total == sum(counted.waves.values())
    assert "assuming" not in render_runbook(plan, "p.yaml", pods_per_node={"w1": 3, "w2": 0})
    # One node at a time: the sum of the nodes.
    serial = estimate(_plan(PlanOptions(node_parallelism=1)), {"w1": 3, "w2": 0})
    assert serial.waves == {1: counted.nodes["w1"] + counted.nodes["w2"]}
    assert "each node in turn is drained" in render_runbook(_plan(PlanOptions(node_parallelism=1)), "p.yaml")
    assert "| nodes of a wave at once (--node-parallelism) | 1 |" in render_runbook(
        _plan(PlanOptions(node_parallelism=1)), "p.yaml"
    )


def test_missing_template_dir_is_one_clear_error(tmp_path):
    with pytest.raises(MigrateError, match="runbook templates not found"):
        render_runbook(_plan(), "p.yaml", templates=tmp_path / "nope")
    with pytest.raises(MigrateError, match="runbook.md.j2 not found"):
        render_runbook(_plan(), "p.yaml", templates=tmp_path)


def test_template_dir_can_be_overridden_by_environment(tmp_path, monkeypatch):
    (tmp_path / "runbook.md.j2").write_text("plan {{ scope.plan_id }}\n")
    monkeypatch.setenv("CNI_MIGRATE_RUNBOOK_TEMPLATES", str(tmp_path))
    plan = _plan()
    assert render_runbook(plan, "p.yaml") == f"plan {plan.id}\n"


def _plan(options: PlanOptions | None = None, *, keep_cordoned: bool = False, node: str = "w1") -> Plan:
    nodes = (NodePlan(node, keep_cordoned=keep_cordoned), NodePlan("w2"))
    return Plan(
        target=Target("sim", "t", "sim://t"),
        cluster=ClusterSnapshot("fp", "ks", "sim://t", tuple(sorted((n.name, f"uid-{n.name}") for n in nodes))),
        options=options or PlanOptions(),
        waves=(Wave(1, nodes),),
    )


def test_the_plan_summary_shows_the_runbooks_estimates(demo_plan):
    from migrate.output import plan_summary
    from migrate.window import duration

    summary = plan_summary(demo_plan)
    text = render_runbook(demo_plan, PLAN_PATH)
    est = estimate(demo_plan)
    for w in demo_plan.waves:
        said = duration(est.waves[w.index])
        names = ", ".join(n.name for n in w.nodes)
        assert f"wave {w.index}{' (canary)' if w.canary else ''}: {names} (about {said})" in summary
        assert f"| {w.index}{' (canary)' if w.canary else ''} | {names} | {said} |" in text
    assert f"estimated duration: about {duration(est.total)}" in summary
    assert f"| Estimated duration | {duration(est.total)} |" in text
