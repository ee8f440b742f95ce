"""The lab's processes: each component in its own process group, marked with the lab
directory in its environment, its PID in ``run/<component>.pid`` and its output in
``logs/<component>.log``; found again from any process (PID files checked against
/proc, and a /proc scan for the mark) and stopped clients first."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import LabError

#: Environment marker put on every lab process: value is the lab directory.
#: ``down`` uses it to find processes even if PID files are missing.
ENV_MARK = "CNI_MIGRATE_LAB_DIR"
#: Start order; ``down`` stops in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_state(pid: int) -> str | None:
    """Single-letter state from /proc, None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rpartition(")")[2].split()[0]


def alive(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def proc_mark(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = ENV_MARK.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def marked_pids(workdir: Path) -> list[int]:
    """Every live process carrying ENV_MARK=<workdir> (children included)."""
    want = str(workdir)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and proc_mark(int(entry)) == want and alive(int(entry)):
            pids.append(int(entry))
    return pids


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def set_pdeathsig() -> None:  # runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Processes:
    """The components of the lab in ``workdir``: started, checked, restarted, stopped.

    What this object started it also knows by ``Popen`` (exit codes, the flags to restart
    with); everything else it finds through the PID files and the environment mark, so
    ``Processes(dir).stop()`` works from any process."""

    def __init__(self, workdir: Path, *, die_with_parent: bool = False) -> None:
        self.workdir = workdir
        self.die_with_parent = die_with_parent
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    def log_tail(self, component: str, lines: int = 25) -> str:
        try:
            text = self.log_path(component).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def pids(self) -> dict[str, int]:
        """Component -> PID, for PID files whose process is still alive."""
        out = {}
        run = self.workdir / "run"
        for comp in COMPONENTS:
            f = run / f"{comp}.pid"
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int(f.read_text().strip())
                if alive(pid) and proc_mark(pid) == str(self.workdir):
                    out[comp] = pid
        return out

    def running(self) -> bool:
        return bool(self.pids()) or bool(marked_pids(self.workdir))

    def spawn(self, name: str, argv: list[str]) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[ENV_MARK] = str(self.workdir)
        env.setdefault("GOMAXPROCS", "2")
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n==== {datetime.datetime.now().isoformat()} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # own process group: pgid == pid
                preexec_fn=set_pdeathsig if self.die_with_parent else None,
                close_fds=True,
            )
        self._procs[name] = proc
        self._argv[name] = argv
        (self.workdir / "run" / f"{name}.pid").write_text(f"{proc.pid}\n")

    def respawn(self, name: str, *, down_seconds: float = 0.0) -> None:
        """Stop one component this object started (SIGTERM to its process group, SIGKILL
        after 10 s), keep it down ``down_seconds``, start it again with the same flags."""
        proc, argv = self._procs.get(name), self._argv.get(name)
        if proc is None or argv is None:
            raise LabError(f"{name} was not started by this KubeLab object; cannot restart it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        time.sleep(down_seconds)
        self.spawn(name, argv)

    def check_alive(self, *names: str) -> Callable[[], None]:
        def check() -> None:
            pids = None
            for n in names:
                proc = self._procs.get(n)
                if proc is not None:
                    # our own child: trust waitpid, not /proc (right after
                    # exec, /proc/<pid>/environ can briefly read empty)
                    rc = proc.poll()
                    if rc is None:
                        continue
                    how = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                    raise LabError(f"{n} exited during startup ({how}); log tail:\n{self.log_tail(n)}")
                pids = self.pids() if pids is None else pids
                if n not in pids:
                    raise LabError(f"{n} is not running; log tail:\n{self.log_tail(n)}")

        return check

    def stop(self, *, timeout: float = 10) -> list[int]:
        """Stop every lab process; return the signalled PIDs. PIDs come from run/*.pid and
        from a /proc scan for the ENV_MARK (guards against PID reuse and finds strays).
        Stops clients first (kwok, scheduler, controller manager), then the apiserver,
        then etcd -- all at once makes the apiserver's graceful shutdown drag on. Each
        group gets SIGTERM to its process group, SIGKILL after ``timeout`` (the
        apiserver: after 2 s at most). LabError if any survives SIGKILL."""
        by_comp = self.pids()
        # (processes, seconds they get after SIGTERM). The API server's graceful shutdown
        # waits for its clients' open watches (a test's node agent holds 30 s ones), and a
        # lab's data is thrown away: it gets 2 s, not the whole timeout, before SIGKILL.
        groups = [
            ([by_comp[c] for c in ("kwok", "kube-scheduler", "kube-controller-manager") if c in by_comp], timeout),
            ([by_comp[c] for c in ("kube-apiserver",) if c in by_comp], min(timeout, 2.0)),
            ([by_comp[c] for c in ("etcd",) if c in by_comp], timeout),
        ]
        signalled: list[int] = []

        def stop(pids: Iterable[int], timeout: float = timeout) -> set[int]:
            targets = {p for p in pids if alive(p)}
            signalled.extend(sorted(targets))

            def signal_all(sig: int) -> None:
                for pid in targets:
                    with contextlib.suppress(ProcessLookupError):
                        if os.getpgid(pid) == pid:
                            os.killpg(pid, sig)
                        else:
                            os.kill(pid, sig)

            def gone() -> bool:
                for pid in list(targets):
                    reap(pid)
                    if not alive(pid):
                        targets.discard(pid)
                return not targets

            signal_all(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.05)
            if targets:
                signal_all(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while not gone() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return targets

        survivors: set[int] = set()
        for group, grace in groups:
            survivors |= stop(group, grace)
        # strays: anything else still carrying our mark (e.g. a PID file was
        # lost when the starter crashed between fork and write)
        survivors |= stop(marked_pids(self.workdir))
        for p in self._procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        self._procs.clear()
        if survivors:
            raise LabError(f"processes survived SIGKILL: {sorted(survivors)}")
        return signalled
