"""One operator stop in a parallel wave is reported once, not once per node thread (the
console printed 'stopped: ...' for every node of the wave)."""

from __future__ import annotations

import threading

import pytest

from migrate.errors import Interrupted
from migrate.plan import StepKind
from migrate.ports import StopFlag


@pytest.mark.parametrize("backend", ["simulated"], indirect=True)
def test_one_stop_is_reported_once(backend):
    plan = backend.plan(max_unavailable=3)
    wave = max(plan.waves, key=lambda w: len(w.nodes))
    assert len(wave.nodes) >= 2
    stop = StopFlag()
    ex = backend.executor(plan, stop=stop)
    drain = ex._steps[StepKind.DRAIN]
    arrived, n = threading.Barrier(len(wave.nodes)), {n.name for n in wave.nodes}

    def drain_then_stop(ctx, node):
        out = drain(ctx, node)
        if node.name in n:
            arrived.wait(10)  # every node of the wave has drained
            stop.set("received SIGINT")
        return out

    ex._steps[StepKind.DRAIN] = drain_then_stop
    with pytest.raises(Interrupted):
        ex.apply()
    finished = [e for e in backend.events if e.kind == "run-finished" and e.outcome == "interrupted"]
    assert len(finished) == 1, [e.message for e in finished]
