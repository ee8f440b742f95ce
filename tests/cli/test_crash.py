"""Crash anywhere: SIGKILL the apply process at every checkpoint boundary, then resume.

A failpoint (``CNI_MIGRATE_FAILPOINT``, see migrate/failpoints.py) makes the real
``cni-migrate apply`` subprocess SIGKILL itself just before or just after its N-th
checkpoint write, for every N of an uninterrupted run. After ``resume`` the cluster must
look exactly as after an uninterrupted run, and no non-idempotent action (an eviction, a
pod restart, a cordon that changed something) may have happened more often.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections import Counter

import pytest

from migrate.model import SURGE_ANNOTATION

SIM = ("sim", "create", "c1", "--nodes", "6", "--seed", "3")
# One node at a time: the N-th checkpoint write must be the same moment in every run. With
# a wave's nodes in threads the interleaving of their evictions varies, and with it the
# names of the replacement pods and where they land (test_random_kill and test_signals
# kill parallel waves, and compare what does not depend on that order).
PLAN = (
    "plan",
    "--sim",
    "c1",
    "--force",
    "--delete-emptydir-data",
    "--max-unavailable",
    "2",
    "--node-parallelism",
    "1",
    "--out",
    "p.yaml",
)


def end_state(world: dict) -> dict:
    nodes = {
        name: (n["unschedulable"], sorted(n["labels"].items()), n["cniFiles"]) for name, n in world["nodes"].items()
    }
    owners = Counter(
        (p["namespace"], (p["owner"] or {}).get("name", "-")) for p in world["pods"].values() if p["ready"]
    )
    return {"nodes": nodes, "ready pods per owner": dict(owners)}


def effects(world: dict) -> Counter:
    """Writes that changed something, by kind and target (eviction targets are pod UIDs)."""
    return Counter((a["op"], a["target"]) for a in world["actions"] if a["changed"] and a["op"] != "delete-pod")


def restarts(world: dict) -> int:
    return sum(1 for a in world["actions"] if a["op"] == "delete-pod")


def same_effects_in_any_order(world: dict, ref: dict) -> None:
    """For runs whose wave nodes work at once: the node-level writes exactly as in ``ref``,
    and no pod evicted twice. Which pods a later wave evicts depends on where the earlier
    replacements landed, which depends on the order of the concurrent evictions; so do the
    surges (a surged pod may land on a node drained later, which surges it again): each
    must end where it began, no Deployment left scaled or carrying a record."""
    mine, theirs = effects(world), effects(ref)

    def placed(op: str) -> bool:
        return op == "evict" or op.startswith("scale:")

    assert {k: v for k, v in mine.items() if not placed(k[0])} == {k: v for k, v in theirs.items() if not placed(k[0])}
    twice = sorted(k[1] for k, v in mine.items() if k[0] == "evict" and v > 1)
    assert not twice, f"evicted twice: {twice}"
    left = [w["name"] for w in world["workloads"] if SURGE_ANNOTATION in (w.get("annotations") or {})]
    assert not left, f"left surged: {left}"
    scaled = {w["name"]: w["replicas"] for w in world["workloads"]}
    assert scaled == {w["name"]: w["replicas"] for w in ref["workloads"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A simulated cluster and its plan, made once; each kill point gets a copy."""
    from tests.cli.conftest import CLI

    cli = CLI(tmp_path_factory.mktemp("template"))
    assert cli(*SIM).code == 0
    assert cli(*PLAN).code == 0
    return cli.cwd


def fresh(template, tmp_path_factory, label: str):
    from tests.cli.conftest import CLI

    directory = tmp_path_factory.mktemp(label)
    shutil.copytree(template, directory, dirs_exist_ok=True)
    return CLI(directory)


@pytest.mark.slow
def test_resume_after_sigkill_at_every_checkpoint_boundary_matches_an_uninterrupted_run(tmp_path_factory, template):
    reference = fresh(template, tmp_path_factory, "reference")
    r = reference("apply", "p.yaml", "--yes")
    assert r.code == 0, r.err
    ref_world = reference.world("c1")
    saves = json.loads(next((reference.cwd / "home" / "runs").iterdir()).joinpath("journal.json").read_text())["seq"]
    saves += 1  # seq counts transitions after the first write
    assert saves > 60  # 6 nodes x (5 steps x 2 + 2 node states) + run states

    kill_points = 0
    for where in ("before-save", "after-save"):
        for n in range(1, saves + 1):
            cli = fresh(template, tmp_path_factory, f"{where}-{n}")
            killed = cli("apply", "p.yaml", "--yes", env={"CNI_MIGRATE_FAILPOINT": f"{where}:{n}"})
            assert killed.code == -signal.SIGKILL, (where, n, killed.code, killed.err)
            kill_points += 1
            resumed = cli("resume", "p.yaml", "--yes")
            if resumed.code == 2 and "no interrupted run" in resumed.err:
                resumed = cli("apply", "p.yaml", "--yes")  # killed before the journal existed
            assert resumed.code == 0, (where, n, resumed.err)
            world = cli.world("c1")
            assert end_state(world) == end_state(ref_world), (where, n)
            assert effects(world) == effects(ref_world), (where, n)
            assert restarts(world) == restarts(ref_world), (where, n)
            journal = json.loads(next((cli.cwd / "home" / "runs").iterdir()).joinpath("journal.json").read_text())
            assert {node["state"] for node in journal["nodes"].values()} == {"migrated"}, (where, n)
    assert kill_points == 2 * saves
    print(f"{kill_points} kill points ({saves} checkpoint writes x before/after), all resumed to the same end state")
