"""Failpoints: deterministic crash injection for the crash-anywhere tests.

Like etcd's gofail: when ``CNI_MIGRATE_FAILPOINT`` is set (only tests set it), the
checkpoint store is wrapped so that the process SIGKILLs itself just before or just after
its N-th checkpoint write: ``before-save:N`` (a step ran but its result is unrecorded, or
a step is about to start) or ``after-save:N`` (exactly at a recorded boundary).
Inside a step, ``at:NAME[:N]`` kills at the N-th (default first) pass of a named point
(``reached``): e.g. ``at:surge-scaled`` just after a surge scaled its Deployment up.
Unset, nothing is wrapped and this module does nothing.
"""

from __future__ import annotations

import os
import signal

from migrate.errors import BadInput
from migrate.journal import RunState
from migrate.ports import CheckpointStore

ENV = "CNI_MIGRATE_FAILPOINT"


class FailpointStore:
    def __init__(self, inner: CheckpointStore, where: str, nth: int) -> None:
        self.inner = inner
        self.where = where
        self.nth = nth
        self.saves = 0

    def load(self) -> RunState | None:
        return self.inner.load()

    def archive(self) -> None:
        self.inner.archive()

    def save(self, state: RunState) -> None:
        self.saves += 1
        if self.where == "before-save" and self.saves == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)
        self.inner.save(state)
        if self.where == "after-save" and self.saves == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)


def wrap(store: CheckpointStore) -> CheckpointStore:
    spec = os.environ.get(ENV, "")
    if not spec:
        return store
    if spec.startswith("at:"):
        return store  # a named point (``reached``), not a checkpoint write
    where, _, nth = spec.partition(":")
    if where not in ("before-save", "after-save") or not nth.isdigit():
        raise BadInput(f"{ENV}={spec!r}: expected before-save:N or after-save:N")
    return FailpointStore(store, where, int(nth))


_passes: dict[str, int] = {}


def reached(name: str) -> None:
    """A named point inside a step: SIGKILL here when ``CNI_MIGRATE_FAILPOINT`` is
    ``at:NAME`` (the first pass) or ``at:NAME:N`` (the N-th)."""
    spec = os.environ.get(ENV, "")
    if not spec.startswith("at:"):
        return
    point, _, nth = spec[3:].partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
