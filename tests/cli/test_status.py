"""status: the journal beside the live cluster, a failure's particulars for machines, and
a run that is alive told from one that died."""

from __future__ import annotations

import json

from migrate.model import MIGRATION_LABEL
from tests.cli.conftest import CLI

PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")


def status(cli: CLI, *extra: str) -> dict:
    r = cli("status", "p.yaml", "-o", "json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)


def by_name(record: dict) -> dict:
    return {n["name"]: n for n in record["nodes"]}


def test_a_failed_node_has_step_check_observed_expected_and_attempt(cli):
    cli("sim", "create", "c1", "--nodes", "4", "--fail-validation-on", "worker-2:dns")
    cli(*PLAN)
    assert cli("apply", "p.yaml", "--yes").code == 4
    nodes = by_name(status(cli))
    failure = nodes["worker-2"]["failure"]
    assert failure["step"] == "worker-2/validate" and failure["kind"] == "validate"
    assert failure["check"] == "dns"
    assert "timed out" in failure["observed"] and failure["expected"] == "cluster DNS answers"
    assert (failure["attempt"], failure["tries"]) == (1, 3)  # the node's first pass; the check tried 3 times
    assert nodes["worker-1"]["failure"] is None and nodes["worker-3"]["failure"] is None
    # Beside the journal, the node as the cluster shows it: worker-2 was put back.
    assert nodes["worker-2"]["live"] == {
        "present": True,
        "cni": "calico",
        "labelled": False,
        "cordoned": False,
        "ready": True,
    }
    assert nodes["worker-1"]["live"]["cni"] == "cilium"


def test_status_shows_where_the_cluster_and_the_journal_disagree(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    assert cli("apply", "p.yaml", "--yes").code == 0

    def by_hand(world: dict) -> None:
        del world["nodes"]["worker-1"]["labels"][MIGRATION_LABEL]  # taken off by hand
        world["nodes"]["worker-2"]["unschedulable"] = True  # cordoned by hand

    cli.edit_world("c1", by_hand)
    before = cli.world("c1")["actions"]

    nodes = by_name(status(cli))
    assert nodes["worker-1"]["state"] == "migrated"
    assert nodes["worker-1"]["live"]["cni"] == "calico"
    assert "no migration label" in nodes["worker-1"]["drift"] and "migrates it again" in nodes["worker-1"]["drift"]
    assert nodes["worker-2"]["live"]["cordoned"] is True and nodes["worker-2"]["drift"] == ""
    table = cli("status", "p.yaml").out
    assert "LIVE" in table and "calico, cordoned" not in table and "cilium, cordoned" in table
    assert cli.world("c1")["actions"] == before  # status reads, never writes

    offline = status(cli, "--offline")
    assert offline["liveRead"] is False and by_name(offline)["worker-1"]["live"] is None


def test_a_cluster_that_cannot_be_read_is_said_beside_the_journal(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli(*PLAN)
    assert cli("apply", "p.yaml", "--yes").code == 0
    cli("sim", "delete", "c1")
    r = cli("status", "p.yaml")
    assert r.code == 0 and "live cluster not read: no simulated cluster named 'c1'" in r.out, r.out
    record = status(cli)
    assert (
        record["run"] == "completed" and record["liveRead"] is False and "no simulated cluster" in record["liveError"]
    )


def test_a_run_whose_executor_died_is_told_from_a_live_one(cli):
    cli("sim", "create", "c1", "--nodes", "4", "--latency", "0.05")
    cli(*PLAN)
    # Killed (SIGKILL) right after its fifth checkpoint: the journal still says running.
    killed = cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "after-save:5"})
    assert killed.code == -9, killed
    record = status(cli)
    assert record["run"] == "running" and record["executor"] == {"alive": False, "holder": ""}
    assert "the run died; 'cni-migrate resume' continues it" in cli("status", "p.yaml").out

    proc = cli.popen("resume", "p.yaml", "--yes")
    assert proc.stdout is not None
    proc.stdout.readline()  # the resumed run is under way
    alive = status(cli)
    assert alive["run"] == "running"
    assert alive["executor"] == {"alive": True, "holder": f"pid {proc.pid} on this machine"}
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert status(cli)["executor"] is None  # completed: no executor to speak of


def test_a_plans_run_replaced_by_another_plans_is_still_shown(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--exclude-node", "worker-3", "--out", "p.yaml")
    assert cli("apply", "p.yaml", "--yes").code == 0
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "b.yaml")  # worker-3 only
    assert cli("apply", "b.yaml", "--yes").code == 0
    record = status(cli)
    assert record["run"] == "completed" and record["archived"] is True
    assert {n["state"] for n in record["nodes"]} == {"migrated"}
    assert "(archived: another plan's run came after it)" in cli("status", "p.yaml").out
