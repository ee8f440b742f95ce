"""The local journal's directory read-only or full: a clear error and no cluster write
before the run starts; a clean, resumable stop when it fills mid-run.

These mount a small tmpfs over the state home's ``runs/`` directory (root only; skipped
elsewhere), so the failures are the kernel's own EROFS and ENOSPC, not mocks.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import CLI
from tests.cli.test_crash import effects, end_state

SIM = ("sim", "create", "c1", "--nodes", "4", "--seed", "3", "--latency", "0.02")
PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")


class Tmpfs:
    def __init__(self, where: Path) -> None:
        self.where = where

    def mount(self, *options: str) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        opts = ",".join(("size=1m", *options))
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(self.where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def fill(self) -> None:
        subprocess.run(["dd", "if=/dev/zero", f"of={self.where / 'fill'}", "bs=64k"], capture_output=True)

    def unfill(self) -> None:
        (self.where / "fill").unlink(missing_ok=True)

    def umount(self) -> None:
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


@pytest.fixture
def runs(cli: CLI) -> Iterator[Tmpfs]:
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    assert cli(*SIM).code == 0 and cli(*PLAN).code == 0
    fs = Tmpfs(cli.cwd / "home" / "runs")
    try:
        yield fs
    finally:
        fs.umount()


def one_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


def test_a_read_only_state_directory_is_refused_before_any_cluster_write(cli, runs):
    runs.mount("ro")
    before = cli.world("c1")["actions"]
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2, r
    assert "Read-only file system" in one_line(r) and "nothing was changed" in r.err
    assert cli.world("c1")["actions"] == before


def test_a_full_state_directory_is_refused_before_any_cluster_write(cli, runs):
    runs.mount()
    runs.fill()
    before = cli.world("c1")["actions"]
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2, r
    assert "No space left on device" in one_line(r)
    assert cli.world("c1")["actions"] == before


def test_a_state_directory_filling_mid_run_stops_it_resumably(cli, runs, tmp_path_factory):
    reference = CLI(tmp_path_factory.mktemp("reference"))
    assert reference(*SIM).code == 0 and reference(*PLAN).code == 0
    assert reference("apply", "p.yaml", "--yes").code == 0

    runs.mount()
    proc = cli.popen("apply", "p.yaml", "--yes")
    deadline = time.monotonic() + 30
    while not any((runs.where).glob("*/journal.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few steps in
    runs.fill()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, (proc.returncode, err)
    assert "No space left on device" in err and "resume" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    stopped = cli.world("c1")
    assert stopped["actions"], "the run had started writing before the disk filled"
    runs.unfill()
    resumed = cli("resume", "p.yaml", "--yes")
    assert resumed.code == 0, resumed
    world = cli.world("c1")
    assert end_state(world) == end_state(reference.world("c1"))
    assert effects(world) == effects(reference.world("c1"))
