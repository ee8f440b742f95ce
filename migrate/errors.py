"""The error tree of cni-migrate, and the exit code each error maps to.

    MigrateError                      exit 1   anything unexpected that we still name
    ├── BadInput                      exit 2   the user's input is wrong; nothing was written
    │   ├── PlanClusterMismatch       exit 2   the plan was made for another cluster
    │   ├── PlanStale                 exit 2   the cluster changed since the plan was made
    │   ├── RunConflict               exit 2   another run/plan owns this cluster's journal
    │   └── SurgeUnreadable           exit 2   a Deployment's surge record was edited: its count is unknown
    ├── LockHeld                      exit 2   another executor is running against this cluster
    ├── PreflightBlocked              exit 3   the plan has blocking findings
    ├── ValidationFailed              exit 4   a node failed validation and was rolled back
    ├── Interrupted                   exit 5   stopped on request or at the window end; resumable
    │   ├── Paused                    exit 5   stopped where the operator asked (not an error); resumable
    │   ├── LeaseLost                 exit 5   the executor lost its Lease and stopped sending; resumable
    │   └── NodeLost                  exit 7   a node went NotReady under a step run on it; resumable
    ├── StepFailed                    exit 6   a step failed (e.g. drain timeout); node put back
    └── ClusterError                           errors talking to a cluster (backends raise these)
        ├── TemporaryError                     worth retrying after ``delay`` seconds
        │   └── EvictionRefused                a PDB refused an eviction (HTTP 429)
        ├── NotFound                           the object does not exist
        ├── Conflict                           optimistic-concurrency conflict (HTTP 409)
        └── PermanentError                     retrying will not help (403, 422, ...)

Backends translate their client library's errors into ``ClusterError`` subclasses at one
boundary; the engine only ever sees this tree. ``exit_code`` is the single place that maps
errors to process exit codes.
"""

from __future__ import annotations


class MigrateError(Exception):
    """Root of every error cni-migrate raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class BadInput(MigrateError):
    """The command's input is wrong (file, flag, name); nothing was written."""

    exit_code = 2


class PlanClusterMismatch(BadInput):
    """The plan (or checkpoint) was made for a different cluster."""


class PlanStale(BadInput):
    """The cluster changed since the plan was made in a way that invalidates it."""


class RunConflict(BadInput):
    """The checkpoint journal belongs to another plan or run."""


class SurgeUnreadable(BadInput):
    """A Deployment carries a surge record cni-migrate cannot read (edited, truncated): the
    count to put it back to is unknown, so no run writes anything until an operator sets it."""


class LockHeld(MigrateError):
    """Another executor holds this cluster's lock."""

    exit_code = 2


class JournalUnwritable(MigrateError):
    """The state directory stopped taking writes mid-run (disk full, read-only, gone):
    the run stops at once, its last recorded step intact; resume once it takes writes."""

    exit_code = 5


class PreflightBlocked(MigrateError):
    """The plan has blocking preflight findings."""

    exit_code = 3


class ValidationFailed(MigrateError):
    """A node failed validation after its CNI swap and was rolled back."""

    exit_code = 4


class Interrupted(MigrateError):
    """The run stopped before finishing (signal, pause, window end); resume continues it."""

    exit_code = 5


class Paused(Interrupted):
    """The run stopped where the operator asked it to: a guided pause, abort or wave
    rollback, ``--pause-after-canary``, nodes skipped, the ``--window-end`` boundary. Still
    exit 5 (resumable), but said as what it is, never as ``error:``."""


class LeaseLost(Interrupted):
    """The executor's Lease ran out unrenewed (the API server out of reach for two thirds of
    it) or another executor took it over: nothing more is sent to the cluster, journal
    included; the run stops resumably, before any other executor may take the Lease."""


class NodeLost(Interrupted):
    """A node went NotReady during a step run on it: the run stopped, no other node touched; resume waits for it."""

    # Not 5: a node that died mid-swap needs a look (its machine, its kubelet) before the
    # run goes on, and a script that resumes every exit 5 by itself must not skip that look.
    exit_code = 7


class StepFailed(MigrateError):
    """A step failed for good (e.g. a drain timed out); the node was put back."""

    exit_code = 6


class ClusterError(MigrateError):
    """A cluster API call failed; subclasses say what happens next."""


class TemporaryError(ClusterError):
    """Retry after ``delay`` seconds (429, 5xx, timeouts, lost connections)."""

    def __init__(self, message: str, delay: float = 1.0, **context: object) -> None:
        super().__init__(message, **context)
        self.delay = delay


class EvictionRefused(TemporaryError):
    """An eviction was refused because a PodDisruptionBudget allows no disruption now."""


class NotFound(ClusterError):
    """The object does not exist (HTTP 404)."""


class Conflict(ClusterError):
    """The object changed under us (HTTP 409); re-read and try again."""


class PermanentError(ClusterError):
    """Retrying will not help (HTTP 403, 422, malformed objects)."""


def exit_code(error: BaseException) -> int:
    """The process exit code for ``error``: the one place that maps errors to codes."""
    if isinstance(error, MigrateError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return Interrupted.exit_code
    return 1
