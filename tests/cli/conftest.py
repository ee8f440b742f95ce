"""Drive the installed CLI as a user would: a subprocess with its own state home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrate.backends.simulated import SimStore


@dataclass
class Result:
    code: int
    out: str
    err: str


class CLI:
    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp
        self.env = {**os.environ, "CNI_MIGRATE_HOME": str(tmp / "home"), "NO_COLOR": "1", "COLUMNS": "200"}
        self.env.pop("CNI_MIGRATE_FAILPOINT", None)
        exe = shutil.which("cni-migrate", path=str(Path(sys.executable).parent))
        self.base = [exe] if exe else [sys.executable, "-m", "migrate.cli"]

    def __call__(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
        proc = subprocess.run(
            [*self.base, *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def run_exe(self, exe: str, *args: str, path: str | None = None) -> Result:
        """Another executable (the kubectl plugin script, kubectl) in this CLI's state home;
        ``path`` goes in front of ``$PATH``."""
        env = {**self.env, **({"PATH": f"{path}{os.pathsep}{self.env.get('PATH', '')}"} if path else {})}
        proc = subprocess.run([exe, *args], cwd=self.cwd, env=env, capture_output=True, text=True, timeout=120)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
        """Start the CLI in the background (for signals, kills and disks filling under it)."""
        return subprocess.Popen(
            [*self.base, *args], cwd=self.cwd, env=self.env, stdout=stdout, stderr=subprocess.PIPE, text=True
        )

    def world(self, name: str) -> dict:
        return SimStore(self.cwd / "home").open(name).world()

    def edit_world(self, name: str, change: Callable[[dict], object]) -> None:
        """What an operator's edit by hand leaves in the simulated cluster (no controller runs)."""
        cluster = SimStore(self.cwd / "home").open(name)
        world = cluster.world()
        change(world)
        cluster.replace(world)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)
