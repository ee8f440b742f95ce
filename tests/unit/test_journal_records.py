"""Journal records across versions: a journal written before cluster steps had typed
statuses (bare strings in ``prepare`` and ``finalize``) still loads, typed, and is written
back the same."""

from __future__ import annotations

import copy

import pytest

from migrate.errors import BadInput
from migrate.journal import ClusterStep, RunState, StepStatus
from migrate.plan import PlanOptions, Target
from migrate.planner import build_plan
from tests import builders as b

PLAN = build_plan(b.inventory([b.node("cp", control_plane=True), b.node("w1")]), PlanOptions(), Target("sim", "t", ""))


def earlier_record() -> dict:
    """A journal as cni-migrate wrote it before: bare strings for its cluster-level steps."""
    record = RunState.new(PLAN).to_record()
    record["prepare"] = {"install-cilium": "started"}
    record["finalize"] = {"restart-agents": "succeeded", "check-policy": "failed"}
    return record


def test_a_journal_of_an_earlier_version_loads_with_typed_cluster_steps():
    state = RunState.from_record(earlier_record())
    assert state.cluster_step(ClusterStep.INSTALL_CILIUM) is StepStatus.STARTED
    assert state.done(ClusterStep.RESTART_AGENTS) and not state.done(ClusterStep.CHECK_POLICY)
    assert state.finalize[ClusterStep.CHECK_POLICY] is StepStatus.FAILED
    assert state.to_record() == earlier_record()


def test_a_cluster_step_lands_in_its_section():
    state = RunState.new(PLAN).with_cluster_step(ClusterStep.INSTALL_CILIUM, StepStatus.INTERRUPTED)
    state = state.with_cluster_step(ClusterStep.REMOVE_CALICO, StepStatus.STARTED)
    assert state.to_record()["prepare"] == {"install-cilium": "interrupted"}
    assert state.to_record()["finalize"] == {"remove-calico": "started"}
    assert RunState.from_record(copy.deepcopy(state.to_record())) == state


@pytest.mark.parametrize(
    "section, steps", [("prepare", {"install-cilium": "done"}), ("finalize", {"reboot": "started"})]
)
def test_an_unknown_cluster_step_or_status_is_refused_not_guessed(section, steps):
    record = {**earlier_record(), section: steps}
    with pytest.raises(BadInput, match="malformed"):
        RunState.from_record(record)
