"""SIGKILL at seeded random moments of a simulated run, then resume: always the same end
state as an uninterrupted run, and no eviction or cordon done twice.

The crash matrix (test_crash.py) kills at every checkpoint boundary; this kills at random
wall-clock moments instead, so also inside steps and inside checkpoint writes. The default
run does a short form; ``make soak`` (CNI_MIGRATE_SOAK=1) does the 100 runs of issue 9.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from tests.cli.test_crash import end_state, same_effects_in_any_order
from tests.cli.test_signals import copy, reference_run

SIM = ("sim", "create", "c1", "--nodes", "6", "--seed", "3", "--latency", "0.01")
PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--max-unavailable", "2", "--out", "p.yaml")
RUNS = 100 if os.environ.get("CNI_MIGRATE_SOAK") else 12


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path_factory):
    template, ref, whole = reference_run(tmp_path_factory, SIM, PLAN)

    rng = random.Random(9)
    killed = 0
    for run in range(RUNS):
        cli = copy(template.cwd, tmp_path_factory, f"kill-{run}")
        at = rng.uniform(0.3, whole)
        proc = cli.popen("apply", "p.yaml", "--yes", stdout=subprocess.DEVNULL)
        time.sleep(at)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
            resumed = cli("resume", "p.yaml", "--yes")
            if resumed.code == 2 and "no interrupted run" in resumed.err:
                resumed = cli("apply", "p.yaml", "--yes")  # killed before the journal existed
            assert resumed.code == 0, (run, at, resumed.err)
        else:
            assert proc.returncode == 0, (run, at, err)
        world = cli.world("c1")
        assert end_state(world) == end_state(ref), (run, at)
        same_effects_in_any_order(world, ref)
    assert killed >= RUNS * 3 // 4, killed
    print(f"\n{RUNS} runs of {whole:.1f}s, SIGKILL at random moments ({killed} hit a live run): all resumed alike")
