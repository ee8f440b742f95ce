"""What a backend hands the command line: its cluster and what runs beside it.

Each backend builds its own ``Backend`` (``backends.simbundle`` for a simulated cluster,
``backends.kubernetes.bundle`` for a real one): the journal store a run writes, the
executor lock the cluster itself keeps (if any), what installs Cilium, how long a failing
validation check waits before it is tried again, and the API requests made (if counted).
The CLI wires what it is given; it never asks which backend it holds. The engine never
sees a ``Backend``: it gets the cluster, the store and the lock one by one.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from migrate.plan import Target
from migrate.ports import CheckpointStore, Cluster, ExecutorLock

# Installs (or upgrades) Cilium with these Helm values; returns what was done.
InstallCilium = Callable[[dict[str, Any]], str]


class ClusterLock(ExecutorLock, Protocol):
    """An executor lock kept in the cluster (the Kubernetes Lease): it keeps out executors on
    other machines, which the local flock cannot."""

    on_lost: Callable[[str], None] | None  # called (from another thread) when the lock is lost

    def holder_now(self) -> str | None:
        """Who holds it now, or None: a read only, for status."""
        ...


class RequestStats(Protocol):
    """The API requests a backend has made so far, counted as it makes them."""

    @property
    def requests(self) -> int: ...

    @property
    def calls(self) -> collections.Counter[str]:
        """The same, by client method."""
        ...


@dataclass(frozen=True)
class CiliumTools:
    """What installs Cilium for apply --install-cilium and upgrades it for finalize
    --upgrade-cilium (Helm on a real cluster; the simulation's stand-in on a simulated one)."""

    install: InstallCilium
    upgrade: InstallCilium


def local_journal(fingerprint: str, local: CheckpointStore) -> CheckpointStore:
    """The run's journal is the local file alone (a simulated cluster keeps no journal)."""
    return local


@dataclass(frozen=True)
class Backend:
    """One connected cluster and the adapters its backend pairs with it."""

    cluster: Cluster
    # The cluster as a plan names it: backend, name (the simulation's, or the kubeconfig
    # context), server. Not the plan's own target: a run keeps the one its plan names.
    target: Target
    # Seconds between attempts of a failing validation check (a real node needs time to settle).
    probe_retry_gap: float
    # (helm binary or None, chart, version) -> CiliumTools; raises BadInput when Helm is
    # missing, so it is asked for only once a run needs it.
    cilium: Callable[[str | None, str, str], CiliumTools]
    # (the plan's cluster fingerprint, the local journal) -> the journal a run writes.
    journal: Callable[[str, CheckpointStore], CheckpointStore] = local_journal
    # holder name (None: a fresh one) -> the cluster's own executor lock; None: there is none.
    lease: Callable[[str | None], ClusterLock] | None = None
    # The API requests made through ``cluster``; None where they are not counted.
    stats: RequestStats | None = None
