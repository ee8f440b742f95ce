"""kill -9 right after a drain took a CoreDNS pod out of kube-dns (the ``handoff-marked``
failpoint of migrate/steps/handoff.py), then resume or rollback through the CLI: the marked
pod is deleted before any node is touched again, nothing stays marked, CoreDNS is back at
its two replicas with its labels. Both backends at the executor level:
tests/scenario/test_handoff.py."""

from __future__ import annotations

import json

import pytest

from migrate.model import HANDOFF_LABEL, MIGRATION_LABEL

PLAN = ("plan", "--sim", "c1", "--out", "p.yaml", "--force", "--delete-emptydir-data")


def coredns(world: dict) -> list[dict]:
    return [p for p in world["pods"].values() if p["namespace"] == "kube-system" and p["name"].startswith("coredns")]


@pytest.mark.parametrize("then", ["resume", "rollback"])
def test_killed_after_a_handoff_then_resumed_or_rolled_back_leaves_nothing_marked(cli, then):
    cli("sim", "create", "c1", "--nodes", "4")
    assert cli(*PLAN).code == 0

    killed = cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": "at:handoff-marked"})

    assert killed.code == -9, killed
    marked = [p for p in coredns(cli.world("c1")) if HANDOFF_LABEL in p["labels"]]
    assert len(marked) == 1 and "app" not in marked[0]["labels"] and marked[0]["owner"] is None
    status = cli("status", "p.yaml")
    assert f"handed off: kube-system/{marked[0]['name']} on {marked[0]['node']}, out of kube-dns" in status.out
    listed = cli("status", "p.yaml", "-o", "json")
    assert [h["pod"] for h in json.loads(listed.out)["handedOff"]] == [f"kube-system/{marked[0]['name']}"]
    after = cli(then, "p.yaml", "--yes")
    assert after.code == 0, after.err + after.out
    assert f"deleted kube-system/{marked[0]['name']}: a hand-off from kube-dns was cut short" in after.out
    world = cli.world("c1")
    assert marked[0]["uid"] not in world["pods"]
    pods = coredns(world)
    assert len(pods) == 2 and all(p["labels"] == {"app": "coredns"} and p["owner"] for p in pods)
    if then == "resume":
        assert all(n["labels"].get(MIGRATION_LABEL) == "true" for n in world["nodes"].values())
    else:
        assert not any(n["unschedulable"] for n in world["nodes"].values())
