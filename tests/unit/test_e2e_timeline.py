"""The e2e suite's reading of the probers' logs (e2e/kindlab/): every failed request of
every prober pod, once each, and the timeline that puts them beside the run's steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
import kindlab  # noqa: E402

WEB = "http://web.e2e.svc.cluster.local/"
TIMEOUT = f'Get "{WEB}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'


def failure(
    ts: str, target: str = "http://web.e2e.svc.cluster.local/", error: str = TIMEOUT, **kw: str
) -> dict[str, Any]:
    return {
        "event": "failure",
        "ts": ts,
        "target": target,
        "error": error,
        "from_node": kw.get("node", "cni-migrate-e2e-worker"),
        "from_pod": kw.get("pod", "prober-a"),
    }


def step(ts: str, event: str, name: str, node: str = "cni-migrate-e2e-worker2") -> dict[str, Any]:
    return {"event": event, "step": name, "node": node, "timestamp": ts}


def write_log(path: Path, lines: list[Any]) -> None:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def test_failures_are_read_once_each_from_every_followed_log(tmp_path: Path) -> None:
    first = failure("2026-12-02T05:00:01.100000000Z")
    second = failure("2026-12-02T05:00:00.900000000Z", pod="prober-b", node="cni-migrate-e2e-worker3")
    # A log followed again after its stream ended repeats its start; other lines are not failures.
    write_log(tmp_path / "prober-a.1.log", ["listening on :8080", first])
    write_log(tmp_path / "prober-a.2.log", [first, {"event": "started"}, "{not json"])
    write_log(tmp_path / "prober-b.1.log", [second])
    logs = kindlab.ProberLogs(None, tmp_path)  # type: ignore[arg-type]
    assert logs.failures() == [second, first]  # by send time


def test_a_burst_is_one_line_and_steps_are_interleaved() -> None:
    sends = ((10, 0), (10, 200), (11, 400), (11, 600))
    failures = [failure(f"2026-12-02T05:00:{s:02d}.{ms:03d}Z") for s, ms in sends]
    failures.append(failure("2026-12-02T05:00:20.000Z"))  # more than 1.5 s after the burst: its own line
    failures.append(
        failure("2026-12-02T05:00:10.100Z", target="http://10.245.1.7:8080/", error="connect: no route to host")
    )
    audit = [
        step("2026-12-02T05:00:05Z", "step-started", "swap-cni"),
        step("2026-12-02T05:00:15Z", "step-finished", "swap-cni"),
        {"event": "node-event", "timestamp": "2026-12-02T05:00:16Z"},  # not a step: left out
    ]
    lines = kindlab.failure_timeline(failures, audit).splitlines()
    assert [line.split(" s  ", 1)[1].strip() for line in lines] == [
        "worker2        step-started swap-cni",
        "FAIL worker         -> http://web.e2e.svc.cluster.local/: timeout x4 over 1.6 s",
        "FAIL worker         -> http://10.245.1.7:8080/: no route to host",
        "worker2        step-finished swap-cni",
        "FAIL worker         -> http://web.e2e.svc.cluster.local/: timeout",
    ]
    assert lines[0].startswith("05:00:05.0 +    0.0 s")
    assert lines[-1].startswith("05:00:20.0 +   15.0 s")


@pytest.mark.parametrize(
    "target, kind",
    [
        ("http://web.e2e.svc.cluster.local/", "service"),
        ("svcip:http://web.e2e.svc.cluster.local/", "service-ip"),
        ("http://10.245.0.4:8080/", "peer"),
        ("dns:prober.e2e", "dns"),
        ("http://solo.e2e.svc.cluster.local/", "solo"),
        ("svcip:http://solo.e2e.svc.cluster.local/", "solo-ip"),
    ],
)
def test_failures_are_counted_by_target_kind(target: str, kind: str) -> None:
    counts = kindlab.failure_counts([failure("2026-12-02T05:00:00Z", target=target)] * 2)
    assert counts[kind] == 2 and sum(counts.values()) == 2


def test_peers_no_prober_has_any_more_are_told_apart() -> None:
    def stats(target: str, failures: int) -> kindlab.TargetStats:
        return kindlab.TargetStats(target, kindlab.target_kind(target), 10, failures, 0, "")

    old, new = "http://192.168.4.2:8080/", "http://10.245.1.9:8080/"
    report = kindlab.ProberReport("prober-a", "worker", (stats(WEB, 0), stats(old, 3), stats(new, 0)))
    seen = kindlab.Summary((report,))
    gone = seen.departed({"10.245.1.9"})
    assert gone == [old]
    assert seen.failed() == 3 and seen.failed(exclude_targets=gone) == 0


def test_service_failures_are_counted_per_step_from_the_other_nodes() -> None:
    audit = [
        step("2026-12-02T05:00:00Z", "step-started", "drain"),
        step("2026-12-02T05:00:05Z", "step-started", "drain"),  # resumed after a kill: the first start counts
        step("2026-12-02T05:00:10Z", "step-finished", "drain"),
        step("2026-12-02T05:00:10Z", "step-started", "swap-cni"),
        step("2026-12-02T05:00:30Z", "step-started", "validate"),  # never finished: no window
    ]
    failures = [
        failure("2026-12-02T05:00:02Z"),  # from worker, during worker2's drain
        failure("2026-12-02T05:00:03Z", node="cni-migrate-e2e-worker2"),  # from the draining node itself
        failure("2026-12-02T05:00:04Z", target="http://10.245.1.7:8080/"),  # a peer, not the Service
        failure("2026-12-02T05:00:40Z"),  # after every finished step
    ]
    assert kindlab.step_windows(audit)[0][:2] == ("cni-migrate-e2e-worker2", "drain")
    assert kindlab.failures_by_step(failures, audit) == [("cni-migrate-e2e-worker2", "drain", 1)]


def test_the_apply_is_put_beside_the_control_window() -> None:
    audit = [
        step("2026-12-02T05:00:00Z", "step-started", "drain"),
        step("2026-12-02T05:00:10Z", "step-finished", "drain"),
    ]
    # Control: 100 s of the same probers, 5 failures by name from worker and 1 at the IP from worker3.
    control = [failure(f"2026-12-02T04:50:{i:02d}Z") for i in range(5)]
    control.append(failure("2026-12-02T04:50:30Z", target="svcip:" + WEB, node="cni-migrate-e2e-worker3"))
    failures = [
        failure("2026-12-02T05:00:02Z"),  # by name from worker: 1 against 0.5 expected in 10 s
        failure("2026-12-02T05:00:03Z", node="cni-migrate-e2e-worker2"),  # the drained node's own
        failure("2026-12-02T05:00:04Z", node="cni-migrate-e2e-worker2"),
        failure("2026-12-02T05:00:20Z"),  # outside every step
    ]
    lines, totals = kindlab.control_report(failures, audit, control, control_seconds=100)
    assert totals == {"service": (1, 0.5), "service-ip": (0, 0.1), "peer": (0, 0.0)}
    assert lines[1].split()[:3] == ["worker2", "drain", "10"]
    assert lines[1].endswith("2, 1.0 s")
    assert lines[-1].startswith("all steps: service 1 failed (control 0.5)")


def test_a_run_of_failures_is_measured_from_first_to_last_send() -> None:
    assert kindlab.longest_run([1.0, 2.0, 2.5, 10.0, 10.4]) == 1.5
    assert kindlab.longest_run([]) == 0.0


def test_the_cpu_sampler_reads_this_machine() -> None:
    with kindlab.CpuSampler(interval=0.2, top=10) as cpu:
        for _ in range(10_000):  # this process uses CPU meanwhile
            if len(cpu.samples) >= 2:
                break
            sum(i * i for i in range(100_000))
    assert cpu.samples
    for _, busy, runnable, top in cpu.samples:
        assert 0 <= busy <= 100 and runnable >= 0 and len(top) <= 10
        assert all(used >= 1 for _, used in top)
    assert any(command.startswith(("python", "pytest")) for *_, top in cpu.samples for command, _ in top)
    assert cpu.lines()[0][1].strip().startswith("cpu ")


def test_an_endpoint_is_told_by_address_node_and_state() -> None:
    from kubernetes.client import V1Endpoint, V1EndpointConditions

    def endpoint(ready: bool, terminating: bool) -> V1Endpoint:
        conditions = V1EndpointConditions(ready=ready, serving=ready, terminating=terminating)
        return V1Endpoint(addresses=["10.245.1.5"], node_name="cni-migrate-e2e-worker2", conditions=conditions)

    assert kindlab.describe_endpoint(endpoint(True, False)) == "10.245.1.5@worker2"
    assert kindlab.describe_endpoint(endpoint(False, False)) == "10.245.1.5@worker2 not-ready"
    assert kindlab.describe_endpoint(endpoint(False, True)) == "10.245.1.5@worker2 terminating"


def test_a_broken_path_is_told_from_a_lone_timeout() -> None:
    def stats(target: str, requests: int, failures: int, longest: int) -> kindlab.TargetStats:
        return kindlab.TargetStats(target, kindlab.target_kind(target), requests, failures, longest, "timeout")

    lone, dead, down = "http://10.245.1.9:8080/", "http://10.245.2.9:8080/", "http://10.245.3.9:8080/"
    targets = (stats(WEB, 80, 0, 0), stats(lone, 80, 1, 975), stats(dead, 3, 3, 900), stats(down, 80, 20, 4000))
    seen = kindlab.Summary((kindlab.ProberReport("prober-a", "worker", targets),))
    broken = seen.interrupted(2000)
    assert [line.split(" -> ")[1].split(": ")[0] for line in broken] == [dead, down]
    assert seen.interrupted(2000, exclude_targets=[dead, down]) == []
