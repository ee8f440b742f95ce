"""The maintenance window: parse its end, and decide at each wave boundary whether the
next wave can finish before it closes. Pure: the clock's ``now`` is passed in.

A wave's duration comes from the one duration model (``migrate.estimate.wave_seconds``,
the runbook's too: a parallel wave lasts as long as its slowest batch, not the sum of its
nodes), fed with the mean measured duration of the nodes this run migrated so far, or,
before any node finished, the plan's estimate of each node.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo

from migrate.errors import BadInput
from migrate.estimate import Estimate, wave_seconds
from migrate.journal import NodeState, RunState
from migrate.plan import Plan, Wave

# A bare clock time that has passed today is taken for tomorrow only when that is at most
# this far ahead (a window that runs past midnight); further, it is far more likely a window
# already over, or a typo, than a window of almost a day: the date must be given.
TOMORROW_AT_MOST = timedelta(hours=12)


def parse_window_end(text: str, now: datetime, local: tzinfo | None = None) -> datetime:
    """RFC 3339 (``2026-11-28T23:30:00+01:00``) or ``HH:MM`` local time: today, or past
    midnight if that is at most 12 hours ahead. A window already over is bad input."""
    text = text.strip()
    if not text:
        raise BadInput("--window-end is empty: give HH:MM (local time) or an RFC 3339 time")
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hours, minutes = (int(x) for x in text.split(":"))
        if hours > 23 or minutes > 59:
            raise BadInput(f"--window-end {text!r} is not a time of day")
        here = now.astimezone(local)
        end = datetime.combine(here.date(), time(hours, minutes), tzinfo=here.tzinfo)
        if end > here:
            return end
        if end + timedelta(days=1) - here <= TOMORROW_AT_MOST:
            return end + timedelta(days=1)
        tomorrow = (end + timedelta(days=1)).isoformat(timespec="minutes")
        raise BadInput(
            f"--window-end {text} was {duration(int((here - end).total_seconds()))} ago (now {here:%H:%M} local time); "
            f"for a window ending tomorrow give the date: --window-end {tomorrow}"
        )
    try:
        end = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--window-end {text!r} is neither RFC 3339 nor HH:MM") from None
    if end.tzinfo is None:
        raise BadInput(f"--window-end {text!r} has no time zone (add Z or +HH:MM)")
    if end <= now:
        raise BadInput(f"--window-end {text} is in the past")
    return end


def announce(end: datetime, now: datetime, local: tzinfo | None = None) -> str:
    """The absolute time a ``--window-end`` resolved to, for the operator to check."""
    here = end.astimezone(local)
    left = duration(max(int((end - now).total_seconds()), 0))
    return f"window ends {here:%Y-%m-%d %H:%M %Z} ({here.isoformat(timespec='minutes')}), in {left}"


def duration(seconds: int) -> str:
    """``45s``, ``3m 20s``, ``1h 05m``: short and stable."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m {rest:02d}s" if rest else f"{minutes}m"
    hours, minutes = divmod((seconds + 59) // 60, 60)  # minutes rounded up: 1h 59m 30s is 2h 00m
    return f"{hours}h {minutes:02d}m"


def parse_duration(text: str, flag: str) -> float:
    """``90``, ``90s``, ``2m``, ``1h30m`` -> seconds. Zero is allowed; anything else is bad input."""
    parts = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not text.strip() or parts is None:
        raise BadInput(f"{flag} {text!r} is not a duration (like 90s, 2m or 1h30m)")
    hours, minutes, seconds = (int(x or 0) for x in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def measured_node_seconds(state: RunState) -> float | None:
    """Mean duration of the nodes this run migrated, or None before the first one."""
    durations = []
    for run in state.nodes.values():
        if run.state is NodeState.MIGRATED and run.started_at and run.finished_at:
            started = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))
            finished = datetime.fromisoformat(run.finished_at.replace("Z", "+00:00"))
            durations.append((finished - started).total_seconds())
    return sum(durations) / len(durations) if durations else None


def wave_seconds_left(plan: Plan, wave: Wave, state: RunState, est: Estimate) -> float:
    """Seconds the nodes of ``wave`` not yet migrated need: each node's estimate, or the mean
    measured so far once a node finished, through the one model of a wave's duration."""
    measured = measured_node_seconds(state)
    todo = [n.name for n in wave.nodes if state.nodes[n.name].state is not NodeState.MIGRATED]
    return wave_seconds([measured or est.nodes[n] for n in todo], plan.options.node_parallelism)


def wave_fits(
    now: datetime, end: datetime, plan: Plan, wave: Wave, state: RunState, est: Estimate
) -> tuple[bool, float]:
    """Whether what is left of ``wave`` ends before ``end``; and its expected seconds."""
    needed = wave_seconds_left(plan, wave, state, est)
    return now + timedelta(seconds=needed) <= end, needed
