"""The executor: run a reviewed plan against a cluster, one checkpointed step at a time.

Every step is recorded as started before it runs and as succeeded/failed/interrupted
after, through the ``CheckpointStore``; a step recorded as succeeded is never run again.
Steps are idempotent, so one that started but never finished is simply run again.
The executor reports through ``EventSink`` and never prints.

Its rooms: ``engine`` (the entry points: verify, apply, rollback), ``config`` (the frozen
run configuration and the gates' contract), ``admission`` (may this run start?), ``run``
(what one run's rooms share), ``commit`` (journal group commit), ``runner`` (the step
runner), ``prepare`` (Cilium, the node config, the traffic watch), ``waves`` (the wave
loop) and ``pipelines`` (a wave's nodes, in parallel, and put back).
"""

from migrate.executor.admission import verify_plan
from migrate.executor.config import CONTINUE, Answer, GateAnswer, NodeGate, RunConfig, WaveGate
from migrate.executor.engine import Executor
from migrate.executor.waves import last_migrated_wave, skippable

__all__ = [
    "CONTINUE",
    "Answer",
    "Executor",
    "GateAnswer",
    "NodeGate",
    "RunConfig",
    "WaveGate",
    "last_migrated_wave",
    "skippable",
    "verify_plan",
]
