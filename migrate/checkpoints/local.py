"""The local checkpoint store and lock: one directory per cluster under the state home.

    $CNI_MIGRATE_HOME/runs/<fingerprint>/journal.json   the run state (0600)
    $CNI_MIGRATE_HOME/runs/<fingerprint>/journal-<plan id>-<seq>.json   finished runs
    $CNI_MIGRATE_HOME/runs/<fingerprint>/executor.lock  flock held while a run executes

Writes go to a temp file, are fsynced, renamed over the journal, and the directory is
fsynced, so a crash leaves the old or the new journal, never a torn one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrate.errors import BadInput, LockHeld, MigrateError
from migrate.journal import RunState


def run_dir(home: Path, fingerprint: str) -> Path:
    return home / "runs" / fingerprint.replace("sha256:", "")


class LocalStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "journal.json"

    def _ensure_dir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise MigrateError(f"cannot create the state directory {self.directory}: {exc.strerror}") from exc

    def check_writable(self) -> None:
        """Fail before any cluster write if checkpoints cannot be written."""
        self._ensure_dir()
        probe = self.directory / ".write-test"
        try:
            with open(probe, "w") as f:
                f.write("ok")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            raise MigrateError(f"cannot write checkpoints in {self.directory}: {exc.strerror}") from exc

    def load(self) -> RunState | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MigrateError(f"cannot read checkpoint journal {self.path}: {exc.strerror}") from exc
        try:
            record = json.loads(text)
        except ValueError as exc:
            # Atomic renames mean a torn journal is not ours to repair: stop and say so.
            raise BadInput(f"checkpoint journal {self.path} is not valid JSON") from exc
        return RunState.from_record(record)

    def save(self, state: RunState) -> None:
        self._ensure_dir()
        tmp = self.directory / f".journal.{os.getpid()}.tmp"
        data = json.dumps(state.to_record(), indent=1, sort_keys=True)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            # Without a durable checkpoint the run must not go on writing to the cluster.
            raise MigrateError(f"cannot write checkpoint journal {self.path}: {exc.strerror}") from exc

    def archive(self) -> None:
        state = self.load()
        if state is None:
            return
        os.replace(self.path, self.directory / f"journal-{state.plan_id}-{state.seq}.json")


class FileLock:
    """An exclusive flock: released by the OS when the holder exits, even by SIGKILL."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "executor.lock"

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise LockHeld(
                    f"another executor is running against this cluster ({holder}); wait for it or stop it first"
                ) from exc
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.seek(0)
                f.truncate()
                fcntl.flock(f, fcntl.LOCK_UN)
