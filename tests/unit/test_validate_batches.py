"""The validate step asks the backend for its checks in batches, and asks a failing check
again on its own: a batch's answers after a retried check are asked afresh."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from migrate.errors import ValidationFailed
from migrate.plan import NodePlan, PlanOptions
from migrate.ports import Event, ProbeResult, StopFlag, SystemClock
from migrate.steps import StepContext, validate


class ScriptedCluster:
    """``probe_many`` answers every check of a run of checks at once, as one probe pod does;
    ``failing[check]`` answers that check with a failure this many more times."""

    def __init__(self, failing: dict[str, int]) -> None:
        self.failing = dict(failing)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _answer(self, check: str) -> ProbeResult:
        if self.failing.get(check, 0) > 0:
            self.failing[check] -= 1
            return ProbeResult(check, False, f"{check} broken", f"{check} working")
        return ProbeResult(check, True, f"{check} ok", f"{check} working")

    def probe(self, node: str, check: str, timeout: float) -> ProbeResult:
        self.calls.append(("probe", (check,)))
        return self._answer(check)

    def probe_many(self, node: str, checks: Sequence[str], timeout: float) -> list[ProbeResult]:
        self.calls.append(("probe_many", tuple(checks)))
        return [self._answer(c) for c in checks]  # no stop at a failure: the worst case


def run(cluster: ScriptedCluster) -> tuple[str, list[Event]]:
    events: list[Event] = []
    ctx = StepContext(
        cluster=cluster,  # type: ignore[arg-type]
        options=PlanOptions(),
        clock=SystemClock(),
        stop=StopFlag(),
        emit=events.append,
        plan_id="p1",
        probe_retry_gap=0,
    )
    return validate.run(ctx, NodePlan("n1")), events


def test_all_checks_in_one_batch_when_all_pass():
    cluster = ScriptedCluster({})
    message, events = run(cluster)
    assert cluster.calls == [("probe_many", validate.CHECKS)]
    assert message == "passed: " + ", ".join(f"{c} ({c} ok)" for c in validate.CHECKS)
    assert events == []


def test_a_check_failing_once_is_asked_alone_then_the_rest_afresh():
    cluster = ScriptedCluster({"dns": 1, "connectivity": 1})
    message, events = run(cluster)
    rest = validate.CHECKS[validate.CHECKS.index("dns") + 1 :]
    assert cluster.calls == [
        ("probe_many", validate.CHECKS),
        ("probe", ("dns",)),
        # connectivity's failure in the first batch is not counted: it is asked again after dns
        ("probe_many", rest),
    ]
    assert "dns (dns ok, attempt 2)" in message and "connectivity (connectivity ok)" in message
    assert [e.message for e in events] == ["dns: observed dns broken; attempt 2/3 in 0s"]


def test_a_check_failing_every_attempt_fails_the_step_and_nothing_after_it_counts():
    cluster = ScriptedCluster({"pod-network": validate.ATTEMPTS})
    with pytest.raises(ValidationFailed, match="pod-network: observed pod-network broken") as failed:
        run(cluster)
    assert failed.value.context["check"] == "pod-network"
    assert [c for c in cluster.calls if c[0] == "probe"] == [("probe", ("pod-network",))] * (validate.ATTEMPTS - 1)
    assert len([c for c in cluster.calls if c[0] == "probe_many"]) == 1
