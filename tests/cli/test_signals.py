"""Ctrl-C at random moments of a simulated run: always resumable, same end state.

The apply subprocess runs on a simulated cluster with API latency, so a run takes a few
seconds; a seeded schedule sends SIGINT at a random moment (and, in some runs, a second
SIGINT a moment later, which stops at once, mid-step). Whatever was hit, the run exits 5
(or 0 if it had already finished), the journal is resumable, and after ``resume`` the
cluster is exactly as after an uninterrupted run, with no eviction or cordon repeated.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import CLI
from tests.cli.test_crash import end_state, same_effects_in_any_order

SIM = ("sim", "create", "c1", "--nodes", "6", "--seed", "3", "--latency", "0.02")
PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--max-unavailable", "2", "--out", "p.yaml")
RUNS = 10


def copy(template, tmp_path_factory, label: str) -> CLI:
    directory = tmp_path_factory.mktemp(label)
    shutil.copytree(template, directory, dirs_exist_ok=True)
    return CLI(directory)


def reference_run(tmp_path_factory, sim: tuple[str, ...], plan: tuple[str, ...]) -> tuple[CLI, dict, float]:
    """A simulated cluster and its plan to copy for each run, and an uninterrupted run of it:
    (template, its end world, its wall time)."""
    template = CLI(tmp_path_factory.mktemp("template"))
    assert template(*sim).code == 0 and template(*plan).code == 0
    reference = copy(template.cwd, tmp_path_factory, "reference")
    started = time.monotonic()
    assert reference("apply", "p.yaml", "--yes").code == 0
    return template, reference.world("c1"), time.monotonic() - started


@pytest.mark.slow
def test_sigint_at_random_moments_always_resumes_to_the_uninterrupted_end_state(tmp_path_factory):
    template, ref, whole = reference_run(tmp_path_factory, SIM, PLAN)

    rng = random.Random(20261123)
    outcomes = {"interrupted": 0, "stopped at once": 0, "finished first": 0}
    for run in range(RUNS):
        cli = copy(template.cwd, tmp_path_factory, f"run-{run}")
        at = rng.uniform(0.2, whole)
        twice = rng.random() < 0.4
        proc = cli.popen("apply", "p.yaml", "--yes")
        # A moment of the run, not of the interpreter's start: on a loaded machine importing
        # the CLI can take longer than the earliest moment drawn, and a SIGINT then is
        # Python's, before cni-migrate has done anything. The first line is the first wave.
        started = time.monotonic()
        assert proc.stdout is not None
        first = proc.stdout.readline()
        time.sleep(max(0.0, at - (time.monotonic() - started)) if first else 0.0)
        proc.send_signal(signal.SIGINT)
        if twice:
            time.sleep(rng.uniform(0.0, 0.05))
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        out = first + out
        assert "Traceback" not in err, (run, err)
        if proc.returncode == 0:
            outcomes["finished first"] += 1
        else:
            assert proc.returncode == 5, (run, at, twice, proc.returncode, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "resume" in lines[0], (run, err)
            outcomes["stopped at once" if "interrupted;" in lines[0] else "interrupted"] += 1
            resumed = cli("resume", "p.yaml", "--yes")
            assert resumed.code == 0, (run, at, twice, resumed.err)
        world = cli.world("c1")
        assert end_state(world) == end_state(ref), (run, at, twice)
        same_effects_in_any_order(world, ref)
    assert outcomes["interrupted"] + outcomes["stopped at once"] >= RUNS // 2, outcomes
    print(f"\n{RUNS} runs of {whole:.1f}s each, SIGINT at random moments: {outcomes}")


AFTER_THE_RUN = """
import os, signal
from migrate import cli
from migrate.ports import StopFlag

cli.PROCESS["own"] = {own}
with cli.stop_on_signals(StopFlag()):
    pass  # a run that ended without being asked to stop
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C on the way out, e.g. as the interpreter shuts down
print("exited cleanly")
"""


@pytest.mark.parametrize("own", [True, False])
def test_ctrl_c_after_a_finished_run_cannot_change_its_exit_in_cni_migrates_own_process(own):
    """In the CLI's own process a Ctrl-C after the run ended is ignored, so it cannot turn exit
    0 into death by SIGINT while the interpreter shuts down (the default handler is back by
    then); in a caller's process (a test, an embedding program) its own handler is put back."""
    proc = subprocess.run(
        [sys.executable, "-c", AFTER_THE_RUN.format(own=own)], capture_output=True, text=True, timeout=60
    )
    if own:
        assert (proc.returncode, proc.stdout.strip()) == (0, "exited cleanly"), proc.stderr
    else:
        assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, (proc.returncode, proc.stderr)


def _stopped_run(tmp_path_factory, label: str, stop) -> tuple[CLI, subprocess.Popen[str], str]:
    """A simulated apply stopped by ``stop(proc)`` once its first line is out."""
    cli = CLI(tmp_path_factory.mktemp(label))
    assert cli(*SIM).code == 0 and cli(*PLAN).code == 0
    proc = cli.popen("apply", "p.yaml", "--yes", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("wave 1")
    stop(proc)
    _, err = proc.communicate(timeout=120)
    return cli, proc, err


def test_sighup_stops_the_run_like_ctrl_c(tmp_path_factory):
    """The operator's SSH session drops: the run finishes its step, checkpoints, exits 5."""
    cli, proc, err = _stopped_run(tmp_path_factory, "hup", lambda p: p.send_signal(signal.SIGHUP))
    assert proc.returncode == 5, err
    assert err.strip().splitlines() == ["error: stopped: received SIGHUP; continue with 'cni-migrate resume'"]
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert {n["cni"] for n in json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]} == {"cilium"}


def test_a_closed_standard_output_stops_the_run_like_ctrl_c(tmp_path_factory):
    """``apply ... | head -3``: the reader leaves, the run stops at the step's end, resumable."""
    cli, proc, err = _stopped_run(tmp_path_factory, "pipe", lambda p: p.stdout.close())
    assert proc.returncode == 5, err
    assert err.strip().splitlines() == [
        "error: stopped: the standard output was closed; continue with 'cni-migrate resume'"
    ]
    assert json.loads(cli("status", "p.yaml", "-o", "json").out)["run"] == "interrupted"
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert {n["cni"] for n in json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]} == {"cilium"}
