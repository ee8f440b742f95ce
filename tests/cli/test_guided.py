"""Guided mode through a pseudo-terminal: answers typed at the prompts, pause, resume."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import yaml


def run_in_pty(cli, args, answers):
    """Run the CLI on a pty; each time the prompt appears, type the next answer."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*cli.base, *args], cwd=cli.cwd, env=cli.env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break  # the child closed the terminal
            if not chunk:
                break
            screen += chunk
            if screen.count(b"[c]ontinue") > len(answers) - len(pending) and pending:
                os.write(master, pending.pop(0).encode() + b"\n")
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, screen.decode(errors="replace")


def test_guided_run_continues_the_canary_pauses_before_wave_two_and_resumes(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--max-unavailable", "2", "-o", "p.yaml")
    code, screen = run_in_pty(cli, ["apply", "p.yaml", "--guided"], ["c", "p"])
    assert code == 5, screen
    waves = yaml.safe_load((cli.cwd / "p.yaml").read_text())["waves"]
    second = ", ".join(n["name"] for n in waves[1]["nodes"])
    assert "next: wave 1 (canary): worker-1" in screen and f"next: wave 2: {second}" in screen
    assert "paused before wave 2" in screen
    nodes = {n["name"]: n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}
    assert nodes == {"worker-1": "migrated", "worker-2": "pending", "worker-3": "pending", "cp-1": "pending"}
    code, screen = run_in_pty(cli, ["resume", "p.yaml", "--guided"], ["c"] * (len(waves) - 1))
    assert code == 0, screen
    nodes = {n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}
    assert nodes == {"migrated"}
