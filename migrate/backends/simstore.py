"""Simulated clusters on disk: where each world lives, how it is read and written.

Each simulated cluster lives in ``$CNI_MIGRATE_HOME/sims/<name>/world.db``, an SQLite
database in WAL mode, so separate processes (plan, apply, a killed apply, resume, ``sim
show``) see the same cluster, and a process killed at any moment leaves the world as its
last whole call left it. Every call is one transaction (``WorldFile.transaction``): wait the
world's ``latency`` (outside any lock: the nodes of a parallel wave wait together, as their
requests would on an API server), take the database's write lock, read the world (the
process's own copy when no other process wrote since), fire a scheduled fault, act, let the
controllers react (``simworld.reconcile``), write what changed, commit.

Tables: ``doc`` (key, JSON): each top-level key of the world but the four below; ``node``
(name, JSON) and ``pod`` (uid, JSON): a row each (``simrows`` notes which a call changed);
``log`` (kind, seq, JSON): the ``actions`` and ``events`` lists, appended to. A call that
cordons a node writes that node's row, the doc keys whose JSON changed and its log lines,
not the world (which, rewritten whole on every call, made a 10-node wave take as long as
10 nodes one after another). The ``Cluster`` adapter over it is ``simulated``.

A wait for another writer (``WorldFile.wait_write``) wakes on every write this process
makes to the world (the threads of a parallel wave share it); a run is the only writer
of its world, so no other process's write is waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migrate.backends.simrows import Rows
from migrate.backends.simworld import World, reconcile
from migrate.errors import BadInput, Conflict, MigrateError, PermanentError, TemporaryError

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def sims_dir(home: Path) -> Path:
    return home / "sims"


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise BadInput(f"simulated cluster name {name!r} is not a DNS label (a-z, 0-9, '-')")


# What the simulation reads without a default: a world missing one of these (edited by
# hand, or written by a much older version) is refused in one line, not a KeyError.
_SHAPE: dict[str, type | tuple[type, ...]] = {
    "uid": str,
    "latency": (int, float),
    "failValidation": dict,
    "faults": list,
    "counters": dict,
    "nodes": dict,
    "workloads": list,
    "pods": dict,
    "pdbs": list,
    "calico": dict,
    "cilium": dict,
    "policies": list,
    "actions": list,
    "events": list,
}
_NODE_KEYS = ("uid", "index", "labels", "taints", "unschedulable", "ready", "kernel", "osImage", "os", "cpu",
              "memory", "maxPods", "cniFiles", "ipCounter", "address")  # fmt: skip
_POD_KEYS = ("namespace", "name", "uid", "node", "labels", "owner", "phase", "ready", "cpu", "memory", "emptydir",
             "hostNetwork", "ip")  # fmt: skip
_WORKLOAD_KEYS = ("kind", "namespace", "name", "replicas", "cpu", "memory", "emptydir", "hostNetwork", "labels")
_PDB_KEYS = ("namespace", "name", "selector")


def problem(world: Any) -> str | None:
    """What makes ``world`` unusable (the first thing found), or None."""
    if not isinstance(world, dict):
        return "it is not a JSON object"
    for key, kind in _SHAPE.items():
        if not isinstance(world.get(key), kind):
            return f"{key!r} is missing or is not {_name(kind)}"
    rows: list[tuple[str, Any, tuple[str, ...]]] = [
        *((f"node {name!r}", node, _NODE_KEYS) for name, node in world["nodes"].items()),
        *((f"pod {uid!r}", pod, _POD_KEYS) for uid, pod in world["pods"].items()),
        *((f"workload #{i}", wl, _WORKLOAD_KEYS) for i, wl in enumerate(world["workloads"])),
        *((f"PDB #{i}", pdb, _PDB_KEYS) for i, pdb in enumerate(world["pdbs"])),
    ]
    for what, row, keys in rows:
        if not isinstance(row, dict):
            return f"{what} is not a JSON object"
        missing = [k for k in keys if k not in row]
        if missing:
            return f"{what} has no {', '.join(repr(k) for k in missing)}"
    return None


def _name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    words = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return " or ".join(dict.fromkeys(words[k] for k in kinds))


class _Writes:
    """How many times this process has written one world, and a condition to wait on it."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()


_WRITES: dict[Path, _Writes] = {}
_WRITES_LOCK = threading.Lock()


ROWS = ("nodes", "pods")  # the world's keys kept a row per entry: table node, pod
LOGS = ("actions", "events")  # the world's lists kept as appended lines: table log
SCHEMA = """
CREATE TABLE doc (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE node (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pod (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE log (kind TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, seq));
"""
TABLE = {"nodes": "node", "pods": "pod"}

# Set by the test suite: after every write the world read back from the database must equal
# the process's copy, so a change ``simrows`` did not see fails the test that made it.
VERIFY = "CNI_MIGRATE_SIM_VERIFY"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def create_world(path: Path, world: World) -> None:
    """Write ``world`` as a new database at ``path``: built beside it and linked into place,
    so a killed ``sim create`` leaves no half world; FileExistsError if ``path`` exists."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            _write_all(conn, world)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.link(tmp, path)  # unlike a rename, never replaces a world another process made
    finally:
        tmp.unlink(missing_ok=True)


def moved_from_json(path: Path) -> bool:
    """A world an earlier version kept as ``world.json`` beside ``path``, moved into ``path``
    (the JSON file removed); False when there is none."""
    legacy = path.with_name("world.json")
    try:
        world = json.loads(legacy.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise BadInput(f"simulated cluster {path.parent.name!r} is unreadable: {exc}") from exc
    with contextlib.suppress(FileExistsError):  # another process moved it first
        create_world(path, world)
    legacy.unlink(missing_ok=True)
    return True


def _write_all(conn: sqlite3.Connection, world: World) -> None:
    for table in ("doc", "node", "pod", "log"):
        conn.execute(f"DELETE FROM {table}")
    conn.executemany(
        "INSERT INTO doc VALUES (?, ?)",
        [(key, _dumps(value)) for key, value in world.items() if key not in ROWS + LOGS],
    )
    for key in ROWS:
        conn.executemany(
            f"INSERT INTO {TABLE[key]} VALUES (?, ?)", [(k, _dumps(v)) for k, v in world.get(key, {}).items()]
        )
    for kind in LOGS:
        conn.executemany(
            "INSERT INTO log VALUES (?, ?, ?)", [(kind, i, _dumps(v)) for i, v in enumerate(world.get(kind, []))]
        )


class WorldFile:
    """One simulated cluster's ``world.db``, read and written one transaction at a time.

    The process keeps the world it last read or wrote (``_world``) and reads the database
    again only when another process committed since (SQLite's ``data_version``). The nodes
    of a wave call from their own threads: one transaction at a time per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.parent.name
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._world: World | None = None
        self._version = -1  # data_version of the database when _world was read or written
        self._docs: dict[str, str] = {}  # each doc key's JSON as stored
        self._logs: dict[str, tuple[list[Any], int]] = {}  # each log: the list stored, its length
        self._verify = bool(os.environ.get(VERIFY))
        with _WRITES_LOCK:
            self._writes = _WRITES.setdefault(path.resolve(), _Writes())

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                uri = f"{self.path.resolve().as_uri()}?mode=rw"  # never creates an empty world
                conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
                # Durable against a killed process, which is what the simulation must survive;
                # not against a power cut: the world is a test fixture, not data to keep.
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise BadInput(f"simulated cluster {self.name!r} is unreadable: {exc}") from exc
            self._conn = conn
        return self._conn

    def writes(self) -> int:
        """How many writes this process has made to the world so far (for ``wait_write``)."""
        with self._writes.changed:
            return self._writes.count

    def wait_write(self, seen: int, timeout: float) -> bool:
        """Until this process has written the world since ``writes()`` said ``seen``; False
        if ``timeout`` seconds pass first."""
        with self._writes.changed:
            return self._writes.changed.wait_for(lambda: self._writes.count != seen, max(timeout, 0.0))

    @contextmanager
    def transaction(self, op: str | None = None, write: bool = False) -> Iterator[World]:
        """The world, under the lock; written back (after the controllers react) with ``write``.
        ``op`` names the call for the world's scheduled faults."""
        cached = self._world  # read once: another thread may drop it
        latency = cached.get("latency") if cached is not None else None
        if latency:
            time.sleep(float(latency))
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise BadInput(f"simulated cluster {self.name!r} is unreadable: {exc}") from exc
            world: World | None = None
            try:
                first = self._world is None
                world = self._current(conn)
                if first and world.get("latency"):
                    time.sleep(float(world["latency"]))  # the first call: the latency was unknown
                if op is not None and (write or any(f["op"] == op for f in world["faults"])):
                    fault = self._count(world, op)
                    if any(f["op"] == op for f in world["faults"]):
                        self._save(conn, world)  # keep the count, so a fault fires once
                        if fault is not None:
                            conn.execute("COMMIT")
                            raise fault
                yield world
                if write:
                    reconcile(world)
                    self._save(conn, world)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if world is not None and (not isinstance(exc, MigrateError) or self._changed(world)):
                    self._world = None  # the body may have changed it half-way: read it again
                raise
            if write:
                with self._writes.changed:
                    self._writes.count += 1
                    self._writes.changed.notify_all()
            if write and self._verify:
                self._check()

    def _current(self, conn: sqlite3.Connection) -> World:
        """The world as committed: the process's copy unless another process wrote since."""
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._world is None or version != self._version:
                self._world = self._read(conn)
                self._version = version
        except sqlite3.Error as exc:
            self._world = None
            raise BadInput(f"simulated cluster {self.name!r} is unreadable: {exc}") from exc
        return self._world

    def _read(self, conn: sqlite3.Connection) -> World:
        docs = dict(conn.execute("SELECT key, value FROM doc"))
        world: World = {key: json.loads(value) for key, value in docs.items()}
        for key in ROWS:
            rows = conn.execute(f"SELECT key, value FROM {TABLE[key]} ORDER BY key")
            world[key] = Rows((k, json.loads(v)) for k, v in rows)
        for kind in LOGS:
            lines = conn.execute("SELECT value FROM log WHERE kind = ? ORDER BY seq", (kind,))
            world[kind] = [json.loads(v) for (v,) in lines]
        wrong = problem(world)
        if wrong:
            raise BadInput(
                f"simulated cluster {self.name!r} is malformed ({self.path}: {wrong}); "
                f"recreate it with 'cni-migrate sim delete {self.name}' and 'sim create'"
            )
        self._docs = docs
        self._logs = {kind: (world[kind], len(world[kind])) for kind in LOGS}
        return world

    def _changed(self, world: World) -> bool:
        """Whether ``world`` differs from what is stored (cheaply: what the rows noted)."""
        if any(not isinstance(world.get(k), Rows) or world[k].changed for k in ROWS):
            return True
        if any(world.get(kind) is not stored or len(stored) != n for kind, (stored, n) in self._logs.items()):
            return True
        docs = {key: value for key, value in world.items() if key not in ROWS + LOGS}
        return docs.keys() != self._docs.keys() or any(_dumps(v) != self._docs[k] for k, v in docs.items())

    def _save(self, conn: sqlite3.Connection, world: World) -> None:
        """Write what ``world`` changed since it was read or last saved."""
        for key, value in world.items():
            if key in ROWS + LOGS:
                continue
            text = _dumps(value)
            if self._docs.get(key) != text:
                conn.execute("INSERT OR REPLACE INTO doc VALUES (?, ?)", (key, text))
                self._docs[key] = text
        for key in [k for k in self._docs if k not in world]:
            conn.execute("DELETE FROM doc WHERE key = ?", (key,))
            del self._docs[key]
        for key in ROWS:
            table, rows = TABLE[key], world.get(key)
            if not isinstance(rows, Rows):  # replaced whole (``update(nodes=...)``)
                rows = world[key] = Rows(sorted((rows or {}).items()))
                conn.execute(f"DELETE FROM {table}")
                rows.changed.update(rows)
            for k in rows.settled():
                if k in rows:
                    conn.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (k, _dumps(rows[k])))
                else:
                    conn.execute(f"DELETE FROM {table} WHERE key = ?", (k,))
        for kind in LOGS:
            lines, (stored, n) = world.setdefault(kind, []), self._logs.get(kind, ([], 0))
            if lines is not stored or len(lines) < n:  # replaced or cut: written again
                conn.execute("DELETE FROM log WHERE kind = ?", (kind,))
                n = 0
            conn.executemany(
                "INSERT INTO log VALUES (?, ?, ?)", [(kind, n + i, _dumps(v)) for i, v in enumerate(lines[n:])]
            )
            self._logs[kind] = (lines, len(lines))

    def _check(self) -> None:
        """``VERIFY``: the world read back equals the process's copy."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN")
            try:
                stored, mine = self._read(conn), self._world
                self._world = stored
            finally:
                conn.execute("COMMIT")
            if _dumps(stored) != _dumps(mine):
                raise AssertionError(f"simulated cluster {self.name!r}: a change was not written (simrows)")

    def replace(self, world: World) -> None:
        """Put ``world`` in place as it is, the controllers not run: an edit by hand."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                _write_all(conn, world)
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._world = None

    def _count(self, world: World, op: str) -> MigrateError | None:
        """Count a call of ``op`` (a write, or a call a fault is scheduled for: the calls the
        faults' ``nth`` counts); the error its scheduled fault raises now, if one does."""
        counters = world["counters"]["op"]
        counters[op] = counters.get(op, 0) + 1
        for fault in world["faults"]:
            if fault["op"] == op and fault["nth"] == counters[op]:
                error = fault["error"]
                if error == "429":
                    return TemporaryError(f"injected 429 on {op} #{counters[op]}", delay=0.1)
                if error == "409":
                    return Conflict(f"injected 409 on {op} #{counters[op]}")
                if error == "500":
                    return TemporaryError(f"injected 500 on {op} #{counters[op]}", delay=0.1)
                return PermanentError(f"injected {error} on {op} #{counters[op]}")
        return None
