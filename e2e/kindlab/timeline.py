"""One timeline of a run: its steps (from cni-migrate's audit log) beside the probers'
failed requests (bursts folded into one line) and any other timed rows, such as the CPU
samples and the Services' endpoints (``watches``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from .probers import parse_time, target_kind


def step_windows(audit: Iterable[dict[str, Any]]) -> list[tuple[str, str, float, float]]:
    """(node, step, start, end) of every finished step in an audit log, in order; a step
    started again after a kill runs from its first start to its finish."""
    started: dict[tuple[str, str], float] = {}
    out = []
    for ev in audit:
        key = (ev.get("node", ""), ev.get("step", ""))
        if ev.get("event") == "step-started":
            started.setdefault(key, parse_time(ev["timestamp"]))
        elif ev.get("event") == "step-finished" and key in started:
            out.append((*key, started.pop(key), parse_time(ev["timestamp"])))
    return out


def failures_by_step(
    failures: Sequence[dict[str, Any]], audit: Iterable[dict[str, Any]], kind: str = "service"
) -> list[tuple[str, str, int]]:
    """(node, step, failed requests of ``kind``, from probers on other nodes) per finished
    step: e.g. how many requests to the web Service failed while each node drained."""
    out = []
    for node, step, start, end in step_windows(audit):
        n = sum(
            1
            for f in failures
            if target_kind(f.get("target", "")) == kind
            and f.get("from_node") != node
            and start <= parse_time(f["ts"]) <= end
        )
        out.append((node, step, n))
    return out


def failure_timeline(
    failures: Iterable[dict[str, Any]], audit: Iterable[dict[str, Any]], extra: Iterable[tuple[float, str]] = ()
) -> str:
    """The run's steps (from its audit log) and the probers' failed requests in one timeline;
    a burst of failures of one prober to one target with one error (each within 1.5 s of the
    last) is one line with its count and span; ``extra``: more (time, text) rows, e.g. the
    CPU samples."""
    rows: list[tuple[float, str]] = list(extra)
    for ev in audit:
        if ev.get("event") in ("step-started", "step-finished", "prepare", "run-started", "run-finished"):
            what = " ".join(str(ev.get(k, "")) for k in ("event", "step", "outcome") if ev.get(k))
            rows.append((parse_time(ev["timestamp"]), f"{short_node(ev.get('node', '')):<14} {what}"))
    open_bursts: dict[str, list[float]] = {}  # label -> [first send, last send, count]

    def close(label: str) -> None:
        first, last, n = open_bursts.pop(label)
        span = f" x{n:.0f} over {last - first:.1f} s" if n > 1 else ""
        rows.append((first, f"  FAIL {label}{span}"))

    for f in failures:
        sent = parse_time(f["ts"])
        error = short_error(f.get("error", ""))
        label = f"{short_node(f.get('from_node', '')):<14} -> {f.get('target', '')}: {error}"
        for other in [k for k, v in open_bursts.items() if sent - v[1] >= 1.5]:
            close(other)
        if label in open_bursts:
            open_bursts[label][1:] = [sent, open_bursts[label][2] + 1]
        else:
            open_bursts[label] = [sent, sent, 1]
    for label in list(open_bursts):
        close(label)
    if not rows:
        return ""
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return "\n".join(f"{clock(t)} +{t - t0:7.1f} s  {text}" for t, text in rows)


def clock(t: float) -> str:
    """UTC wall clock to the tenth of a second: 05:41:07.3."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 10) % 10}"


ERRORS = {
    "Client.Timeout": "timeout",
    "i/o timeout": "timeout",
    "connection refused": "connection refused",
    "no route to host": "no route to host",
    "no such host": "no such host",
    "server misbehaving": "DNS server misbehaving",
    "connection reset": "connection reset",
}


def short_error(error: str) -> str:
    """A prober's error in a few words (Go's errors name the whole request first)."""
    for needle, short in ERRORS.items():
        if needle in error:
            return short
    return error[-60:]


def short_node(name: str) -> str:
    return name.removeprefix("cni-migrate-e2e-")


# The kinds a window report counts from the probers on nodes not being swapped.
OTHERS = ("service", "service-ip", "peer")


def control_report(
    failures: Sequence[dict[str, Any]],
    audit: Iterable[dict[str, Any]],
    control: Sequence[dict[str, Any]],
    control_seconds: float,
) -> tuple[list[str], dict[str, tuple[int, float]]]:
    """The apply's failed requests beside a control window's (the same probers, no
    migration step, ``control_seconds`` long): per finished step, the failures from probers
    on other nodes by kind (web by name, at its ClusterIP, to peers) beside what the control
    window's rate predicts for a step that long from those nodes, and the swapped node's own
    (its prober's failures, and its longest run of them). Returns the report's lines and,
    per kind, (the apply's failures from other nodes over all steps, the control's expected
    count for the same time): the goal is the first no larger than the second."""
    rates: dict[tuple[str, str], float] = {}  # (from node, kind) -> failures a second
    for f in control:
        key = (f.get("from_node", ""), target_kind(f.get("target", "")))
        rates[key] = rates.get(key, 0.0) + 1 / max(control_seconds, 1.0)
    nodes = {n for n, _ in rates}
    windows = step_windows(audit)
    nodes |= {f.get("from_node", "") for f in failures} | {n for n, _, _, _ in windows}
    lines = [
        f"{'node':<14} {'step':<12} {'secs':>5}  "
        + "  ".join(f"{k + ' apply/control':>22}" for k in OTHERS)
        + "  own failures, longest run"
    ]
    totals = {k: (0, 0.0) for k in OTHERS}
    for node, step, start, end in windows:
        inside = [f for f in failures if start <= parse_time(f["ts"]) <= end]
        cells = []
        for kind in OTHERS:
            seen = sum(1 for f in inside if f.get("from_node") != node and target_kind(f.get("target", "")) == kind)
            expected = sum(rates.get((other, kind), 0.0) for other in nodes if other != node) * (end - start)
            cells.append(f"{seen:>10} / {expected:>9.1f}")
            totals[kind] = (totals[kind][0] + seen, totals[kind][1] + expected)
        own = [parse_time(f["ts"]) for f in inside if f.get("from_node") == node]
        lines.append(
            f"{short_node(node):<14} {step:<12} {end - start:>5.0f}  "
            + "  ".join(f"{c:>22}" for c in cells)
            + f"  {len(own)}, {longest_run(own):.1f} s"
        )
    lines.append(
        "all steps: "
        + ", ".join(f"{k} {seen} failed (control {expected:.1f})" for k, (seen, expected) in totals.items())
    )
    return lines, totals


def longest_run(sent: Sequence[float], gap: float = 1.5) -> float:
    """The longest span of failures each within ``gap`` seconds of the last (send times)."""
    best = 0.0
    first = last = None
    for t in sorted(sent):
        if last is None or t - last > gap:
            first = t
        last = t
        best = max(best, last - first)  # type: ignore[operator]
    return best
