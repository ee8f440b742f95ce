"""The reboot node task's script, run by a shell as a node's helper pod would run it: the
host's files under a directory, its commands (systemctl, systemd-run, shutdown, sync,
sleep) stubs that note what they were asked, and ``env`` standing in for entering PID 1's
namespaces. The orderly reboot never happens here, which is exactly the case the fallback
is for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from migrate.backends.kubernetes import hostreboot
from tests.labsupport import wait_for

STUBS = {
    "systemctl": 'echo "systemctl $*" >> "$LOG"',
    "shutdown": 'echo "shutdown $*" >> "$LOG"',
    "sync": 'echo sync >> "$LOG"',
    # What sysrq was last asked when each pause starts: the order of s, u and b.
    "sleep": 'echo "sleep $1 sysrq=$(cat "$ROOT/proc/sysrq-trigger" 2>/dev/null)" >> "$LOG"',
    # A transient unit: noted; with RUN_FALLBACK its command runs (the reboot hung).
    "systemd-run": 'echo "systemd-run $*" >> "$LOG"\n'
    'if [ -n "${RUN_FALLBACK:-}" ]; then for a; do last=$a; done; sh -c "$last"; fi',
}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    for directory in ("dev", "proc", "stubs"):
        (root / directory).mkdir(parents=True)
    for name, body in STUBS.items():
        stub = root / "stubs" / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    return root


def run(host: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PATH": f"{host / 'stubs'}:{os.environ['PATH']}",
        "LOG": str(host / "asked"),
        "ROOT": str(host),
        **env,
    }
    return subprocess.run(["sh", "-c", script], env=environ, capture_output=True, text=True, timeout=60)


def asked(host: Path) -> list[str]:
    path = host / "asked"
    return path.read_text().splitlines() if path.exists() else []


def read(host: Path, path: str) -> str:
    return (host / path.lstrip("/")).read_text().strip()


def with_systemd(host: Path) -> Path:
    (host / "run" / "systemd" / "system").mkdir(parents=True)
    return host


def test_the_reboot_asks_systemd_through_pid_1_with_a_fallback_the_shutdown_does_not_stop(host):
    done = run(with_systemd(host), hostreboot.reboot_script(30, root=str(host), enter="env"))

    assert done.returncode == 0, done.stderr
    said = asked(host)
    assert said[-1] == "systemctl reboot"  # the init's reboot, asked last
    armed = [line for line in said if line.startswith("systemd-run")]
    assert len(armed) == 1
    assert "--unit=cni-migrate-reboot-fallback -p DefaultDependencies=no sh -c sleep 30;" in armed[0]
    assert read(host, hostreboot.RECORD) == "orderly: systemctl reboot"
    assert read(host, "/dev/termination-log") == (
        "orderly: systemctl reboot; fallback: sysrq (s, u, b) if the node is still up after 30s"
    )
    assert not (host / "proc" / "sysrq-trigger").exists()  # armed, not fired


def test_a_reboot_that_does_not_take_the_node_down_is_synced_remounted_and_reset_through_sysrq(host):
    done = run(with_systemd(host), hostreboot.reboot_script(30, root=str(host), enter="env"), RUN_FALLBACK="1")

    assert done.returncode == 0, done.stderr
    fallback = [line for line in asked(host) if not line.startswith(("systemd-run", "systemctl"))]
    # The orderly reboot's own sync, then: the grace, a sync, s, a pause, u, a pause, b.
    assert fallback == ["sync", "sleep 30 sysrq=", "sync", "sleep 5 sysrq=s", "sleep 2 sysrq=u"]
    assert read(host, "/proc/sysrq-trigger") == "b"
    assert read(host, hostreboot.RECORD) == (
        "forced: sysrq (sync, remount read-only, reset) after systemctl reboot did not reboot within 30s"
    )


def test_without_systemd_the_host_shuts_down_and_its_fallback_runs_detached(host):
    done = run(host, hostreboot.reboot_script(15, root=str(host), enter="env"))

    assert done.returncode == 0, done.stderr
    assert "shutdown -r now" in asked(host)
    assert not [line for line in asked(host) if line.startswith("systemd-run")]
    forced = "forced: sysrq (sync, remount read-only, reset) after shutdown -r now did not reboot within 15s"
    wait_for(
        "the detached fallback",
        lambda: (host / "proc" / "sysrq-trigger").exists() and read(host, "/proc/sysrq-trigger") == "b",
        timeout=30,
    )
    assert read(host, hostreboot.RECORD) == forced


def test_a_host_whose_init_is_out_of_reach_is_not_rebooted_at_all(host):
    done = run(with_systemd(host), hostreboot.reboot_script(30, root=str(host), enter="false"))

    assert done.returncode == 1
    assert read(host, "/dev/termination-log").startswith(f"{hostreboot.REFUSED}: cannot ask the host's init")
    assert asked(host) == []
    assert not (host / "proc" / "sysrq-trigger").exists()


def test_the_record_task_says_which_way_the_last_reboot_went(host):
    run(host, hostreboot.record_script(root=str(host), enter="env"))
    assert read(host, "/dev/termination-log") == "unknown"

    run(with_systemd(host), hostreboot.reboot_script(30, root=str(host), enter="env"))
    run(host, hostreboot.record_script(root=str(host), enter="env"))
    assert read(host, "/dev/termination-log") == "orderly: systemctl reboot"


@pytest.mark.parametrize(("timeout", "grace"), [(300, 120), (120, 60), (8, 10)])
def test_the_orderly_reboot_has_at_most_half_the_task_timeout(timeout, grace):
    assert hostreboot.grace_for(timeout) == grace


def test_on_a_node_the_script_enters_pid_1_and_keeps_sysrq_for_the_fallback():
    """The script as the Kubernetes backend runs it (its pod, as the API server stores it,
    is checked on the real control plane: tests/scenario/test_migration.py)."""
    script = hostreboot.reboot_script(hostreboot.grace_for(300))
    assert script.startswith("how=$(nsenter -t 1 -m -u -i -n -p -- sh -c ")
    assert script.splitlines()[-1] == "exec nsenter -t 1 -m -u -i -n -p -- $how"
    assert "/proc/sysrq-trigger" not in script.split("FALLBACK=")[0]  # sysrq only in the fallback
