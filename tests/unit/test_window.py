"""The maintenance window: parsing its end, and whether the next wave still fits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migrate.errors import BadInput
from migrate.estimate import estimate
from migrate.journal import NodeState, RunState
from migrate.plan import PlanOptions, Target
from migrate.planner import build_plan
from migrate.window import (
    announce,
    duration,
    measured_node_seconds,
    parse_duration,
    parse_window_end,
    wave_fits,
    wave_seconds_left,
)
from tests import builders as b

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def test_hh_mm_is_today_or_tomorrow_in_local_time():
    assert parse_window_end("23:30", NOW, UTC) == NOW.replace(hour=23, minute=30)
    assert parse_window_end("01:15", NOW, UTC) == (NOW + timedelta(days=1)).replace(hour=1, minute=15)


def test_a_clock_time_just_passed_is_refused_and_the_dated_form_is_offered():
    # 21:50 at 22:00: a window already over (or a typo), not one of 23 h 50 m.
    with pytest.raises(BadInput, match=r"21:50 was 10m ago .* give the date: --window-end 2026-11-29T21:50\+00:00"):
        parse_window_end("21:50", NOW, UTC)
    # Twelve hours ahead is the furthest a bare time reaches past midnight.
    assert parse_window_end("10:00", NOW, UTC) == (NOW + timedelta(hours=12))
    with pytest.raises(BadInput, match="give the date"):
        parse_window_end("10:01", NOW, UTC)


def test_the_resolved_end_is_echoed_as_an_absolute_time():
    end = parse_window_end("01:15", NOW, UTC)
    assert announce(end, NOW, UTC) == "window ends 2026-11-29 01:15 UTC (2026-11-29T01:15+00:00), in 3h 15m"


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (45, "45s"), (60, "1m"), (200, "3m 20s"), (3600, "1h 00m"), (3661, "1h 02m"), (10799, "3h 00m")],
)
def test_duration_is_short_and_stable(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("  ", "is empty"),
        ("2026-11-28T21:00:00Z", "in the past"),
        ("2026-11-28T23:00:00", "no time zone"),
        ("tonight", "neither RFC 3339"),
        ("25:00", "not a time of day"),
    ],
)
def test_bad_window_ends_are_bad_input(text, message):
    with pytest.raises(BadInput, match=message):
        parse_window_end(text, NOW, UTC)


def state_with_migrated(durations, options=None):
    """A run of five workers (w0..w4) whose first nodes migrated in ``durations`` seconds."""
    inv = b.inventory([b.node(f"w{i}") for i in range(5)])
    plan = build_plan(inv, options or PlanOptions(canary=0, max_unavailable=1), Target("sim", "t", ""))
    state = RunState.new(plan)
    for i, seconds in enumerate(durations):
        start = NOW - timedelta(seconds=1000)
        state = state.with_node_state(f"w{i}", NodeState.IN_PROGRESS, start.isoformat().replace("+00:00", "Z"))
        end = (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        state = state.with_node_state(f"w{i}", NodeState.MIGRATED, end)
    return plan, state


def test_the_estimate_is_used_until_a_node_was_measured():
    plan, state = state_with_migrated([])
    est = estimate(plan)
    node = est.nodes["w0"]
    assert measured_node_seconds(state) is None
    assert wave_fits(NOW, NOW + timedelta(seconds=node), plan, plan.waves[0], state, est) == (True, node)
    assert wave_fits(NOW, NOW + timedelta(seconds=node - 1), plan, plan.waves[0], state, est) == (False, node)


def test_measured_durations_replace_the_estimate():
    plan, state = state_with_migrated([100, 140], PlanOptions(canary=0, max_unavailable=3, node_parallelism=1))
    assert [len(w.nodes) for w in plan.waves] == [3, 2]
    assert measured_node_seconds(state) == 120
    # Wave 1 has w2 left: one node at the measured mean; wave 2, one after the other.
    assert wave_seconds_left(plan, plan.waves[0], state, estimate(plan)) == 120
    fits, needed = wave_fits(NOW, NOW + timedelta(seconds=200), plan, plan.waves[1], state, estimate(plan))
    assert (fits, needed) == (False, 240)


def test_a_parallel_wave_needs_its_slowest_node_not_the_sum_like_the_runbook_says():
    # The case: plan --canary 3 --max-unavailable 3, then apply --window-end: the gate
    # said 14m 30s (three nodes in a row) while the runbook said 5m for the same wave.
    plan, state = state_with_migrated([], PlanOptions(canary=3, max_unavailable=3))
    est = estimate(plan)
    canary = plan.waves[0]
    assert len(canary.nodes) == 3
    needed = wave_seconds_left(plan, canary, state, est)
    assert needed == est.waves[1] < 2 * est.nodes["w0"]
    assert duration(int(needed)) == "5m"
    assert wave_fits(NOW, NOW + timedelta(minutes=8), plan, canary, state, est)[0] is True


@pytest.mark.parametrize(
    "text, seconds", [("90", 90), ("90s", 90), ("2m", 120), ("1h30m", 5400), ("1h", 3600), ("0s", 0), (" 2m ", 120)]
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text, "--soak") == seconds


@pytest.mark.parametrize("text", ["", "m", "2 minutes", "-1m", "1.5m", "2d"])
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(BadInput, match="--soak .* is not a duration"):
        parse_duration(text, "--soak")
