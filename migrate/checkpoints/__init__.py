"""Checkpoint stores (the ``CheckpointStore`` port) and executor locks.

``local``: a journal file per cluster under the state directory, written atomically, and an
``flock`` lock the OS releases when its holder dies. The in-cluster store (a ConfigMap
updated with resourceVersion) and the Lease lock live with the Kubernetes backend.
"""

from collections.abc import Iterator  # noqa: E402 - below the module docstring's prose
from contextlib import ExitStack, contextmanager  # noqa: E402

from migrate.ports import ExecutorLock  # noqa: E402


class AllLocks:
    """Hold several executor locks at once (the local flock and the cluster's Lease)."""

    def __init__(self, *locks: ExecutorLock) -> None:
        self.locks = locks

    @contextmanager
    def hold(self) -> Iterator[None]:
        with ExitStack() as stack:
            for lock in self.locks:
                stack.enter_context(lock.hold())
            yield
