"""The traffic watch's pure part (window verdicts, report format, manifests) and its prober
script, run for real with ``sh`` and ``curl`` against a local stand-in for the API server
and the probed Service."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from migrate import traffic
from migrate.traffic import Report, TrafficWatch, interruption, verdict


def report(node: str, *buckets: tuple[int, int, int]) -> Report:
    return Report(node, updated=2000, requests=1000, failures=sum(b[1] for b in buckets), buckets=buckets)


def test_failures_outside_the_window_are_not_counted() -> None:
    reports = [report("a", (90, 3, 0), (100, 2, 1), (150, 4, 0)), report("b", (120, 1, 5))]
    seen = interruption(reports, since=100, until=149)
    assert seen.failed == 3
    assert seen.by_prober == {"a": 2, "b": 1}
    assert seen.reporting == ("a", "b")


def test_longest_gap_is_the_longest_run_of_seconds_without_a_success() -> None:
    # 101-104 all failed (4 s), 110 partial, 111-112 failed (2 s) in another prober
    a = report("a", (100, 1, 1), (101, 2, 0), (102, 2, 0), (103, 2, 0), (104, 2, 0), (105, 1, 1))
    b = report("b", (110, 1, 1), (111, 2, 0), (112, 2, 0))
    seen = interruption([a, b], since=0, until=200)
    assert seen.longest_gap == 4
    assert seen.failed == 10 + 5


def test_verdict_names_the_count_the_probers_and_the_gap() -> None:
    seen = interruption([report("w1", (100, 7, 0), (101, 5, 0)), report("w2")], since=99, until=101)
    result = verdict("w1", seen, max_failures=5)
    assert not result.ok
    assert result.check == "traffic-watch"
    assert result.observed == "12 failed probe request(s) seen by 2 prober(s) (from w1: 12), longest interruption 2s"
    assert "at most 5 failed" in result.expected
    assert verdict("w1", seen, max_failures=12).ok


def test_a_node_whose_own_prober_does_not_report_fails() -> None:
    seen = interruption([report("w2")], since=0, until=10, silent=["w1"])
    result = verdict("w1", seen, max_failures=5)
    assert not result.ok and "no fresh report from w1" in result.observed
    missing = verdict("w3", interruption([report("w2")], since=0, until=10), max_failures=5)
    assert not missing.ok  # not even listed: its prober is not running


def test_report_round_trips_through_configmap_data() -> None:
    original = Report("w1", 1700000000, 42, 3, ((1700000000, 2, 1), (1700000001, 1, 0)), "prober-x")
    assert Report.from_data(original.to_data()) == original


def test_traffic_watch_reads_after_the_window_end_and_keeps_what_it_saw() -> None:
    asked: list[tuple[int, float, str]] = []
    now = datetime(2026, 12, 1, 20, 0, 10, tzinfo=UTC)

    def read(after: int, timeout: float, node: str) -> tuple[list[Report], list[str]]:
        asked.append((after, timeout, node))
        return [report("w1", (traffic.epoch(now) - 5, 1, 3))], []

    watch = TrafficWatch(read=read, now=lambda: now, max_failures=0)
    result = watch.check("w1", since=datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC))
    assert asked == [(traffic.epoch(now), watch.timeout, "w1")]
    assert not result.ok and watch.seen["w1"].failed == 1


def test_manifests_keep_the_probers_in_their_own_namespace_with_a_narrow_role() -> None:
    objects = traffic.manifests("example/agnhost:1")
    assert [o["kind"] for o in objects] == [
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "DaemonSet",
    ]
    assert all(o["metadata"].get("namespace", traffic.NAMESPACE) == traffic.NAMESPACE for o in objects)
    (rule,) = objects[2]["rules"]
    assert rule == {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "patch"]}
    pod = objects[-1]["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]  # cordoned and tainted nodes too
    assert {c["image"] for c in pod["containers"]} == {"example/agnhost:1"}
    # every permission the watch needs is one cni-migrate checks for
    needed = {(v, g, r) for v, g, r, _ in traffic.PERMISSIONS}
    for kind, resource, group in [("Role", "roles", "rbac.authorization.k8s.io"), ("DaemonSet", "daemonsets", "apps")]:
        assert ("create", group, resource) in needed, kind


# -- the prober script, run for real ----------------------------------------------------------
class FakeApi:
    """The API server's ConfigMap endpoints (merge patch, create) and the probed Service's
    /hostname, on one port; ``failing`` makes /hostname answer 503."""

    def __init__(self) -> None:
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.failing = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _answer(self, code: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/hostname":
                    self._answer(503 if api.failing else 200, {})
                else:
                    self._answer(404)

            def do_PATCH(self) -> None:
                api.requests.append(("PATCH", self.path, self.headers.get("Authorization", "")))
                name = self.path.rsplit("/", 1)[1]
                body = self._body()
                if name not in api.configmaps:
                    self._answer(404)
                    return
                api.configmaps[name]["data"].update(body["data"])
                self._answer(200, api.configmaps[name])

            def do_POST(self) -> None:
                api.requests.append(("POST", self.path, self.headers.get("Authorization", "")))
                body = self._body()
                api.configmaps[body["metadata"]["name"]] = body
                self._answer(201, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    yield api
    api.server.shutdown()


def wait_until(what: str, condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("sh") is None, reason="needs sh and curl")
def test_prober_script_counts_failed_seconds_and_reports_them(fake_api: FakeApi, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret-token")
    env = {
        "PATH": "/usr/bin:/bin",
        "API": f"http://127.0.0.1:{fake_api.port}",
        "TOKEN": str(token),
        "CACERT": str(tmp_path / "ca.crt"),
        "NODE_NAME": "worker-1",
        "POD_NAME": "prober-abc",
        "NAMESPACE": traffic.NAMESPACE,
        "TARGET": f"127.0.0.1:{fake_api.port}",
        "INTERVAL": "0.1",
        "TIMEOUT": "1",
        "REPORT_EVERY": "1",
        "KEEP": "3",
        "REPORT_LABEL": traffic.REPORT_LABEL,
    }
    prober = subprocess.Popen(["sh", "-c", traffic.PROBER_SCRIPT], env=env)
    try:
        # first report: created (the PATCH found nothing), labelled, with the token
        wait_until("the first report", lambda: "traffic-worker-1" in fake_api.configmaps)
        created = fake_api.configmaps["traffic-worker-1"]
        assert created["metadata"]["labels"] == {traffic.REPORT_LABEL: "true"}
        assert [r[0] for r in fake_api.requests[:2]] == ["PATCH", "POST"]
        assert all(r[2] == "Bearer secret-token" for r in fake_api.requests)
        # then the Service fails for a while: those seconds appear in the buckets
        fake_api.failing = True
        failed_from = int(time.time())
        wait_until(
            "failures reported",
            lambda: int(fake_api.configmaps["traffic-worker-1"]["data"]["failures"]) >= 10,
        )
        fake_api.failing = False
        failed_to = int(time.time())
        wait_until(
            "a success after the failures",
            lambda: (
                Report.from_data(fake_api.configmaps["traffic-worker-1"]["data"]).requests
                > int(fake_api.configmaps["traffic-worker-1"]["data"]["failures"]) + 15
            ),
        )
    finally:
        prober.kill()
        prober.wait()
    got = Report.from_data(fake_api.configmaps["traffic-worker-1"]["data"])
    assert got.node == "worker-1" and got.pod == "prober-abc"
    assert got.failures >= 10 and got.requests > got.failures
    assert 1 <= len(got.buckets) <= 3  # KEEP=3: only the newest failed seconds are kept
    assert all(failed_from - 1 <= t <= failed_to + 1 for t, _, _ in got.buckets)
    seen = interruption([got], since=failed_from - 1, until=failed_to + 1)
    assert seen.failed == sum(f for _, f, _ in got.buckets)
    assert seen.longest_gap >= 1


def test_a_window_ends_when_the_evidence_is_in_not_when_it_was_asked_for() -> None:
    """The node's own prober, restarted by its swap, may write its first failures only
    during the wait for fresh reports: they belong to this node's window."""
    clock = [datetime(2026, 12, 1, 20, 0, 10, tzinfo=UTC)]

    def read(after: int, timeout: float, node: str) -> tuple[list[Report], list[str]]:
        clock[0] += timedelta(seconds=3)  # the wait for every prober's next report
        return [report(node, (after + 2, 4, 0))], []

    watch = TrafficWatch(read=read, now=lambda: clock[0], max_failures=1)
    result = watch.check("w2", since=datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC))
    assert not result.ok and watch.seen["w2"].failed == 4
