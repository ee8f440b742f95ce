"""Hooks: operator-supplied executables run at fixed points of a migration run.

Points, in the order a run meets them: ``pre-run``, ``pre-node``, ``post-swap``,
``post-node``, ``post-run``, and ``on-failure`` (a node failed and was put back). What a
failing hook means for the run is the caller's decision (the executor's); this module only
finds hooks, runs them and reports. It never raises for a failing hook.

Discovery (one convention): the hooks for point ``P`` are the files directly in the hooks
directory named ``P`` or ``P.<anything>`` (``post-swap``, ``post-swap.10-ingress``,
``post-swap.py``), run one after another in byte order of their names. Subdirectories (such
as ``examples/``), dotfiles and ``README*`` are ignored. Any other file is a mistake
(``post_swap``, ``postswap.sh`` would silently never run) and so is a candidate that is not
executable; ``validate_hooks_dir`` reports both as ``BadInput`` and is meant to be called
before anything is written to the cluster. A missing directory means "no hooks".

Running: argv is ``[path]`` only, never a shell, and no plan data goes in argv. The hook
gets the context (``migrate.ports.HookContext.to_record``: the same keys at every point,
documented per point in hooks/README.md) as one JSON document on stdin, and the caller's
environment (``env_base``, default ``os.environ``) plus a ``CNI_MIGRATE_*`` variable for
each key but the free-text ``message`` (``ENV_FROM_CONTEXT``; empty for ``null``).
It runs in its own process group; on timeout the whole group gets SIGTERM, then
SIGKILL after ``KILL_GRACE_SECONDS``. stdout and stderr are captured together, keeping the
last ``MAX_OUTPUT_BYTES``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from migrate.errors import BadInput

DEFAULT_DIR = Path("hooks")
DEFAULT_TIMEOUT_SECONDS = 60.0
KILL_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL on timeout
MAX_OUTPUT_BYTES = 4096
READ_GRACE_SECONDS = 1.0  # how long to keep reading output after the hook itself has exited


class HookPoint(StrEnum):
    PRE_RUN = "pre-run"
    PRE_NODE = "pre-node"
    POST_SWAP = "post-swap"
    POST_NODE = "post-node"
    POST_RUN = "post-run"
    ON_FAILURE = "on-failure"


# Environment variables a hook receives, and the context key each one comes from.
ENV_HOOK = "CNI_MIGRATE_HOOK"
ENV_FROM_CONTEXT: Mapping[str, str] = {
    "CNI_MIGRATE_PLAN_ID": "plan_id",
    "CNI_MIGRATE_NODE": "node",
    "CNI_MIGRATE_WAVE": "wave",
    "CNI_MIGRATE_STEP": "step",
    "CNI_MIGRATE_PHASE": "phase",
    "CNI_MIGRATE_OUTCOME": "outcome",
}

Hooks = Mapping[HookPoint, tuple[Path, ...]]


@dataclass(frozen=True)
class HookResult:
    path: Path
    point: str
    exit_code: int  # negative: killed by that signal (e.g. -15 after a timeout)
    duration: float  # seconds
    output: str  # stdout and stderr interleaved, the last MAX_OUTPUT_BYTES
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def summary(self) -> str:
        """One line for an error message or a log: which hook, how it ended, its last words."""
        how = "timed out" if self.timed_out else "succeeded" if self.ok else f"failed (exit {self.exit_code})"
        last = next((line.strip() for line in reversed(self.output.splitlines()) if line.strip()), "")
        return f"{self.point} hook {self.path.name} {how}" + (f": {last}" if last and not self.ok else "")


def failed(results: Sequence[HookResult]) -> list[HookResult]:
    """The results of hooks that exited non-zero or timed out."""
    return [r for r in results if not r.ok]


# -- discovery -----------------------------------------------------------------------------
def validate_hooks_dir(directory: Path | str, *, must_exist: bool = False) -> Hooks:
    """The hooks for every point, in run order. ``BadInput`` for any misnamed or non-executable file.

    A missing directory has no hooks unless ``must_exist`` (the operator named it explicitly).
    """
    directory = Path(directory)
    found: dict[HookPoint, list[Path]] = {p: [] for p in HookPoint}
    if not directory.exists():
        if must_exist:
            raise BadInput(f"hooks directory {directory} does not exist")
        return {p: () for p in HookPoint}
    if not directory.is_dir():
        raise BadInput(f"hooks directory {directory} is not a directory")
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith(".") or name.startswith("README"):
            continue
        point = _point_of(name)
        if entry.is_dir():
            if point is not None:
                raise BadInput(
                    f"hook {entry} is a directory; hooks are files named {point} or {point}.<name> "
                    f"directly in {directory}"
                )
            continue  # e.g. examples/: not hooks
        if point is None:
            raise BadInput(
                f"{entry} is not a hook: hook files are named <point> or <point>.<name>, "
                f"points: {', '.join(p.value for p in HookPoint)}"
            )
        if not entry.is_file():
            raise BadInput(f"hook {entry} is not a regular file (a broken link?)")
        if not os.access(entry, os.X_OK):
            raise BadInput(f"hook {entry} is not executable (chmod +x {entry})")
        found[point].append(entry)
    return {p: tuple(paths) for p, paths in found.items()}


def _point_of(name: str) -> HookPoint | None:
    for point in HookPoint:
        if name == point.value or name.startswith(point.value + "."):
            return point
    return None


# -- context -------------------------------------------------------------------------------
def hook_environment(point: HookPoint, context: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env[ENV_HOOK] = point.value
    for var, key in ENV_FROM_CONTEXT.items():
        value = context.get(key)
        # NUL cannot be in an environment variable; nothing legitimate contains one.
        env[var] = "" if value is None else str(value).replace("\0", "")
    return env


# -- running -------------------------------------------------------------------------------
class HookRunner:
    """Runs the hooks of one directory; the set of hooks is fixed when the runner is made."""

    def __init__(
        self,
        directory: Path | str = DEFAULT_DIR,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        env_base: Mapping[str, str] | None = None,
        *,
        must_exist: bool = False,
    ) -> None:
        if timeout_seconds <= 0:
            raise BadInput("hook timeout must be positive")
        self.directory = Path(directory)
        self.timeout_seconds = timeout_seconds
        self.env_base = env_base
        self.hooks = validate_hooks_dir(self.directory, must_exist=must_exist)

    def paths(self, point: HookPoint | str) -> tuple[Path, ...]:
        return self.hooks[HookPoint(point)]

    def run(self, point: HookPoint | str, context: Mapping[str, Any]) -> list[HookResult]:
        """Run every hook of ``point`` in order (all of them, even after a failure) and report each."""
        point = HookPoint(point)
        stdin = json.dumps(context, sort_keys=True, default=str).encode()
        env = hook_environment(point, context, os.environ if self.env_base is None else self.env_base)
        return [self._run_one(path, point, stdin, env) for path in self.hooks[point]]

    def _run_one(self, path: Path, point: HookPoint, stdin: bytes, env: Mapping[str, str]) -> HookResult:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                close_fds=True,
                start_new_session=True,  # its own process group, so a timeout kills all it started
            )
        except OSError as exc:
            # Removed, chmod -x'ed or a bad interpreter line since discovery: report, don't raise.
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return HookResult(path, point.value, code, time.monotonic() - started, f"cannot run: {exc}")
        assert proc.stdin is not None and proc.stdout is not None
        output = _Tail(MAX_OUTPUT_BYTES)
        reader = threading.Thread(target=output.drain, args=(proc.stdout,), daemon=True)
        writer = threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True)
        reader.start()
        writer.start()
        timed_out = False
        try:
            code = proc.wait(timeout=self.timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _kill_group(proc)
        # Something the hook left running may hold the pipe open: read on briefly, never hang.
        reader.join(READ_GRACE_SECONDS)
        return HookResult(path, point.value, code, time.monotonic() - started, output.text(), timed_out)


def _feed(pipe: IO[bytes], data: bytes) -> None:
    # BrokenPipeError: the hook exited without reading its stdin, which is its business.
    with contextlib.suppress(BrokenPipeError):
        try:
            pipe.write(data)
        finally:
            pipe.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> int:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue  # ignored SIGTERM: escalate
    return proc.wait()


class _Tail:
    """Keeps the last ``limit`` bytes of a stream, and counts what it dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0
        self.lock = threading.Lock()

    def drain(self, pipe: IO[bytes]) -> None:
        with pipe:
            for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
                with self.lock:
                    self.data += chunk
                    excess = len(self.data) - self.limit
                    if excess > 0:
                        del self.data[:excess]
                        self.dropped += excess

    def text(self) -> str:
        with self.lock:
            body = bytes(self.data).decode("utf-8", errors="replace")
            return f"[... {self.dropped} bytes dropped ...]\n{body}" if self.dropped else body
