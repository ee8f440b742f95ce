"""cni-migrate as the suite runs it: the CLI of this checkout in a subprocess, with its
own state home, and the audit logs its runs leave there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .commands import REPO


def cni_migrate(*args: str, timeout: float = 300, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI from this checkout (python -m migrate.cli with the repo on PYTHONPATH);
    ``home``: its state home (CNI_MIGRATE_HOME: journals, locks, audit logs)."""
    return subprocess.run(
        [sys.executable, "-m", "migrate.cli", *args],
        env=cli_env(home),
        text=True,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
    )


def cni_migrate_popen(*args: str, home: Path | None = None, log: Path) -> subprocess.Popen[str]:
    """The CLI in the background (for a test that kills it), its output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "migrate.cli", *args],
            env=cli_env(home),
            text=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def cli_env(home: Path | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        env["CNI_MIGRATE_HOME"] = str(home)
    return env


def audit(home: Path) -> list[dict[str, Any]]:
    """Every run's audit log under a state home, oldest run first."""
    lines: list[dict[str, Any]] = []
    for path in sorted((home / "runs").glob("*/audit.jsonl"), key=lambda p: p.stat().st_mtime):
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # the line being written as we read
                continue
    return lines
