"""The local checkpoint store and lock: one directory per cluster under the state home.

    $CNI_MIGRATE_HOME/runs/<fingerprint>/journal.json   snapshot of the run state (0600)
    $CNI_MIGRATE_HOME/runs/<fingerprint>/journal.log    changes since the snapshot, one JSON line each
    $CNI_MIGRATE_HOME/runs/<fingerprint>/journal-<plan id>-<seq>.json   finished runs
    $CNI_MIGRATE_HOME/runs/<fingerprint>/executor.lock  flock held while a run executes

A step transition changes one node, so ``save`` appends only that node's record (and the
run's status and seq) to the log and fsyncs it: constant cost whatever the cluster's size,
where rewriting the whole journal grew with the node count (184 ms a transition at 5,000
nodes). The snapshot is rewritten (temp file, fsync, rename, directory fsync) when the
log reaches ``COMPACT_EVERY`` lines and whenever the run's status changes, so a finished
or stopped run always leaves a complete journal.json. A crash leaves the old snapshot plus
whole log lines; a torn last line belongs to a save that never returned and is dropped.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migrate.errors import BadInput, JournalUnwritable, LockHeld, MigrateError
from migrate.journal import RunState


def run_dir(home: Path, fingerprint: str) -> Path:
    return home / "runs" / fingerprint.replace("sha256:", "")


COMPACT_EVERY = 500


class LocalStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "journal.json"
        self.log_path = directory / "journal.log"
        self._last: RunState | None = None  # what this store last wrote or read
        self._log_lines = 0

    def _ensure_dir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BadInput(
                f"cannot create the state directory {self.directory}: {exc.strerror}; nothing was changed"
            ) from exc

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
            raise BadInput(
                f"cannot write checkpoints in {self.directory}: {exc.strerror}; nothing was changed"
            ) from exc

    def load(self) -> RunState | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            self._last, self._log_lines = None, 0
            return None
        except OSError as exc:
            raise MigrateError(f"cannot read checkpoint journal {self.path}: {exc.strerror}") from exc
        try:
            record = json.loads(text)
        except ValueError as exc:
            # Atomic renames mean a torn snapshot is not ours to repair: stop and say so.
            raise BadInput(f"checkpoint journal {self.path} is not valid JSON") from exc
        lines = self._log_records(record)
        state = RunState.from_record(record)
        self._last, self._log_lines = state, lines
        return state

    def _log_records(self, record: dict[str, object]) -> int:
        """Apply the log's changes to the snapshot ``record``; return how many there were."""
        try:
            raw = self.log_path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = raw.split(b"\n")
        applied = 0
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                change = json.loads(line)
            except ValueError:
                if i == len(lines) - 1:
                    break  # torn by a crash mid-append: that save never returned
                raise BadInput(f"checkpoint log {self.log_path} is corrupt at line {i + 1}") from None
            if not isinstance(change, dict) or change.get("planId") != record.get("planId"):
                continue  # a log left from an earlier run's snapshot: not ours
            if int(change["seq"]) <= int(record["seq"]):  # type: ignore[call-overload]
                continue  # already in the snapshot (compaction raced a crash)
            record["nodes"].update(change["nodes"])  # type: ignore[attr-defined]
            record["status"], record["seq"] = change["status"], change["seq"]
            record["finalize"] = change.get("finalize", record.get("finalize", {}))
            if "prepare" in change:
                record["prepare"] = change["prepare"]
            applied += 1
        return applied

    def save(self, state: RunState) -> None:
        last = self._last
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if (
                last is None
                or last.plan_id != state.plan_id
                or last.status is not state.status
                or self._log_lines >= COMPACT_EVERY
                or not self.path.exists()
            ):
                self._snapshot(state)
            else:
                self._append(state, [n for n, run in state.nodes.items() if run is not last.nodes.get(n)])
        except OSError as exc:
            # Without a durable checkpoint the run must not go on writing to the cluster.
            raise JournalUnwritable(
                f"cannot write checkpoint journal {self.path}: {exc.strerror}; the run stopped after its last "
                "recorded step: fix the state directory, then 'cni-migrate resume'"
            ) from exc
        self._last = state

    def _append(self, state: RunState, changed: list[str]) -> None:
        # Only what changed is serialised: the cost must not grow with the cluster.
        change = {
            "planId": state.plan_id,
            "seq": state.seq,
            "status": state.status.value,
            "finalize": dict(state.finalize),
            **({"prepare": dict(state.prepare)} if state.prepare else {}),
            "nodes": {n: state.nodes[n].to_record() for n in changed},
        }
        line = json.dumps(change, sort_keys=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._log_lines += 1

    def _snapshot(self, state: RunState) -> None:
        tmp = self.directory / f".journal.{os.getpid()}.tmp"
        data = json.dumps(state.to_record(), indent=1, sort_keys=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._fsync_dir()
        # Only once the snapshot holds everything may the log go.
        if self.log_path.exists():
            self.log_path.unlink()
            self._fsync_dir()
        self._log_lines = 0

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def archived(self, plan_id: str) -> RunState | None:
        """The last finished run of ``plan_id`` that a later run's journal replaced, if any."""
        runs = []
        for path in self.directory.glob(f"journal-{plan_id}-*.json"):
            seq = path.stem.rpartition("-")[2]
            if seq.isdigit():
                runs.append((int(seq), path))
        if not runs:
            return None
        path = max(runs)[1]
        try:
            return RunState.from_record(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise BadInput(f"archived journal {path} cannot be read: {exc}") from exc

    def archive(self) -> None:
        state = self.load()
        if state is None:
            return
        self._snapshot(state)
        os.replace(self.path, self.directory / f"journal-{state.plan_id}-{state.seq}.json")
        self._last = None


class FileLock:
    """An exclusive flock: released by the OS when the holder exits, even by SIGKILL."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "executor.lock"

    def holder(self) -> str | None:
        """Who holds the lock now ("pid N"), or None, without taking it (taking it, even
        shared, for a moment could make a starting executor refuse): the kernel's table of
        flocks (/proc/locks) is read for the lock file's inode."""
        try:
            inode = os.stat(self.path).st_ino
            with open("/proc/locks") as f:
                table = f.read()
        except OSError:
            return None
        device = os.stat(self.path).st_dev
        wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
        for line in table.splitlines():
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4242 00:2b:1234 0 EOF"; blocked waiters start "->"
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[0] != "->" and fields[5] == wanted:
                return f"pid {fields[4]}"
        return None

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
