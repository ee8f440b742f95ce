"""Plans are validated, not only checksummed: a plan file edited by hand and summed again is
refused, naming the node or wave, unless it is one the planner could have made."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate import planfile
from migrate.errors import BadInput
from migrate.model import MIGRATION_LABEL, Cni, frozen_map
from migrate.plan import NodePlan, Plan, PlanOptions, Target, checksum, unsound
from migrate.planner import ADJUSTMENT_CHECKS, build_plan
from migrate.preflight import recheck
from tests import builders as b

TARGET = Target("sim", "t", "sim://t")
Record = dict[str, Any]


def sample_plan(**options: Any) -> Plan:
    """1 control-plane node and 6 workers; with maxUnavailable 2 the waves are
    1: w-1 (canary), 2: w-2 w-3, 3: w-4 w-5, 4: w-6, 5: cp."""
    nodes = [b.node("cp", control_plane=True)] + [b.node(f"w-{i}") for i in range(1, 7)]
    return build_plan(b.inventory(nodes), PlanOptions(**{"max_unavailable": 2, **options}), TARGET)


def resummed(record: Record) -> Record:
    """What a hostile (or hurried) operator does after editing: sum the file again."""
    body = {k: v for k, v in record.items() if k not in ("apiVersion", "kind", "metadata")}
    digest = checksum(body)
    record["metadata"] = {"id": digest.split(":", 1)[1][:12], "checksum": digest}
    return record


def node_record(name: str, control_plane: bool = False) -> Record:
    steps = [{"id": s.id, "kind": s.kind.value} for s in NodePlan(name).steps]
    return {"name": name, "controlPlane": control_plane, "keepCordoned": False, "steps": steps}


def wave(r: Record, index: int) -> Record:
    return next(w for w in r["waves"] if w["index"] == index)


def take(r: Record, name: str) -> Record:
    """Remove node ``name`` from its wave; returns its record."""
    for w in r["waves"]:
        for n in w["nodes"]:
            if n["name"] == name:
                w["nodes"].remove(n)
                return n
    raise AssertionError(f"{name} is in no wave")


def renumber(r: Record) -> None:
    for i, w in enumerate(r["waves"], 1):
        w["index"] = i


def test_the_sample_plan_has_the_waves_the_edits_below_assume():
    plan = sample_plan()
    assert [[n.name for n in w.nodes] for w in plan.waves] == [["w-1"], ["w-2", "w-3"], ["w-4", "w-5"], ["w-6"], ["cp"]]
    assert plan.waves[0].canary and unsound(plan) == []


def drop_node(r: Record) -> None:
    take(r, "w-3")


def list_twice(r: Record) -> None:
    wave(r, 4)["nodes"].append(node_record("w-2"))


def list_twice_in_one_wave(r: Record) -> None:
    wave(r, 4)["nodes"].append(node_record("w-6"))


def unknown_node(r: Record) -> None:
    take(r, "w-3")
    wave(r, 2)["nodes"].append(node_record("ghost"))


def wave_node_also_excluded(r: Record) -> None:
    r["excluded"].append({"name": "w-3", "reason": "excluded with --exclude-node"})


def excluded_node_not_in_snapshot(r: Record) -> None:
    r["excluded"].append({"name": "ghost", "reason": "excluded with --exclude-node"})


def exclude_option_not_excluded(r: Record) -> None:
    r["options"]["excludeNodes"] = ["w-3"]


def misnumbered(r: Record) -> None:
    second, third = wave(r, 2), wave(r, 3)
    second["index"], third["index"] = 3, 2


def empty_wave(r: Record) -> None:
    r["waves"].append({"index": len(r["waves"]) + 1, "canary": False, "nodes": []})


def wave_of_five(r: Record) -> None:
    merged = [n for w in r["waves"][1:4] for n in w["nodes"]]
    r["waves"][1:4] = [{"index": 2, "canary": False, "nodes": merged}]
    renumber(r)


def canary_not_first(r: Record) -> None:
    wave(r, 1)["canary"] = False
    wave(r, 4)["canary"] = True


def two_canaries(r: Record) -> None:
    wave(r, 4)["canary"] = True


def canary_too_large(r: Record) -> None:
    wave(r, 1)["nodes"].append(take(r, "w-2"))


def control_plane_canary(r: Record) -> None:
    wave(r, 1)["nodes"], wave(r, 5)["nodes"] = wave(r, 5)["nodes"], wave(r, 1)["nodes"]


def no_canary(r: Record) -> None:
    wave(r, 1)["canary"] = False


def control_plane_with_workers(r: Record) -> None:
    wave(r, 4)["nodes"].append(take(r, "cp"))
    r["waves"].pop()


def workers_after_control_plane(r: Record) -> None:
    r["waves"][3], r["waves"][4] = r["waves"][4], r["waves"][3]
    renumber(r)


@pytest.mark.parametrize(
    "edit, said",
    [
        (drop_node, "node w-3 is in the cluster snapshot but in no wave and not excluded"),
        (list_twice, "node w-2 is listed twice (waves 2 and 4)"),
        (list_twice_in_one_wave, "node w-6 is listed twice in wave 4"),
        (unknown_node, "node ghost of wave 2 is not in the cluster snapshot"),
        (wave_node_also_excluded, "node w-3 of wave 2 is also excluded"),
        (excluded_node_not_in_snapshot, "excluded node ghost is not in the cluster snapshot"),
        (exclude_option_not_excluded, "option excludeNodes names w-3, which the plan does not exclude"),
        (misnumbered, "waves are not numbered 1..5 in order (wave 2 is numbered 3)"),
        (empty_wave, "wave 6 has no nodes"),
        (wave_of_five, "wave 2 has 5 nodes, more than maxUnavailable 2"),
        (canary_not_first, "wave 4 is the canary wave; only wave 1 may be"),
        (two_canaries, "waves 1, 4 are all canary waves"),
        (canary_too_large, "canary wave 1 has 2 node(s), more than option canary 1"),
        (control_plane_canary, "control-plane node cp is in the canary wave 1"),
        (no_canary, "option canary is 1 but no wave is a canary wave"),
        (control_plane_with_workers, "control-plane node cp shares wave 4 with other nodes"),
        (workers_after_control_plane, "wave 5 of workers comes after control-plane wave 4"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_an_edited_and_resummed_plan_is_refused_naming_the_node_or_wave(
    edit: Callable[[Record], None], said: str
) -> None:
    record = sample_plan().to_record()
    edit(record)
    with pytest.raises(BadInput) as info:
        Plan.from_record(resummed(record))
    assert info.value.message.startswith(f"plan file is unsound: {said}"), info.value.message
    assert "\n" not in info.value.message


def test_the_same_edit_without_a_new_sum_is_still_told_as_a_checksum_mismatch():
    record = sample_plan().to_record()
    drop_node(record)
    with pytest.raises(BadInput, match="checksum does not match"):
        Plan.from_record(record)


def test_a_plan_with_several_defects_names_the_first_and_counts_the_others():
    record = sample_plan().to_record()
    drop_node(record)
    wave_of_five(record)
    with pytest.raises(BadInput, match=r"no wave and not excluded \(and 1 more\)"):
        Plan.from_record(resummed(record))


def test_a_canary_wave_may_be_larger_than_max_unavailable_as_the_planner_makes_it():
    plan = sample_plan(max_unavailable=1, canary=3)
    assert [n.name for n in plan.waves[0].nodes] == ["w-1", "w-2", "w-3"]
    assert Plan.from_record(plan.to_record()) == plan


def test_excluded_and_already_migrated_nodes_are_sound_where_the_planner_puts_them():
    done = b.node("w-9", labels=frozen_map({MIGRATION_LABEL: "true"}), cni=Cni.CILIUM)
    nodes = [b.node("cp", control_plane=True), b.node("w-1"), b.node("w-2"), done]
    plan = build_plan(b.inventory(nodes), PlanOptions(exclude_nodes=("w-2",)), TARGET)
    assert [n for n, _ in plan.excluded] == ["w-2", "w-9"]
    assert Plan.from_record(plan.to_record()) == plan


@pytest.mark.parametrize(
    "where, field, value",
    [
        ("options", "drainTimeoutSeconds", math.inf),
        ("options", "drainTimeoutSeconds", 300.5),
        ("options", "drainTimeoutSeconds", "300"),
        ("options", "maxUnavailable", True),
        ("options", "maxUnavailable", 2.0),
        ("options", "canary", "1"),
        ("options", "nodeParallelism", -math.inf),
        ("options", "force", "false"),
        ("options", "deleteEmptydirData", 0),
        ("options", "reboot", "no"),
        ("wave", "index", 1.0),
        ("wave", "canary", "true"),
        ("node", "controlPlane", "false"),
        ("node", "keepCordoned", 1),
    ],
)
def test_numbers_and_flags_of_another_type_are_refused_in_one_line(where, field, value):
    record = sample_plan().to_record()
    target = {"options": record["options"], "wave": record["waves"][0], "node": record["waves"][0]["nodes"][0]}
    target[where][field] = value
    with pytest.raises(BadInput, match=f"{field} must be") as info:
        Plan.from_record(resummed(record))
    assert "\n" not in info.value.message


def test_an_infinite_drain_timeout_in_the_yaml_file_is_one_line_of_bad_input(tmp_path):
    path = tmp_path / "p.yaml"
    planfile.write(sample_plan(), path)
    record = resummed(yaml.safe_load(path.read_text().replace("drainTimeoutSeconds: 300", "drainTimeoutSeconds: .inf")))
    assert record["options"]["drainTimeoutSeconds"] == math.inf
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    with pytest.raises(BadInput, match=r"option drainTimeoutSeconds must be a whole number, not inf"):
        planfile.read(path)


# -- every plan the planner makes is sound -----------------------------------------------------
@st.composite
def clusters(draw: st.DrawFn):
    """Inventories of every shape the planner meets: control-plane-only clusters, nodes
    already migrated, cordoned, excluded; pods under budgets; any wave options."""
    nodes = []
    for i in range(draw(st.integers(0, 3))):
        nodes.append(b.node(f"cp-{i}", control_plane=True, unschedulable=draw(st.booleans())))
    for i in range(draw(st.integers(0 if nodes else 1, 14))):
        if draw(st.integers(0, 5)) == 0:
            labels = frozen_map({"kubernetes.io/hostname": f"w-{i:02d}", MIGRATION_LABEL: "true"})
            nodes.append(b.node(f"w-{i:02d}", labels=labels, cni=Cni.CILIUM))
        else:
            nodes.append(b.node(f"w-{i:02d}", unschedulable=draw(st.integers(0, 4)) == 0))
    apps = draw(st.integers(1, 5))
    pods = [
        b.pod(f"p{i}", draw(st.sampled_from([n.name for n in nodes])), app=f"app{draw(st.integers(0, apps - 1))}")
        for i in range(draw(st.integers(0, 30)))
    ]
    pdbs = [b.pdb(f"pdb{a}", f"app{a}", allowed=draw(st.integers(0, 3))) for a in range(apps) if draw(st.booleans())]
    excluded = draw(st.lists(st.sampled_from([n.name for n in nodes]), unique=True, max_size=3))
    options = PlanOptions(
        max_unavailable=draw(st.integers(1, 5)),
        canary=draw(st.integers(0, 4)),
        node_parallelism=draw(st.integers(0, 3)),
        exclude_nodes=tuple(excluded),
    )
    return b.inventory(nodes, pods, pdbs), options


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_every_plan_the_planner_makes_is_sound_and_loads_again(case):
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    assert unsound(plan) == []
    assert Plan.from_record(copy.deepcopy(plan.to_record())) == plan


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_the_live_recheck_of_an_unchanged_cluster_finds_what_the_plan_recorded(case):
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    assert recheck(plan, inv) == [f for f in plan.findings if f.check not in ADJUSTMENT_CHECKS]
