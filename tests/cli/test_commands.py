"""The CLI contract: commands, exit codes, one-line errors, nothing written on bad input."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from migrate.cniconf import after_agent_start


def test_demo_migrates_every_node_and_leaves_none_cordoned(cli):
    r = cli("demo")
    assert r.code == 0, r.err
    assert "6/6 node(s) migrated, run completed" in r.out
    shown = json.loads(cli("sim", "show", "demo", "-o", "json").out)
    assert {(n["cni"], n["unschedulable"]) for n in shown["nodes"]} == {("cilium", False)}


def test_sim_show_json_has_the_documented_fields(cli):
    assert cli("sim", "create", "c1", "--nodes", "3").code == 0
    nodes = json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]
    assert [n["name"] for n in nodes] == ["cp-1", "worker-1", "worker-2"]
    assert set(nodes[0]) >= {"name", "cni", "unschedulable", "pods"}
    assert all(n["cni"] == "calico" for n in nodes)


def test_plan_is_deterministic_and_blocked_without_drain_flags(cli):
    cli("sim", "create", "c1")
    first = cli("plan", "--sim", "c1", "--out", "a.yaml")
    second = cli("plan", "--sim", "c1", "--out", "b.yaml")
    assert first.code == second.code == 3  # the bare and emptyDir pods block without flags
    assert "BLOCKING [drain-pods]" in first.out and "--force" in first.out
    assert (cli.cwd / "a.yaml").read_bytes() == (cli.cwd / "b.yaml").read_bytes()
    assert cli("apply", "a.yaml", "--yes").code == 3


def test_plan_writes_no_change_to_the_cluster(cli):
    cli("sim", "create", "c1")
    before = cli.world("c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data")
    assert cli.world("c1") == before


def test_apply_without_a_terminal_and_without_yes_refuses(cli):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", stdin="")
    assert r.code == 2 and "--yes" in r.err
    assert not any(a["changed"] for a in cli.world("c1")["actions"])


def test_failed_validation_exits_4_and_status_names_the_check(cli):
    cli("sim", "create", "c1", "--fail-validation-on", "worker-2:pod-network")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 4, r.err
    assert r.err.count("\n") == 1 and "pod-network" in r.err
    status = json.loads(cli("status", "p.yaml", "-o", "json").out)
    by_name = {n["name"]: n for n in status["nodes"]}
    assert by_name["worker-2"]["state"] == "failed"
    # What the probe saw (an address from Calico's pool) and what it expected (the plan's pool).
    assert "observed probe pod IP 192.168.2.250, expected an IP in 10.245.0.0/16" in by_name["worker-2"]["message"]
    assert by_name["worker-1"]["state"] == "migrated"
    world = cli.world("c1")
    assert not world["nodes"]["worker-2"]["unschedulable"]
    assert yaml.safe_load(cli("status", "p.yaml", "-o", "yaml").out) == status


def test_traffic_watch_failure_is_exit_4_and_status_shows_the_evidence(cli):
    cli("sim", "create", "c1", "--nodes", "4", "--fail-validation-on", "worker-2:traffic-watch")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes", "--traffic-watch")
    assert r.code == 4, (r.out, r.err)
    assert "validation of worker-2 failed: traffic-watch: observed 12 failed probe request(s)" in r.err
    assert "traffic-watch: 4/4 probers reporting" in r.out
    assert "traffic-watch: worker-2: 12 failed probe request(s)" in r.out  # the run's report
    assert "traffic watch removed" in r.out
    by_name = {n["name"]: n for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}
    assert by_name["worker-2"]["state"] == "failed"
    assert "traffic-watch" in by_name["worker-2"]["message"]
    actions = [a["target"] for a in cli.world("c1")["actions"] if "traffic" in a["target"]]
    assert actions == ["DaemonSet/cni-migrate-traffic/cni-migrate-traffic-watch"] * 2  # deployed, removed


def test_rollback_of_one_node_and_then_everything(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    assert cli("apply", "p.yaml", "--yes").code == 0
    assert cli("rollback", "p.yaml", "--node", "worker-2", "--yes").code == 0
    nodes = {n["name"]: n for n in json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]}
    assert nodes["worker-2"]["cni"] == "calico" and nodes["worker-1"]["cni"] == "cilium"
    assert cli("rollback", "p.yaml", "--yes").code == 0
    nodes = json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]
    assert {(n["cni"], n["unschedulable"]) for n in nodes} == {("calico", False)}


@pytest.mark.parametrize(
    "args, message",
    [
        (("apply", "missing.yaml", "--yes"), "does not exist"),
        (("apply", "garbage.yaml", "--yes"), "not valid YAML"),
        (("apply", "foreign.yaml", "--yes"), "not a MigrationPlan"),
        (("status", "missing.yaml"), "does not exist"),
        (("plan", "--sim", "nope"), "no simulated cluster named 'nope'"),
        (("plan", "--sim", "c1", "--max-unavailable", "0"), "--max-unavailable"),
        (("plan", "--sim", "c1", "--exclude-node", "ghost"), "unknown node"),
        (("plan", "--sim", "c1", "--context", "x"), "cannot be combined"),
        (("sim", "create", "Bad_Name"), "not a DNS label"),
        (("sim", "create", "c1"), "exists already"),
        (("sim", "create", "c2", "--fail-validation-on", "worker-1:bogus"), "unknown check"),
        (("sim", "create", "c2", "--from", "missing.yaml"), "cannot read missing.yaml"),
        (("sim", "create", "c2", "--from", "garbage.yaml"), "is not YAML or JSON"),
        (("sim", "create", "c2", "--from", "good.yaml"), "object 1 has no kind, apiVersion or name"),
        (("sim", "create", "c2", "--from", "good.yaml", "--nodes", "3"), "exclude each other"),
        (("sim", "delete", "nope"), "no simulated cluster"),
        (("rollback", "good.yaml", "--node", "ghost", "--yes"), "not in plan"),
        (("rollback", "good.yaml", "--yes"), "never applied"),
        (("resume", "good.yaml", "--yes"), "no interrupted run"),
        (("apply", "good.yaml", "--yes", "--confirm-each-node"), "use it with --guided"),
        (("apply", "good.yaml", "--yes", "--soak", "two minutes"), "is not a duration"),
        (("apply", "good.yaml", "--yes", "--soak", "-5m"), "is not a duration"),
        (("apply", "good.yaml", "--yes", "--window-end", "25:00"), "not a time of day"),
        (("apply", "good.yaml", "--yes", "--max-probe-failures", "3"), "use it with --traffic-watch"),
        (("apply", "good.yaml", "--yes", "--traffic-watch", "--max-probe-failures", "-1"), "must not be negative"),
        (("apply", "good.yaml", "--yes", "--hooks-dir", "typo"), "hooks directory typo does not exist"),
        (("apply", "good.yaml", "--yes", "--window-end", ""), "--window-end is empty"),
        (("apply", "good.yaml", "--yes", "--soak", ""), "--soak '' is not a duration"),
        (("apply", "fifo", "--yes"), "plan file fifo is not a regular file (a FIFO)"),
        (("apply", "/dev/zero", "--yes"), "plan file /dev/zero is not a regular file (a device)"),
        (("apply", "adir", "--yes"), "plan file adir is a directory"),
        (("apply", "bomb.yaml", "--yes"), "uses YAML anchors and aliases"),
        (("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "fifo"), "it is not a regular file"),
        (("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "adir"), "it is a directory"),
        (("plan", "--sim", "c1", "--cilium-pool-cidr", "fd00::/104"), "is IPv6"),
        (("plan", "--sim", "c1", "--cilium-pool-cidr", "10.250.0.0/30"), "smaller than one node's block (/24)"),
        (("runbook", "good.yaml", "--out", "adir"), "cannot write runbook adir: it is a directory"),
        (
            ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", ""),
            "cannot write plan file .: it is a",
        ),
        (("plan", "--sim", ""), "--sim is empty"),
        (("plan", "--context", ""), "--context is empty"),
        (("policy-report", "--sim", "c1", "--write", "good.yaml"), "--write good.yaml is not a directory"),
        (("policy-report", "--sim", "c1", "--cilium-pool-cidr", "nope"), "--cilium-pool-cidr 'nope' is not a CIDR"),
    ],
)
def test_bad_input_is_exit_2_with_one_line_and_no_cluster_write(cli, args, message):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "good.yaml")
    (cli.cwd / "garbage.yaml").write_text("{{{")
    (cli.cwd / "foreign.yaml").write_text("kind: Deployment\napiVersion: apps/v1\n")
    os.mkfifo(cli.cwd / "fifo")
    (cli.cwd / "adir").mkdir()
    # A billion laughs in 700 bytes: refused before it is expanded.
    levels = ["a: &a [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    (cli.cwd / "bomb.yaml").write_text("\n".join(levels) + "\n")
    kept = {p.name: p.stat().st_mode for p in cli.cwd.iterdir()}
    before = cli.world("c1")
    r = cli(*args)
    assert r.code == 2, (r.code, r.out, r.err)
    assert message in r.err
    assert r.err.strip().count("\n") == 0, r.err
    assert "Traceback" not in r.err
    assert cli.world("c1")["actions"] == before["actions"]
    assert {p.name: p.stat().st_mode for p in cli.cwd.iterdir() if p.name in kept} == kept  # no target replaced


def test_a_sim_home_that_cannot_be_written_and_a_malformed_world_are_one_line(cli):
    (cli.cwd / "file").write_text("")
    r = cli("sim", "create", "c1", env={"CNI_MIGRATE_HOME": str(cli.cwd / "file" / "home")})
    assert r.code == 2 and r.err.startswith("error: cannot create simulated cluster 'c1' under "), r.err
    cli("sim", "create", "c1")
    cli.edit_world("c1", lambda world: world["nodes"]["worker-1"].pop("ready"))
    for args in (("sim", "show", "c1"), ("plan", "--sim", "c1", "--out", "p.yaml")):
        r = cli(*args)
        assert r.code == 2 and "node 'worker-1' has no 'ready'" in r.err and r.err.count("\n") == 1, r.err
    assert not (cli.cwd / "p.yaml").exists()


def test_a_window_end_just_passed_is_refused_and_the_resolved_end_is_echoed(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    # A time zone in which it is about noon now, so ten minutes ago is today whatever the hour.
    utc = datetime.now(UTC)
    offset = 12 - utc.hour
    env = {"TZ": f"LAB{-offset:+d}"}
    local = utc + timedelta(hours=offset)
    r = cli("apply", "p.yaml", "--yes", "--window-end", f"{local - timedelta(minutes=10):%H:%M}", env=env)
    assert r.code == 2 and "ago" in r.err and "give the date" in r.err, r.err
    assert not cli.world("c1")["actions"]
    r = cli("apply", "p.yaml", "--yes", "--window-end", f"{local + timedelta(hours=2):%H:%M}", env=env)
    assert r.code == 0, r.err
    assert r.out.startswith(f"window ends {local + timedelta(hours=2):%Y-%m-%d %H:%M} LAB"), r.out


def test_rollback_of_a_named_node_reads_its_cni_when_no_journal_or_label_says_so(cli):
    """worker-1 was moved to Cilium outside any run and its label removed: the journal and
    the label both say Calico, the node's CNI configuration says Cilium, and decides."""
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    worker = cli.world("c1")["nodes"]["worker-1"]
    cli.edit_world(
        "c1", lambda world: world["nodes"]["worker-1"].update(cniFiles=after_agent_start(worker["cniFiles"], True))
    )
    r = cli("rollback", "p.yaml", "--node", "worker-2", "--yes")
    assert r.code == 2 and "worker-2 is on Calico (CNI configuration read): nothing to roll back" in r.err, r.err
    r = cli("rollback", "p.yaml", "--node", "worker-1", "--yes")
    assert r.code == 0, r.err
    assert "worker-1       rollback restore-cni" in r.out
    nodes = json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]
    assert {(n["cni"], n["unschedulable"]) for n in nodes} == {("calico", False)}


def test_plan_for_a_recreated_cluster_of_the_same_name_is_refused(cli):
    cli("sim", "create", "c1", "--seed", "1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    cli("sim", "delete", "c1")
    cli("sim", "create", "c1", "--seed", "2")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2 and "for another cluster" in r.err
    assert not cli.world("c1")["actions"]


def test_edited_plan_is_refused(cli):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    path = cli.cwd / "p.yaml"
    path.write_text(path.read_text().replace("maxUnavailable: 1", "maxUnavailable: 3"))
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2 and "checksum" in r.err
    assert not cli.world("c1")["actions"]


def _hook(directory, name, body):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_a_failing_post_swap_hook_fails_validation_and_rolls_the_node_back(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    _hook(cli.cwd / "hooks", "post-swap.ingress", 'echo "ingress on $CNI_MIGRATE_NODE answered 503"; exit 1')
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 4, r.err
    assert "post-swap hook" in r.err and "503" in r.err
    world = cli.world("c1")
    assert world["nodes"]["worker-1"]["cniFiles"] == ["05-cilium.conflist.cni-migrate-bak", "10-calico.conflist"]
    assert not world["nodes"]["worker-1"]["unschedulable"]


def test_hooks_get_the_context_and_never_a_shell(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    log = cli.cwd / "hook.log"
    _hook(cli.cwd / "hooks", "pre-node", f'echo "$CNI_MIGRATE_HOOK $CNI_MIGRATE_NODE $CNI_MIGRATE_WAVE" >> {log}')
    assert cli("apply", "p.yaml", "--yes").code == 0
    assert log.read_text().splitlines() == ["pre-node worker-1 1", "pre-node worker-2 2", "pre-node cp-1 3"]


def test_a_non_executable_hook_is_bad_input_before_any_write(cli):
    cli("sim", "create", "c1", "--nodes", "2")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    (cli.cwd / "hooks").mkdir()
    (cli.cwd / "hooks" / "post-swap").write_text("#!/bin/sh\nexit 0\n")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2 and "not executable" in r.err
    assert not cli.world("c1")["actions"]


def test_a_refusing_pre_run_hook_leaves_no_run_behind(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    _hook(cli.cwd / "hooks", "pre-run", "echo 'change freeze' >&2; exit 1")
    r = cli("apply", "p.yaml", "--yes", "--hooks-dir", "hooks")
    assert r.code == 3 and "pre-run hook failed, nothing was changed" in r.err, r.err
    assert not cli.world("c1")["actions"]
    assert "not-started" in cli("status", "p.yaml").out
    (cli.cwd / "hooks" / "pre-run").unlink()
    assert cli("apply", "p.yaml", "--yes", "--hooks-dir", "hooks").code == 0  # not "an unfinished run"


def test_runbook_names_every_node_and_its_rollback_command(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("runbook", "p.yaml", "--out", "runbooks/c1.md")
    assert r.code == 0, r.err
    text = (cli.cwd / "runbooks" / "c1.md").read_text()
    for node in ("cp-1", "worker-1", "worker-2", "worker-3"):
        assert f"cni-migrate rollback p.yaml --node {node} --yes" in text
    assert cli("runbook", "p.yaml").out == text


def test_a_cluster_with_no_room_to_drain_into_is_blocked_at_plan_time(cli):
    cli("sim", "create", "c1", "--nodes", "2")  # one worker: its pods have nowhere to go
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    assert r.code == 3
    assert "BLOCKING [capacity]" in r.out and "worker-1" in r.out


def test_a_window_too_short_for_the_next_wave_stops_cleanly_and_resume_finishes_later(cli):
    from datetime import UTC, datetime, timedelta

    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat(timespec="seconds")
    r = cli("apply", "p.yaml", "--yes", "--window-end", soon)
    assert r.code == 5, r.err
    assert "window ends" in r.err and "3 node(s) left" in r.err
    # Only the CiliumNodeConfig was put in place; no node was touched.
    assert {a["op"] for a in cli.world("c1")["actions"] if a["changed"]} <= {"apply"}
    status = json.loads(cli("status", "p.yaml", "-o", "json").out)
    assert status["run"] == "interrupted"
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert {n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]} == {"migrated"}


def test_plan_says_where_it_made_the_waves_smaller_than_asked(cli):
    cli("sim", "create", "c1", "--nodes", "5")
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--canary", "99", "--out", "p.yaml")
    assert r.code == 0, r.err
    assert "warning  [canary-size] --canary 99 asks for more workers than the plan migrates (4)" in r.out
    assert "kube-system/coredns, shop/db allow no more of their pods down at once" in r.out
    findings = yaml.safe_load((cli.cwd / "p.yaml").read_text())["findings"]
    assert [f["severity"] for f in findings if f["check"] == "canary-size"] == ["warning", "warning"]


def test_plan_refuses_to_replace_a_plan_file_unless_asked(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    flags = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data")
    assert cli(*flags, "--out", "p.yaml").code == 0
    reviewed = (cli.cwd / "p.yaml").read_bytes()
    values = (cli.cwd / "p.cilium-values.yaml").read_bytes()
    r = cli(*flags, "--max-unavailable", "2", "--out", "p.yaml")
    assert r.code == 2 and r.out == ""
    assert r.err == "error: plan file p.yaml exists: pass --overwrite to replace it, or --out another file\n"
    assert (cli.cwd / "p.yaml").read_bytes() == reviewed
    assert (cli.cwd / "p.cilium-values.yaml").read_bytes() == values
    # The default file too (plans/<cluster>.yaml); --overwrite replaces it.
    assert cli(*flags).code == 0
    assert cli(*flags).code == 2
    r = cli(*flags, "--max-unavailable", "2", "--out", "p.yaml", "--overwrite")
    assert r.code == 0, r.err
    assert yaml.safe_load((cli.cwd / "p.yaml").read_text())["options"]["maxUnavailable"] == 2


def test_plan_prints_the_plan_as_json_or_yaml_with_o(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml", "-o", "json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert (record["planFile"], record["ciliumValues"]) == ("p.yaml", "p.cilium-values.yaml")
    assert record["plan"] == yaml.safe_load((cli.cwd / "p.yaml").read_text())
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "q.yaml", "--output=yaml")
    assert yaml.safe_load(r.out)["plan"]["waves"] == record["plan"]["waves"]


def test_the_window_gate_counts_a_parallel_wave_once_as_the_runbook_does(cli):
    from datetime import UTC, datetime, timedelta

    cli("sim", "create", "c1", "--nodes", "5")
    flags = ("--force", "--delete-emptydir-data", "--canary", "3", "--max-unavailable", "3")
    assert cli("plan", "--sim", "c1", *flags, "--out", "p.yaml").code == 0
    # The runbook's estimate of the canary wave, its nodes at once (as many as the PDBs allow)...
    row = next(line for line in cli("runbook", "p.yaml").out.splitlines() if line.startswith("| 1 (canary) |"))
    _, _, names, minutes, _ = row.split("|")
    assert len(names.split(",")) == 2 and minutes.strip() == "4m 55s"
    # ...is what the window gate stops on (it said 9m 40s: the two nodes one after the other).
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat(timespec="seconds")
    r = cli("apply", "p.yaml", "--yes", "--window-end", soon)
    assert r.code == 5, r.err
    assert "wave 1 needs about 4m 55s;" in r.err and "5 node(s) left in 4 wave(s)" in r.err


def test_a_window_end_in_the_past_is_bad_input(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes", "--window-end", "2020-01-01T00:00:00Z")
    assert r.code == 2 and "in the past" in r.err


def test_guided_without_a_terminal_is_bad_input(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--guided", stdin="c\n")
    assert r.code == 2 and "terminal" in r.err


def test_finalize_after_a_full_run_writes_final_values_and_removes_calico(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    assert cli("finalize", "p.yaml", "--yes").code == 2  # nothing migrated yet
    assert cli("apply", "p.yaml", "--yes").code == 0
    # Cilium still runs with the migration values: nothing is restarted or deleted, Calico stays.
    restarts = sum(1 for a in cli.world("c1")["actions"] if a["op"] == "delete-pod" and a["changed"])
    r = cli("finalize", "p.yaml", "--remove-calico", "--yes")
    assert r.code == 3, r
    assert r.err.strip().startswith("error: Calico was not removed: Cilium does not run with the final values yet")
    assert "then run finalize again" in r.out and "rollout restart daemonset/cilium" in r.out
    assert sum(1 for a in cli.world("c1")["actions"] if a["op"] == "delete-pod" and a["changed"]) == restarts
    assert any(p["namespace"] == "calico-system" for p in cli.world("c1")["pods"].values())
    values = yaml.safe_load((cli.cwd / "p.cilium-final-values.yaml").read_text())
    assert values["policyEnforcementMode"] == "default" and values["cni"]["customConf"] is False
    # The operator's helm upgrade to those values (and agent restart), then finalize again.
    cli.edit_world("c1", lambda world: world["cilium"].update(migrationMode=False))
    r = cli("finalize", "p.yaml", "--remove-calico", "--yes")
    assert r.code == 0, r
    assert "restart-agents: restarted 3" in r.out and "check-policy: NetworkPolicy enforced" in r.out
    assert "final Cilium values:" not in r.out  # nothing left for the operator to apply
    world = cli.world("c1")
    assert not any(p["namespace"] == "calico-system" for p in world["pods"].values())
    assert "reboot" in r.out


@pytest.mark.parametrize(
    "check", ["cilium-agent-ready", "cilium-node", "pod-network", "dns", "connectivity", "cross-node"]
)
def test_each_validation_check_can_fail_and_names_node_check_and_observed_value(cli, check):
    cli("sim", "create", "c1", "--nodes", "3", "--fail-validation-on", f"worker-1:{check}")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 4, r.err
    assert f"validation of worker-1 failed: {check}: observed " in r.err and "expected" in r.err
    world = cli.world("c1")
    assert world["nodes"]["worker-1"]["cniFiles"][-1] == "10-calico.conflist"


def test_policy_report_keeps_translates_and_explains(cli):
    cli("sim", "create", "c1")
    r = cli("policy-report", "--sim", "c1", "-o", "json", "--write", "cilium-policies")
    assert r.code == 0, r.err
    got = {(p["kind"], p["name"]): p for p in json.loads(r.out)["policies"]}
    assert {k: p["outcome"] for k, p in got.items()} == {
        ("NetworkPolicy", "allow-frontend-to-api"): "kept",
        ("GlobalNetworkPolicy", "allow-cluster-dns"): "translated",
        ("CalicoNetworkPolicy", "audit-db-access"): "untranslatable",
    }
    assert "action Log" in got[("CalicoNetworkPolicy", "audit-db-access")]["reasons"][0]
    # Its egress to 0.0.0.0/0 holds the simulated cluster's pool and nodes (read from its inventory):
    # Cilium reaches those by entity, the world by CIDR.
    egress = got[("GlobalNetworkPolicy", "allow-cluster-dns")]["cilium"]["spec"]["egress"]
    assert egress[1:] == [{"toEntities": ["cluster"]}, {"toCIDR": ["0.0.0.0/0"]}]
    written = sorted(p.name for p in (cli.cwd / "cilium-policies").iterdir())
    assert written == ["ciliumclusterwidenetworkpolicy-allow-cluster-dns.yaml"]
    doc = yaml.safe_load((cli.cwd / "cilium-policies" / written[0]).read_text())
    assert doc == got[("GlobalNetworkPolicy", "allow-cluster-dns")]["cilium"]
    table = cli("policy-report", "--sim", "c1")
    assert "1 kept, 1 translated, 1 untranslatable" in table.out


def test_an_interrupted_run_cannot_be_resumed_or_replaced_with_another_plan(cli):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "a.yaml")
    assert cli("apply", "a.yaml", "--yes", "--pause-after-canary").code == 5
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--max-unavailable", "1", "--out", "b.yaml")
    plan_a = yaml.safe_load((cli.cwd / "a.yaml").read_text())["metadata"]["id"]
    before = cli.world("c1")["actions"]
    for verb in ("resume", "apply"):
        r = cli(verb, "b.yaml", "--yes")
        assert r.code == 2, r
        assert r.err.count("\n") == 1 and plan_a in r.err, r.err
    assert cli.world("c1")["actions"] == before
    assert cli("resume", "a.yaml", "--yes").code == 0


def test_plan_with_reboot_nodes_reboots_every_node_once(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--reboot-nodes", "--out", "p.yaml")
    assert r.code == 0, r.err
    assert yaml.safe_load((cli.cwd / "p.yaml").read_text())["options"]["reboot"] is True
    assert "reboot" in cli("runbook", "p.yaml").out
    assert cli("apply", "p.yaml", "--yes").code == 0
    world = cli.world("c1")
    assert {n: v["boots"] for n, v in world["nodes"].items()} == {n: 2 for n in world["nodes"]}


def test_a_check_failing_while_the_node_settles_is_retried_then_passes(cli):
    cli("sim", "create", "c1", "--nodes", "3", "--fail-validation-on", "worker-1:dns:2")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 0, r.err
    assert "dns: observed nslookup" in r.out and "attempt 2/3" in r.out and "attempt 3/3" in r.out
    status = json.loads(cli("status", "p.yaml", "-o", "json").out)
    assert {n["state"] for n in status["nodes"]} == {"migrated"}


def test_a_check_still_failing_after_its_attempts_rolls_the_node_back(cli):
    cli("sim", "create", "c1", "--nodes", "3", "--fail-validation-on", "worker-1:dns:3")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 4 and "validation of worker-1 failed: dns" in r.err, r
    # The failure was transient after all: resume validates it again and goes on.
    assert cli("resume", "p.yaml", "--yes").code == 0
