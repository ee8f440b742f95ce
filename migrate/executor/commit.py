"""Journal group commit: the run's latest state, and every transition checkpointed before
the one who made it goes on.

The nodes of a wave run in threads: each changes only its own node's record (and the run's
status), so transitions are applied one at a time to the latest state, never to a stale
copy. Saving is grouped: a thread waits while another saves; by its turn, that save may
already have carried its change (a save writes the latest state, with every change made so
far). Either way ``commit`` returns only once its change is checkpointed, and the nodes of
a wave do not queue one journal write each behind one another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from migrate.journal import RunState
from migrate.ports import CheckpointStore


class GroupCommit:
    def __init__(self, store: CheckpointStore, state: RunState) -> None:
        self.store = store
        self._state = state
        self._mutex = threading.Lock()  # guards the state and the change count
        self._save_lock = threading.Lock()  # one journal write at a time
        self._changes = 0  # transitions made by commit
        self._saved = 0  # ... of which the journal holds the first this many

    @property
    def state(self) -> RunState:
        """The latest state (every transition made so far, checkpointed or about to be)."""
        return self._state

    def commit(self, change: Callable[[RunState], RunState]) -> RunState:
        """Apply one transition to the latest state and checkpoint it; returns the state it made."""
        with self._mutex:
            self._state = change(self._state)
            self._changes += 1
            mine, state = self._changes, self._state
        with self._save_lock:
            if self._saved < mine:
                with self._mutex:
                    latest, upto = self._state, self._changes
                self.store.save(latest)
                self._saved = upto
        return state
