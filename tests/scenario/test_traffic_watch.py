"""apply --traffic-watch on every backend: probers for the run, each node's window judged by
what they saw, the watch removed at the end, and a killed run's watch cleaned up."""

from __future__ import annotations

import pytest

from migrate.errors import Interrupted, ValidationFailed
from migrate.journal import NodeState, RunStatus
from migrate.model import Cni


def traffic_lines(backend) -> list[str]:
    return [e.message for e in backend.events if e.kind == "prepare" and e.step == "traffic-watch"]


def test_the_watch_judges_every_nodes_window_and_is_removed_at_the_end(backend):
    plan = backend.plan(max_unavailable=2)
    state = backend.executor(plan, traffic_watch=True).apply()
    assert state.status is RunStatus.COMPLETED
    assert all(v == (Cni.CILIUM, False, "true") for v in backend.node_view().values())
    for node in plan.nodes:
        message = state.nodes[node.name].steps[f"{node.name}/validate"].message
        assert "traffic-watch (0 failed probe request(s) seen by 6 prober(s), longest interruption 0s)" in message
    lines = traffic_lines(backend)
    assert lines[0] == "6/6 probers reporting"
    # the run's report: one line per node, then the removal
    assert sorted(line.split(":")[0] for line in lines[1:-1]) == sorted(n.name for n in plan.nodes)
    assert lines[-1] == "traffic watch removed"
    assert not backend.traffic_watch_deployed()


def test_failures_the_probers_see_during_a_swap_roll_the_node_back(backend):
    plan = backend.plan(max_unavailable=2, node_parallelism=1)
    victim = plan.waves[1].nodes[0].name
    backend.fail_validation(victim, "traffic-watch")
    with pytest.raises(ValidationFailed, match=f"validation of {victim} failed: traffic-watch: observed") as err:
        backend.executor(plan, traffic_watch=True, max_probe_failures=1).apply()
    assert f"(from {victim}: " in err.value.message
    assert "expected at most 1 failed probe request(s)" in err.value.message
    state = backend.store().load()
    assert state.nodes[victim].state is NodeState.FAILED
    assert backend.node_view()[victim] == (Cni.CALICO, False, None)
    canary = plan.waves[0].nodes[0].name
    assert state.nodes[canary].state is NodeState.MIGRATED  # its window saw no failure
    assert not backend.traffic_watch_deployed()


def test_a_killed_runs_watch_is_removed_by_a_resume_without_it(backend):
    plan = backend.plan()
    stop, emit = backend.stopping_after("drain")
    ex = backend.executor(plan, stop=stop, traffic_watch=True)
    ex.emit = emit
    with pytest.raises(Interrupted):
        ex.apply()
    assert not backend.traffic_watch_deployed()  # an interrupted run removes it too
    backend.cluster.start_traffic_watch(60)  # what a SIGKILL would have left running
    assert backend.traffic_watch_deployed()
    state = backend.executor(plan).apply(resume=True)
    assert state.status is RunStatus.COMPLETED
    assert not backend.traffic_watch_deployed()
