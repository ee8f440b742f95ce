"""Scenario fixtures: a cluster backend, a plan, and an executor wired to local checkpoints.

Scenarios are written against the ``Cluster`` port only, so the same scenario runs on
every backend the ``backend`` fixture provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrate.backends import simworld
from migrate.backends.simulated import SimStore, SimulatedCluster
from migrate.checkpoints.local import FileLock, LocalStore
from migrate.executor import Executor
from migrate.plan import Plan, PlanOptions, Target
from migrate.planner import build_plan
from migrate.ports import Event, StopFlag


class FakeClock:
    """Time that only moves when someone sleeps: drains time out without waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return datetime(2026, 11, 28, 22, 0, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Harness:
    cluster: Any
    tmp: Path
    target: Target
    events: list[Event] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def plan(self, **options: Any) -> Plan:
        options.setdefault("force", True)
        options.setdefault("delete_emptydir_data", True)
        return build_plan(self.cluster.inventory(), PlanOptions(**options), self.target)

    def executor(self, plan: Plan, stop: StopFlag | None = None, **kw: Any) -> Executor:
        directory = self.tmp / "runs"
        return Executor(
            plan=plan,
            cluster=self.cluster,
            store=LocalStore(directory),
            lock=FileLock(directory),
            clock=self.clock,
            emit=self.events.append,
            stop=stop or StopFlag(),
            **kw,
        )

    def store(self) -> LocalStore:
        return LocalStore(self.tmp / "runs")


@pytest.fixture(params=["simulated"])
def backend(request, tmp_path: Path) -> Harness:
    if request.param == "simulated":
        world = simworld.default_world("scenario", nodes=6, seed=1)
        cluster: SimulatedCluster = SimStore(tmp_path).create("scenario", world)
        return Harness(cluster, tmp_path, Target("sim", "scenario", "sim://scenario"))
    raise AssertionError(request.param)
