"""Simulated clusters on disk: where each world lives, how it is read and written.

Each simulated cluster lives in ``$CNI_MIGRATE_HOME/sims/<name>/world.json`` so separate
processes (plan, apply, a killed apply, resume, ``sim show``) see the same cluster. Every
call is one transaction (``WorldFile.transaction``): take an exclusive ``flock`` on the
world, load it (refusing a malformed one in one line), wait the world's ``latency``, fire
a scheduled fault, act, let the controllers react (``simworld.reconcile``), write it back
atomically (temp + rename). The ``Cluster`` adapter over it is ``simulated``.

A wait for another writer (``WorldFile.wait_write``) wakes on every write this process
makes to the world (the threads of a parallel wave share it); a run is the only writer
of its world, so no other process's write is waited for.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migrate.backends.simworld import World, reconcile
from migrate.errors import BadInput, Conflict, PermanentError, TemporaryError

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def sims_dir(home: Path) -> Path:
    return home / "sims"


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise BadInput(f"simulated cluster name {name!r} is not a DNS label (a-z, 0-9, '-')")


def write_world(path: Path, world: World) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(world, f, indent=1, sort_keys=True)
    # Atomic against a killed process (which is what the simulation must survive);
    # no fsync: the world is a test fixture, not data a power cut must keep.
    os.replace(tmp, path)


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


class WorldFile:
    """One simulated cluster's ``world.json``, read and written one transaction at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.parent.name
        self._checked = False  # the world's shape is checked on first read
        with _WRITES_LOCK:
            self._writes = _WRITES.setdefault(path.resolve(), _Writes())

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
        with open(self.path.parent / "world.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                world = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise BadInput(f"simulated cluster {self.name!r} is unreadable: {exc}") from exc
            if not self._checked:
                wrong = problem(world)
                if wrong:
                    raise BadInput(
                        f"simulated cluster {self.name!r} is malformed ({self.path}: {wrong}); "
                        f"recreate it with 'cni-migrate sim delete {self.name}' and 'sim create'"
                    )
                self._checked = True
            if world.get("latency"):
                time.sleep(float(world["latency"]))
            if op is not None:
                self._maybe_fault(world, op)
            yield world
            if write:
                reconcile(world)
                write_world(self.path, world)
                with self._writes.changed:
                    self._writes.count += 1
                    self._writes.changed.notify_all()

    def _maybe_fault(self, world: World, op: str) -> None:
        counters = world["counters"]["op"]
        counters[op] = counters.get(op, 0) + 1
        for fault in world["faults"]:
            if fault["op"] == op and fault["nth"] == counters[op]:
                write_world(self.path, world)  # keep the counter, so the fault fires once
                error = fault["error"]
                if error == "429":
                    raise TemporaryError(f"injected 429 on {op} #{counters[op]}", delay=0.1)
                if error == "409":
                    raise Conflict(f"injected 409 on {op} #{counters[op]}")
                if error == "500":
                    raise TemporaryError(f"injected 500 on {op} #{counters[op]}", delay=0.1)
                raise PermanentError(f"injected {error} on {op} #{counters[op]}")
        if op in {f["op"] for f in world["faults"]}:
            write_world(self.path, world)
