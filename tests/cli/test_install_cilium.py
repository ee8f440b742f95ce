"""apply installs Cilium when the plan says so (plan --install-cilium), on the simulated cluster.

The install is a journaled cluster-level step before the first node: recorded as started
and succeeded, run again on resume when a kill cut it short, and never run over a Cilium
that already runs in some other mode.
"""

from __future__ import annotations

import json

import pytest
import yaml

PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")


def prepare(cli) -> dict:
    """The run's cluster-level steps before the first node, as ``status -o json`` shows them."""
    r = cli("status", "p.yaml", "-o", "json")
    assert r.code == 0, r
    return json.loads(r.out)["prepare"]  # type: ignore[no-any-return]


def installs(cli) -> list[dict]:
    return [a for a in cli.world("c1")["actions"] if a["op"] == "helm-install"]


@pytest.fixture
def bare(cli):
    assert cli("sim", "create", "c1", "--nodes", "3", "--without-cilium").code == 0
    return cli


def test_plan_records_the_install_and_apply_runs_it_before_the_first_node(bare):
    r = bare(*PLAN, "--install-cilium", "--cilium-version", "1.18.4")
    assert r.code == 0, r
    assert "apply installs it in migration mode before the first node" in r.out
    assert "chart cilium 1.18.4" in r.out
    r = bare("apply", "p.yaml", "--yes")
    assert r.code == 0, r
    assert r.out.splitlines()[0].startswith("install-cilium: installing Cilium in migration mode")
    assert prepare(bare) == {"install-cilium": "succeeded"}
    assert [a["changed"] for a in installs(bare)] == [True]
    world = bare.world("c1")
    assert world["cilium"]["installed"] and world["cilium"]["migrationMode"]
    assert world["cilium"]["tunnelPort"] == 8473
    # The install came before any node was touched.
    ops = [a["op"] for a in world["actions"] if a["changed"]]
    assert ops.index("helm-install") < ops.index("cordon")


def test_without_the_plan_option_apply_refuses_an_uninstalled_cilium(bare):
    assert bare(*PLAN).code == 0
    r = bare("apply", "p.yaml", "--yes", "--helm", "/bin/true")
    assert r.code == 2, r
    assert "--helm is for plans made with --install-cilium" in r.err
    r = bare("apply", "p.yaml", "--yes")
    assert r.code == 3, r
    assert "Cilium is not installed" in r.err
    assert installs(bare) == [] and not bare.world("c1")["cilium"]["installed"]


def test_a_cilium_running_otherwise_is_never_upgraded_by_the_install(cli):
    assert cli("sim", "create", "c1", "--nodes", "3").code == 0
    assert cli(*PLAN, "--install-cilium").code == 0
    # Someone changed it by hand:
    cli.edit_world("c1", lambda world: world["cilium"].update(configOverrides={"enable-policy": "default"}))
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 3, r
    # The live preflight finds it before the install is considered: nothing is written.
    assert "not in migration mode (enable-policy is 'default', not 'never'" in r.err, r
    assert "nothing was changed" in r.err, r
    assert installs(cli) == []


def test_a_kill_during_the_install_is_resumed_by_installing_again(bare):
    assert bare(*PLAN, "--install-cilium").code == 0
    # The 2nd checkpoint write is "install-cilium started" (the 1st opens the run): die after it.
    r = bare("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "after-save:2"})
    assert r.code == -9, r
    assert prepare(bare) == {"install-cilium": "started"}
    assert "prepare: install-cilium started" in bare("status", "p.yaml").out
    assert installs(bare) == []
    r = bare("resume", "p.yaml", "--yes")
    assert r.code == 0, r
    assert prepare(bare) == {"install-cilium": "succeeded"}
    assert len(installs(bare)) == 1
    assert "3/3 node(s) migrated" in r.out


def test_finalize_upgrades_the_installed_cilium_to_the_final_values_before_restarting_agents(bare):
    assert bare(*PLAN, "--install-cilium").code == 0
    assert bare("apply", "p.yaml", "--yes").code == 0
    r = bare("finalize", "p.yaml", "--yes", "--upgrade-cilium")
    assert r.code == 0, r
    assert r.out.splitlines()[0] == "upgrade-cilium: Cilium runs with the final values (simulated helm upgrade)"
    assert "final Cilium values:" not in r.out  # nothing left for the operator to run
    world = bare.world("c1")
    assert not world["cilium"]["migrationMode"]  # custom-cni-conf false, policy enforced again
    changed = [a["op"] for a in world["actions"] if a["changed"]]
    upgrade = len(changed) - 1 - changed[::-1].index("helm-install")
    assert "delete-pod" in changed[upgrade:]  # the agents restart after the upgrade


def test_upgrade_cilium_is_refused_for_a_cilium_the_operator_installed(cli):
    assert cli("sim", "create", "c1", "--nodes", "3").code == 0
    assert cli(*PLAN).code == 0
    assert cli("apply", "p.yaml", "--yes").code == 0
    r = cli("finalize", "p.yaml", "--yes", "--upgrade-cilium")
    assert r.code == 2, r
    assert "did not install it" in r.err
    r = cli("finalize", "p.yaml", "--yes", "--helm", "/usr/bin/helm")
    assert (r.code, r.err.strip()) == (2, "error: --helm is for --upgrade-cilium")
    r = cli("finalize", "p.yaml", "--yes")
    assert r.code == 0, r
    assert "rollout restart daemonset/cilium" in r.out


def test_upgrade_cilium_is_refused_when_apply_found_cilium_running_and_installed_nothing(cli):
    assert cli("sim", "create", "c1", "--nodes", "3").code == 0  # Cilium already in migration mode
    assert cli(*PLAN, "--install-cilium").code == 0
    assert cli("apply", "p.yaml", "--yes").code == 0
    assert prepare(cli) == {}  # nothing to install
    r = cli("finalize", "p.yaml", "--yes", "--upgrade-cilium")
    assert r.code == 2, r
    assert "apply found Cilium already running and installed nothing" in r.err
    assert installs(cli) == []


def test_an_upgrade_after_an_earlier_finalize_restarts_the_agents_again(bare):
    assert bare(*PLAN, "--install-cilium").code == 0
    assert bare("apply", "p.yaml", "--yes").code == 0
    first = bare("finalize", "p.yaml", "--yes")
    assert first.code == 0 and "check-policy: not yet" in first.out
    r = bare("finalize", "p.yaml", "--yes", "--upgrade-cilium")
    assert r.code == 0, r
    # Agents read cilium-config when they start: the upgrade restarts them again.
    assert "restart-agents: restarted 3 Cilium agent(s)" in r.out
    assert "check-policy: NetworkPolicy enforced" in r.out


def test_an_install_cut_short_is_finished_on_resume_whatever_it_left_behind(bare):
    assert bare(*PLAN, "--install-cilium").code == 0
    assert bare("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "after-save:2"}).code == -9
    # The killed install left a half-made Cilium: installed, not yet in migration mode.
    bare.edit_world("c1", lambda world: world["cilium"].update(installed=True, migrationMode=False))
    r = bare("resume", "p.yaml", "--yes")
    assert r.code == 0, r  # not "installs Cilium only where none runs": this run's own install
    assert prepare(bare) == {"install-cilium": "succeeded"} and len(installs(bare)) == 1


def test_site_values_are_checked_recorded_and_written_with_ours(bare):
    (bare.cwd / "site.yaml").write_text("image:\n  override: mirror.example/cilium:v1.18.4\noperator:\n  replicas: 1\n")
    r = bare(*PLAN, "--install-cilium", "--cilium-values", "site.yaml")
    assert r.code == 0, r
    plan = yaml.safe_load((bare.cwd / "p.yaml").read_text())
    assert plan["options"]["installCilium"]["values"] == {
        "image": {"override": "mirror.example/cilium:v1.18.4"},
        "operator": {"replicas": 1},
    }
    values = yaml.safe_load((bare.cwd / "p.cilium-values.yaml").read_text())
    assert values["image"] == {"override": "mirror.example/cilium:v1.18.4"}
    assert values["operator"] == {"replicas": 1, "unmanagedPodWatcher": {"restart": False}}
    assert values["policyEnforcementMode"] == "never"


@pytest.mark.parametrize(
    ("content", "extra", "error"),
    [
        ("image: {}\n", (), "--cilium-values are values for the install: use it with --install-cilium"),
        (None, ("--install-cilium",), "--cilium-values site.yaml does not exist"),
        ("image: [\n", ("--install-cilium",), "--cilium-values site.yaml is not valid YAML (line 2)"),
        ("- a\n", ("--install-cilium",), "--cilium-values site.yaml is not a mapping of Helm values"),
        (
            "tunnelPort: 4789\n",
            ("--install-cilium",),
            "--cilium-values site.yaml sets tunnelPort: cni-migrate sets these for the migration; remove them",
        ),
    ],
)
def test_bad_site_values_are_one_line_and_write_no_plan(bare, content, extra, error):
    if content is not None:
        (bare.cwd / "site.yaml").write_text(content)
    r = bare(*PLAN, *extra, "--cilium-values", "site.yaml")
    assert r.code == 2, r
    assert error in r.err and len(r.err.strip().splitlines()) == 1
    assert not (bare.cwd / "p.yaml").exists()


def test_a_plan_with_its_own_cilium_pool_validates_every_node_inside_that_pool(bare):
    # The simulation's probes observe the pool Cilium was installed with, as a real
    # cluster's do (before, its CiliumNodes said 10.245.x.0/24 whatever the plan's pool).
    assert bare(*PLAN, "--install-cilium", "--cilium-pool-cidr", "10.200.0.0/16").code == 0
    r = bare("apply", "p.yaml", "--yes")
    assert r.code == 0, r
    assert "3/3 node(s) migrated" in r.out
    for index, node in enumerate(("cp-1", "worker-1", "worker-2")):
        assert f"CiliumNode {node} podCIDRs 10.200.{index}.0/24" in r.out
        assert f"probe pod IP 10.200.{index}.250" in r.out
