"""Hooks: discovery, what a hook receives, timeouts, failures, and no shell anywhere."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from migrate.errors import BadInput
from migrate.hooks import (
    HookPoint,
    HookResult,
    HookRunner,
    failed,
    validate_hooks_dir,
)
from migrate.ports import HookContext

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "hooks" / "examples"


def hook(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


# -- discovery -----------------------------------------------------------------------------
def test_hooks_of_a_point_run_in_name_order(tmp_path):
    for name in ("post-swap.20-dns", "post-swap", "post-swap.10-ingress", "pre-run.sh", "post-node.x"):
        hook(tmp_path, name, "exit 0\n")
    hooks = validate_hooks_dir(tmp_path)
    assert [p.name for p in hooks[HookPoint.POST_SWAP]] == ["post-swap", "post-swap.10-ingress", "post-swap.20-dns"]
    assert [p.name for p in hooks[HookPoint.PRE_RUN]] == ["pre-run.sh"]
    assert [p.name for p in hooks[HookPoint.POST_NODE]] == ["post-node.x"]
    assert hooks[HookPoint.ON_FAILURE] == ()


def test_readme_dotfiles_and_subfolders_are_ignored(tmp_path):
    (tmp_path / "README.md").write_text("docs")
    (tmp_path / ".post-swap.swp").write_text("editor junk")
    (tmp_path / "examples").mkdir()
    hook(tmp_path / "examples", "post-swap.check", "exit 1\n")
    assert all(paths == () for paths in validate_hooks_dir(tmp_path).values())


def test_the_shipped_hooks_folder_runs_nothing():
    assert all(paths == () for paths in validate_hooks_dir(ROOT / "hooks").values())


def test_a_non_executable_hook_is_bad_input(tmp_path):
    hook(tmp_path, "post-swap.check", "exit 0\n", mode=0o644)
    with pytest.raises(BadInput, match=r"hook .*post-swap.check is not executable \(chmod \+x"):
        validate_hooks_dir(tmp_path)


def test_a_file_that_names_no_point_is_bad_input(tmp_path):
    hook(tmp_path, "post_swap", "exit 0\n")
    with pytest.raises(BadInput, match="is not a hook: hook files are named <point> or <point>.<name>"):
        validate_hooks_dir(tmp_path)


def test_a_folder_named_like_a_point_is_bad_input(tmp_path):
    (tmp_path / "post-swap.d").mkdir()
    with pytest.raises(BadInput, match="is a directory"):
        validate_hooks_dir(tmp_path)


def test_a_missing_directory_has_no_hooks_unless_required(tmp_path):
    assert all(paths == () for paths in validate_hooks_dir(tmp_path / "none").values())
    with pytest.raises(BadInput, match="does not exist"):
        validate_hooks_dir(tmp_path / "none", must_exist=True)


def test_the_runner_validates_on_creation(tmp_path):
    hook(tmp_path, "pre-run", "exit 0\n", mode=0o600)
    with pytest.raises(BadInput, match="not executable"):
        HookRunner(tmp_path)


# -- running -------------------------------------------------------------------------------
DUMP = """\
cat > "$(dirname "$0")/stdin.json"
env > "$(dirname "$0")/env.txt"
"""


def env_of(directory: Path) -> dict[str, str]:
    lines = (directory / "env.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_a_hook_gets_its_env_vars_and_the_context_on_stdin(tmp_path):
    hook(tmp_path, "post-swap", DUMP)
    context = {"plan_id": "abc123", "node": "worker-1", "wave": 2, "step": "worker-1/swap-cni", "extra": [1, 2]}
    results = HookRunner(tmp_path, env_base={"PATH": os.environ["PATH"], "MINE": "kept"}).run("post-swap", context)
    assert [r.ok for r in results] == [True]
    assert json.loads((tmp_path / "stdin.json").read_text()) == context
    env = env_of(tmp_path)
    assert env["CNI_MIGRATE_HOOK"] == "post-swap"
    assert env["CNI_MIGRATE_PLAN_ID"] == "abc123"
    assert env["CNI_MIGRATE_NODE"] == "worker-1"
    assert env["CNI_MIGRATE_WAVE"] == "2"
    assert env["CNI_MIGRATE_STEP"] == "worker-1/swap-cni"
    assert env["MINE"] == "kept"


def test_variables_that_do_not_apply_are_empty(tmp_path):
    hook(tmp_path, "pre-run", DUMP)
    HookRunner(tmp_path).run(HookPoint.PRE_RUN, {"plan_id": "abc123"})
    env = env_of(tmp_path)
    assert env["CNI_MIGRATE_NODE"] == env["CNI_MIGRATE_WAVE"] == env["CNI_MIGRATE_STEP"] == ""


def test_a_run_point_context_has_every_key_with_no_node_and_no_wave():
    record = HookContext("pre-run", "abc123").to_record()
    assert record == {
        "hook": "pre-run",
        "plan_id": "abc123",
        "node": "",
        "wave": None,
        "step": "",
        "phase": "apply",
        "outcome": "",
        "message": "",
    }
    assert HookContext("pre-node", "p", node="n", wave=3, step="n/cordon").to_record()["wave"] == 3


@pytest.mark.parametrize(
    "node", ["n1; touch {marker}", "$(touch {marker})", "`touch {marker}`", "n1 && touch {marker}"]
)
def test_node_names_are_never_run_as_commands(tmp_path, node):
    hooks_dir = tmp_path / "hooks"
    hooks_dir.mkdir()
    marker = tmp_path / "pwned"
    hook(hooks_dir, "pre-node", DUMP)
    hook(hooks_dir, "pre-node.echo", 'echo "node=$CNI_MIGRATE_NODE"\n')
    name = node.format(marker=marker)
    results = HookRunner(hooks_dir).run("pre-node", {"plan_id": "p", "node": name, "step": name, "wave": name})
    assert [r.ok for r in results] == [True, True]
    assert not marker.exists()
    assert env_of(hooks_dir)["CNI_MIGRATE_NODE"] == name
    assert results[1].output == f"node={name}\n"


def test_argv_is_only_the_hook_path(tmp_path):
    hook(tmp_path, "post-run", 'echo "$#:$0"\n')
    [result] = HookRunner(tmp_path).run("post-run", {"node": "x y"})
    assert result.output == f"0:{tmp_path / 'post-run'}\n"


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path):
    hook(tmp_path, "post-swap", 'sleep 30 &\necho $! > "$(dirname "$0")/child.pid"\nsleep 30\n')
    started = time.monotonic()
    [result] = HookRunner(tmp_path, timeout_seconds=1).run("post-swap", {})
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok
    assert failed([result]) == [result]
    assert "timed out" in result.summary
    child = Path(f"/proc/{(tmp_path / 'child.pid').read_text().strip()}/stat")
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def alive(stat_file: Path) -> bool:
    """Running, and not a zombie waiting for a parent (e.g. PID 1 in a container) to reap it."""
    try:
        return stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False  # gone


def test_a_non_zero_exit_is_reported_and_later_hooks_still_run(tmp_path):
    hook(tmp_path, "on-failure.1", "echo 'webhook down' >&2\nexit 3\n")
    hook(tmp_path, "on-failure.2", "echo fine\n")
    results = HookRunner(tmp_path).run("on-failure", {})
    assert [(r.path.name, r.exit_code, r.timed_out) for r in results] == [
        ("on-failure.1", 3, False),
        ("on-failure.2", 0, False),
    ]
    assert failed(results) == [results[0]]
    assert results[0].summary == "on-failure hook on-failure.1 failed (exit 3): webhook down"
    assert results[1].output == "fine\n"


def test_a_hook_that_ignores_stdin_still_runs(tmp_path):
    hook(tmp_path, "post-run", "exit 0\n")
    [result] = HookRunner(tmp_path).run("post-run", {"blob": "x" * 1_000_000})
    assert result.ok


def test_output_is_truncated_to_its_tail(tmp_path):
    hook(tmp_path, "post-run", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done\necho last\n")
    [result] = HookRunner(tmp_path).run("post-run", {})
    assert len(result.output) < 5000
    assert result.output.startswith("[... ") and result.output.endswith("last\n")


def test_a_hook_removed_after_discovery_is_a_failed_result(tmp_path):
    path = hook(tmp_path, "post-run", "exit 0\n")
    runner = HookRunner(tmp_path)
    path.unlink()
    [result] = runner.run("post-run", {})
    assert result.exit_code == 127 and "cannot run" in result.output


def test_failed_keeps_only_failures():
    ok = HookResult(Path("a"), "post-run", 0, 0.1, "")
    bad = HookResult(Path("b"), "post-run", 1, 0.1, "")
    slow = HookResult(Path("c"), "post-run", -15, 1.0, "", timed_out=True)
    assert failed([ok, bad, slow]) == [bad, slow]


# -- the shipped examples --------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        type(self).received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.received = []
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def run_example(name: str, env: dict[str, str], stdin: str = "{}") -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "CNI_MIGRATE_NODE": "worker-1", "CNI_MIGRATE_STEP": "worker-1/swap-cni"}
    return subprocess.run(
        [str(EXAMPLES / name)], input=stdin, env={**base, **env}, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "name, point", [("post-swap.check-ingress", HookPoint.POST_SWAP), ("on-failure.webhook", HookPoint.ON_FAILURE)]
)
def test_examples_are_executable_and_named_for_their_point(name, point):
    path = EXAMPLES / name
    assert path.stat().st_mode & stat.S_IXUSR
    assert path.read_text().startswith("#!/usr/bin/env python3\n")
    assert validate_hooks_dir(EXAMPLES)[point] == (path,)  # copied into hooks/ as is, it runs


def test_check_ingress_passes_on_2xx_and_fails_otherwise(server):
    assert run_example("post-swap.check-ingress", {"INGRESS_URL": f"{server}/ok"}).returncode == 0
    down = run_example("post-swap.check-ingress", {"INGRESS_URL": f"{server}/down"})
    assert down.returncode == 1 and "after worker-1/swap-cni" in down.stderr and "503" in down.stderr
    assert run_example("post-swap.check-ingress", {}).returncode == 2
    assert run_example("post-swap.check-ingress", {"INGRESS_URL": "file:///etc/passwd"}).returncode == 2


def test_webhook_posts_the_context_or_does_nothing_without_url(server):
    assert run_example("on-failure.webhook", {}).returncode == 0
    failure = HookContext("on-failure", "p", node="worker-1", wave=1, step="worker-1/validate", phase="rollback")
    context = json.dumps(replace(failure, outcome="failed", message="validation of worker-1 failed").to_record())
    assert run_example("on-failure.webhook", {"WEBHOOK_URL": f"{server}/hook"}, stdin=context).returncode == 0
    assert [json.loads(b) for b in _Handler.received] == [json.loads(context)]
