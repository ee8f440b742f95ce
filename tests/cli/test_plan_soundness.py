"""A plan file edited by hand and summed again is not trusted: apply refuses an unsound plan
(exit 2), and before a new run finds the blocking preflight checks again on the live
cluster (exit 3), so a finding deleted from the file, or a cluster that changed since the
plan, stops the run before any write. Resume and rollback are never refused for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import yaml

from migrate.plan import checksum


def edit(path, change) -> None:
    """Edit the plan file, then sum it again, as an operator bent on applying it would."""
    record = yaml.safe_load(path.read_text())
    change(record)
    body = {k: v for k, v in record.items() if k not in ("apiVersion", "kind", "metadata")}
    digest = checksum(body)
    record["metadata"] = {"id": digest.split(":", 1)[1][:12], "checksum": digest}
    path.write_text(yaml.safe_dump(record, sort_keys=False))


def changed(cli, name) -> list[dict]:
    return [a for a in cli.world(name)["actions"] if a["changed"]]


def test_a_node_dropped_from_the_waves_is_exit_2_in_one_line_and_nothing_written(cli):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    path = cli.cwd / "p.yaml"

    def drop_worker_3(record):
        record["waves"] = [w for w in record["waves"] if w["nodes"][0]["name"] != "worker-3"]
        for index, wave in enumerate(record["waves"], 1):
            wave["index"] = index

    edit(path, drop_worker_3)
    before = cli.world("c1")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2, r
    assert r.err.strip().count("\n") == 0, r.err
    assert "Traceback" not in r.err
    assert "node worker-3 is in the cluster snapshot but in no wave and not excluded" in r.err
    assert cli.world("c1")["actions"] == before["actions"]


def test_a_blocking_finding_deleted_from_the_plan_is_found_again_live_and_apply_exits_3(cli):
    cli("sim", "create", "c1")
    assert cli("plan", "--sim", "c1", "--out", "p.yaml").code == 3  # the bare and emptyDir pods block
    path = cli.cwd / "p.yaml"
    edit(path, lambda r: r.update(findings=[f for f in r["findings"] if f["severity"] != "blocking"]))
    before = cli.world("c1")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 3, r
    assert r.err.strip().count("\n") == 0, r.err
    assert "the cluster changed since the plan was made" in r.err and "plan again" in r.err
    assert "drain-pods: bare pod" in r.err and "default/debug" in r.err
    assert cli.world("c1")["actions"] == before["actions"]
    assert json.loads(cli("status", "p.yaml", "-o", "json").out)["run"] == "not-started"


def test_a_cluster_that_changed_since_the_plan_blocks_a_new_run_but_not_a_resume(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    assert cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml").code == 0
    # Calico moved to its eBPF dataplane after the plan was reviewed: a new run is refused.
    cli.edit_world("c1", lambda w: w["calico"].update(dataplane="bpf"))
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 3, r
    assert "calico-dataplane" in r.err and "plan again" in r.err
    assert not changed(cli, "c1")
    # A run that had started before the change is finished, and can be put back.
    cli.edit_world("c1", lambda w: w["calico"].update(dataplane="iptables"))
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat(timespec="seconds")
    assert cli("apply", "p.yaml", "--yes", "--window-end", soon).code == 5  # stopped before the first wave
    cli.edit_world("c1", lambda w: w["calico"].update(dataplane="bpf"))
    r = cli("resume", "p.yaml", "--yes")
    assert r.code == 0, r
    assert "3/3 node(s) migrated" in r.out
    # A completed run applied again has nothing to do, whatever the live checks say now.
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 0 and "3/3 node(s) migrated, run completed" in r.out, r
    assert cli("rollback", "p.yaml", "--yes").code == 0
    shown = json.loads(cli("sim", "show", "c1", "-o", "json").out)
    assert {n["cni"] for n in shown["nodes"]} == {"calico"}
    # After the rollback, applying the plan is a new run again: checked live, and refused.
    assert cli("apply", "p.yaml", "--yes").code == 3
