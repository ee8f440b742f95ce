"""Running the real tools (kind, kubectl, docker, the lab's build scripts): a command's
output captured and, on failure, its last line; and ``Missing``, a prerequisite of the
machine's that is not there, said in one line each without a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

E2E = Path(__file__).resolve().parent.parent
REPO = E2E.parent


class Missing(Exception):
    """A prerequisite is missing: one line each, no traceback."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    out = lines[-1] if lines else ""
    return out if len(out) <= limit else out[: limit - 3] + "..."


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; on failure raise with the command and its last line."""
    proc = subprocess.run(list(cmd), env=env, timeout=timeout, input=input, text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exit {proc.returncode}: {one_line(proc.stderr or proc.stdout)}")
    return proc
