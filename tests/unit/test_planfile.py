"""Plan files: round trip, determinism, and one clear line for every defect."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate import planfile
from migrate.errors import BadInput
from migrate.plan import Plan, PlanOptions, Target
from migrate.planner import build_plan
from tests import builders as b


def sample_plan() -> Plan:
    inv = b.inventory([b.node("cp", control_plane=True), b.node("w1"), b.node("w2")], [b.pod("p", "w1")])
    return build_plan(inv, PlanOptions(max_unavailable=2), Target("sim", "t", "sim://t"))


def test_plan_round_trips_through_its_file_with_mode_0600(tmp_path):
    plan = sample_plan()
    path = tmp_path / "p.yaml"
    planfile.write(plan, path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = planfile.read(path)
    assert again == plan and again.id == plan.id


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("{{{ not yaml", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("kind: Deployment\n", "not a MigrationPlan"),
        ("kind: MigrationPlan\napiVersion: cni-migrate.io/v99\n", "not supported"),
        ("kind: MigrationPlan\napiVersion: cni-migrate.io/v1\n", "missing field"),
    ],
)
def test_defective_plan_files_are_one_line_bad_input(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as info:
        planfile.read(path)
    assert "\n" not in info.value.message


def test_missing_plan_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        planfile.read(tmp_path / "nope.yaml")


def test_hand_edited_plan_fails_its_checksum(tmp_path):
    path = tmp_path / "p.yaml"
    planfile.write(sample_plan(), path)
    record = yaml.safe_load(path.read_text())
    record["options"]["maxUnavailable"] = 5
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    with pytest.raises(BadInput, match="checksum"):
        planfile.read(path)


def test_truncated_plan_file_is_bad_input(tmp_path):
    path = tmp_path / "p.yaml"
    planfile.write(sample_plan(), path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(BadInput):
        planfile.read(path)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_plan_records_fail_cleanly_never_with_a_traceback(data):
    record = sample_plan().to_record()
    # Replace one part of a valid record with junk, anywhere in the tree.
    path = []
    node = record
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append(key)
        node = node[key]
    if not path:
        return
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(yaml_values)
    try:
        Plan.from_record(record)
    except BadInput as exc:
        assert "\n" not in exc.message


def test_options_added_later_are_written_only_when_set_so_older_plans_keep_their_id():
    from migrate.plan import PlanOptions

    assert "reboot" not in PlanOptions().to_record()
    assert PlanOptions(reboot=True).to_record()["reboot"] is True
    assert PlanOptions.from_record(PlanOptions().to_record()) == PlanOptions()
    assert "nodeParallelism" not in PlanOptions().to_record()
    assert PlanOptions.from_record(PlanOptions(node_parallelism=3).to_record()).node_parallelism == 3


def test_a_negative_node_parallelism_is_refused():
    from migrate.plan import PlanOptions

    with pytest.raises(BadInput, match="--node-parallelism"):
        PlanOptions(node_parallelism=-1)
