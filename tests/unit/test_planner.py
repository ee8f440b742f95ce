"""The planner's promises, as properties over generated clusters and as named examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.errors import BadInput
from migrate.model import MIGRATION_LABEL, Cni, frozen_map
from migrate.plan import PlanOptions, Severity, Target
from migrate.planfile import dump
from migrate.planner import build_plan
from migrate.preflight import evictable
from tests import builders as b

TARGET = Target("sim", "t", "sim://t")


@st.composite
def clusters(draw: st.DrawFn):
    workers = draw(st.integers(1, 14))
    cps = draw(st.integers(0, 3))
    nodes = [b.node(f"cp-{i}", control_plane=True) for i in range(cps)]
    nodes += [b.node(f"w-{i:02d}") for i in range(workers)]
    apps = draw(st.integers(1, 6))
    pods = []
    for i in range(draw(st.integers(0, 40))):
        app = f"app{draw(st.integers(0, apps - 1))}"
        where = draw(st.sampled_from([n.name for n in nodes]))
        pods.append(b.pod(f"p{i}", where, app=app))
    pdbs = [b.pdb(f"pdb{a}", f"app{a}", allowed=draw(st.integers(1, 3))) for a in range(apps) if draw(st.booleans())]
    options = PlanOptions(max_unavailable=draw(st.integers(1, 5)), canary=draw(st.integers(0, 3)))
    return b.inventory(nodes, pods, pdbs), options


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_every_node_is_planned_exactly_once(case):
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    names = [n.name for n in plan.nodes]
    assert sorted(names) == sorted(n.name for n in inv.nodes)
    assert len(names) == len(set(names))


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_waves_respect_max_unavailable_and_put_control_plane_last(case):
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    for wave in plan.waves:
        limit = options.canary if wave.canary else options.max_unavailable
        assert 1 <= len(wave.nodes) <= max(limit, 1)
    kinds = [n.control_plane for n in plan.nodes]
    assert kinds == sorted(kinds), "control-plane nodes must come after every worker"
    assert all(len(w.nodes) == 1 for w in plan.waves if w.nodes[0].control_plane)


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_no_wave_disrupts_more_pods_of_a_pdb_than_it_allows(case):
    """Within a wave, a PDB's pods stay within its budget, unless they all sit on one node
    (that node's drain then waits for the budget, one eviction at a time)."""
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    for wave in plan.waves:
        for budget in inv.pdbs:
            per_node = {n.name: sum(1 for p in evictable(inv.pods_on(n.name)) if budget.selects(p)) for n in wave.nodes}
            hosting = [name for name, count in per_node.items() if count]
            total = sum(per_node.values())
            assert total <= max(budget.disruptions_allowed, 1) or len(hosting) == 1, (wave, budget.key, per_node)


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_same_cluster_and_options_give_a_byte_identical_plan(case):
    inv, options = case
    assert dump(build_plan(inv, options, TARGET)) == dump(build_plan(inv, options, TARGET))


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_every_wave_smaller_than_asked_is_explained_by_a_warning(case):
    inv, options = case
    plan = build_plan(inv, options, TARGET)
    checks = {f.check for f in plan.findings}
    workers = [n for n in plan.nodes if not n.control_plane]
    canary = len(plan.waves[0].nodes) if plan.waves and plan.waves[0].canary else 0
    assert ("canary-size" in checks) == (0 < canary < options.canary or 0 < len(workers) < options.canary)
    # A worker wave stays open until it is full; only the last can end small for want of nodes.
    rest = [w for w in plan.waves if not w.canary and not w.nodes[0].control_plane]
    assert ("wave-size" in checks) == any(len(w.nodes) < options.max_unavailable for w in rest[:-1])


def test_canary_wave_is_the_first_worker_alone():
    inv = b.inventory([b.node("cp-1", control_plane=True), b.node("w-1"), b.node("w-2"), b.node("w-3")])
    plan = build_plan(inv, PlanOptions(max_unavailable=2, canary=1), TARGET)
    assert [[n.name for n in w.nodes] for w in plan.waves] == [["w-1"], ["w-2", "w-3"], ["cp-1"]]
    assert plan.waves[0].canary and not plan.waves[1].canary


def test_two_nodes_sharing_a_one_disruption_pdb_go_in_separate_waves():
    nodes = [b.node(f"w-{i}") for i in range(1, 5)]
    pods = [b.pod("a1", "w-2", app="a"), b.pod("a2", "w-3", app="a"), b.pod("x", "w-4", app="x")]
    plan = build_plan(
        b.inventory(nodes, pods, [b.pdb("a", "a", allowed=1)]), PlanOptions(max_unavailable=3, canary=1), TARGET
    )
    waves = [[n.name for n in w.nodes] for w in plan.waves]
    assert waves == [["w-1"], ["w-2", "w-4"], ["w-3"]]


def test_already_migrated_nodes_are_left_out_with_the_reason():
    done = b.node("w-1", cni=Cni.CILIUM, labels=frozen_map({MIGRATION_LABEL: "true"}))
    plan = build_plan(b.inventory([done]), PlanOptions(), TARGET)
    assert plan.nodes == ()
    assert plan.excluded == (("w-1", "already migrated to Cilium"),)


def test_excluding_an_unknown_node_is_bad_input():
    with pytest.raises(BadInput, match="unknown node"):
        build_plan(b.inventory([b.node("w-1")]), PlanOptions(exclude_nodes=("nope",)), TARGET)


def test_plan_without_capacity_to_drain_is_blocked():
    nodes = [b.node("w-1", cpu_millis=1000), b.node("w-2", cpu_millis=1000)]
    pods = [b.pod(f"p{i}", "w-1", cpu_millis=400) for i in range(2)]
    pods += [b.pod(f"q{i}", "w-2", cpu_millis=400) for i in range(2)]
    plan = build_plan(b.inventory(nodes, pods), PlanOptions(canary=0), TARGET)
    capacity = [f for f in plan.findings if f.check == "capacity"]
    assert capacity and capacity[0].severity is Severity.BLOCKING
    assert "w-1" in capacity[0].message


def test_nodes_are_taken_in_natural_order_of_their_names():
    nodes = [b.node(f"worker-{i}") for i in (10, 2, 11, 1, 3)]
    plan = build_plan(b.inventory(nodes), PlanOptions(max_unavailable=2, canary=1), TARGET)
    assert [[n.name for n in w.nodes] for w in plan.waves] == [
        ["worker-1"],
        ["worker-2", "worker-3"],
        ["worker-10", "worker-11"],
    ]


def test_a_canary_larger_than_the_workers_is_capped_with_a_warning_that_says_so():
    inv = b.inventory([b.node("cp-1", control_plane=True), *(b.node(f"w-{i}") for i in range(1, 6))])
    plan = build_plan(inv, PlanOptions(canary=99), TARGET)
    assert [n.name for n in plan.waves[0].nodes] == ["w-1", "w-2", "w-3", "w-4", "w-5"]
    (finding,) = [f for f in plan.findings if f.check == "canary-size"]
    assert finding.severity is Severity.WARNING and not plan.blocking
    assert "--canary 99 asks for more workers than the plan migrates (5): the canary wave has 5" in finding.message


def test_waves_kept_small_by_a_pdb_are_a_warning_naming_the_budget():
    nodes = [b.node(f"w-{i}") for i in range(1, 6)]
    pods = [b.pod(f"a{i}", f"w-{i}", app="a") for i in (1, 2, 3)]
    plan = build_plan(
        b.inventory(nodes, pods, [b.pdb("a", "a", allowed=1)]), PlanOptions(max_unavailable=3, canary=2), TARGET
    )
    assert [[n.name for n in w.nodes] for w in plan.waves] == [["w-1", "w-4"], ["w-2", "w-5"], ["w-3"]]
    by_check = {f.check: f for f in plan.findings}
    assert by_check["wave-size"].subjects == ("default/a",)
    assert "1 wave(s) have fewer nodes than --max-unavailable 3 (wave 2: 2)" in by_check["wave-size"].message
    assert "default/a allow no more of their pods down at once" in by_check["wave-size"].message
    assert "canary-size" not in by_check  # the canary got the two it asked for


def test_a_canary_kept_small_by_a_pdb_says_which_budget():
    nodes = [b.node(f"w-{i}") for i in range(1, 4)]
    pods = [b.pod(f"a{i}", f"w-{i}", app="a") for i in (1, 2)]
    plan = build_plan(b.inventory(nodes, pods, [b.pdb("a", "a", allowed=1)]), PlanOptions(canary=2), TARGET)
    assert [n.name for n in plan.waves[0].nodes] == ["w-1", "w-3"]
    assert not [f for f in plan.findings if f.check == "canary-size"]  # w-3 filled the place w-2 could not
    plan = build_plan(b.inventory(nodes, pods, [b.pdb("a", "a", allowed=1)]), PlanOptions(canary=3), TARGET)
    (finding,) = [f for f in plan.findings if f.check == "canary-size"]
    assert finding.message.startswith(
        "the canary wave has 2 worker(s), not --canary 3: PodDisruptionBudget(s) default/a"
    )


def test_waves_as_asked_add_no_adjustment_finding():
    inv = b.inventory([b.node("cp-1", control_plane=True), *(b.node(f"w-{i}") for i in range(1, 6))])
    plan = build_plan(inv, PlanOptions(max_unavailable=2, canary=1), TARGET)
    assert not {"canary-size", "wave-size"} & {f.check for f in plan.findings}
