"""kill -9 in the middle of a surge (the named failpoints of migrate/steps/surge.py), then
resume or rollback through the CLI: the Deployment ends at exactly its original count with
no record left on it, and its pod was never evicted. Both backends at the executor level:
tests/scenario/test_surge.py."""

from __future__ import annotations

import json

import pytest

from migrate.model import MIGRATION_LABEL, SURGE_ANNOTATION

PLAN = ("plan", "--sim", "c1", "--out", "p.yaml", "--force", "--delete-emptydir-data")


def thumbnailer(world: dict) -> dict:
    return next(w for w in world["workloads"] if w["name"] == "thumbnailer")


def evicted_thumbnailers(world: dict, uids: set[str]) -> list[str]:
    return [a["target"] for a in world["actions"] if a["op"] == "evict" and a["target"] in uids]


@pytest.mark.parametrize("point", ["surge-scaled", "surge-retiring"])
def test_killed_mid_surge_then_resumed_ends_at_the_original_count(cli, point):
    cli("sim", "create", "c1", "--nodes", "4")
    plan = cli(*PLAN)
    assert plan.code == 0, plan.err
    uids = {p["uid"] for p in cli.world("c1")["pods"].values() if p["labels"].get("app") == "thumbnailer"}

    killed = cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": f"at:{point}"})

    assert killed.code == -9, killed
    left = thumbnailer(cli.world("c1"))
    assert left["replicas"] == 2 and json.loads(left["annotations"][SURGE_ANNOTATION])["original"] == 1
    resumed = cli("resume", "p.yaml", "--yes")
    assert resumed.code == 0, resumed.err + resumed.out
    assert "put back shop/thumbnailer to 1 replica(s)" in resumed.out
    world = cli.world("c1")
    assert thumbnailer(world)["replicas"] == 1
    assert SURGE_ANNOTATION not in thumbnailer(world).get("annotations", {})
    assert evicted_thumbnailers(world, uids) == []
    assert all(n["labels"].get(MIGRATION_LABEL) == "true" for n in world["nodes"].values())


def test_killed_mid_surge_then_rolled_back_ends_at_the_original_count(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    assert cli(*PLAN).code == 0
    assert cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "at:surge-scaled"}).code == -9

    back = cli("rollback", "p.yaml", "--yes")

    assert back.code == 0, back.err + back.out
    world = cli.world("c1")
    assert thumbnailer(world)["replicas"] == 1
    assert SURGE_ANNOTATION not in thumbnailer(world).get("annotations", {})
    assert not any(n["unschedulable"] for n in world["nodes"].values())


def test_status_shows_a_surge_a_killed_run_left(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    assert cli(*PLAN).code == 0
    assert cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "at:surge-scaled"}).code == -9

    record = json.loads(cli("status", "p.yaml", "-o", "json").out)

    [surge] = record["surges"]
    assert surge["deployment"] == "shop/thumbnailer" and (surge["replicas"], surge["original"]) == (2, 1)
    table = cli("status", "p.yaml").out
    assert "surged: shop/thumbnailer at 2 replicas (its own 1)" in table
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert json.loads(cli("status", "p.yaml", "-o", "json").out)["surges"] == []


def test_an_unreadable_surge_record_is_named_by_status_and_refused_by_every_run_before_any_write(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    assert cli(*PLAN).code == 0
    assert cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "at:surge-scaled"}).code == -9
    # An operator's edit cuts the record short (the Deployment is still at 2 replicas).
    cli.edit_world("c1", lambda w: thumbnailer(w)["annotations"].update({SURGE_ANNOTATION: '{"original": 1, "extra"'}))
    world = cli.world("c1")
    (journal,) = (cli.cwd / "home" / "runs").glob("*/journal.json")
    before = journal.read_bytes()

    for command in ("apply", "resume", "rollback"):
        refused = cli(command, "p.yaml", "--yes")

        assert refused.code == 2, (command, refused)
        assert refused.err.count("\n") == 1 and "Traceback" not in refused.err, refused.err
        assert refused.err.startswith(
            "error: Deployment shop/thumbnailer carries a surge record cni-migrate cannot read"
        )
        assert "kubectl -n shop scale deployment/thumbnailer --replicas=N && " in refused.err
        assert f"kubectl -n shop annotate deployment/thumbnailer {SURGE_ANNOTATION}-" in refused.err
    after = cli.world("c1")
    assert after["actions"] == world["actions"], "a refused run wrote to the cluster"
    assert (thumbnailer(after)["replicas"], after["nodes"]) == (2, world["nodes"])
    assert journal.read_bytes() == before

    record = json.loads(cli("status", "p.yaml", "-o", "json").out)
    assert record["surges"] == []
    [named] = record["unreadableSurges"]
    assert (named["deployment"], named["replicas"], named["annotation"]) == (
        "shop/thumbnailer",
        2,
        '{"original": 1, "extra"',
    )
    table = cli("status", "p.yaml").out
    assert "unreadable surge record: Deployment shop/thumbnailer carries a surge record" in table
    assert "apply, resume and rollback refuse until then" in table
