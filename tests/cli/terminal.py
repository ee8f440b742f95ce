"""The CLI on a terminal, as an operator sees it: a pseudo-terminal that is the process's
controlling terminal (so Ctrl-C typed there is a SIGINT from the line discipline, as at a
real keyboard), questions answered as they appear, and the screen as a VT100 would show it
(pyte), cursor movements and erased lines included: what the live progress bar draws over
is gone from ``screen()``, as it would be from the operator's eyes."""

from __future__ import annotations

import re

import pexpect
import pyte

from tests.cli.conftest import CLI

ROWS, COLUMNS = 60, 200
# The questions of a guided run: the wave's and node's choices, the node to skip.
CHOICES = re.compile(rb"\[c\]ontinue[^\n]*\[c\]: ")
NODE_TO_SKIP = re.compile(rb"node to skip \([^)\n]*\): ")
CONFIRM = re.compile(rb"\[y/N\]: ")


class Terminal:
    def __init__(self, cli: CLI, *args: str, timeout: float = 60) -> None:
        env = {**cli.env, "COLUMNS": str(COLUMNS), "LINES": str(ROWS), "TERM": "xterm"}
        self.child = pexpect.spawn(
            cli.base[0], [*cli.base[1:], *args], cwd=str(cli.cwd), env=env, dimensions=(ROWS, COLUMNS), timeout=timeout
        )
        self.raw = b""  # everything the process wrote, escape sequences included
        self._screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10_000)
        self._stream = pyte.ByteStream(self._screen)

    def _feed(self, data: bytes) -> None:
        self.raw += data
        self._stream.feed(data)

    def expect(self, *patterns: re.Pattern[bytes] | bytes) -> int:
        """Wait for one of ``patterns`` (or the end of the output, index ``len(patterns)``)."""
        index = self.child.expect([*patterns, pexpect.EOF])
        self._feed(self.child.before + (self.child.after if isinstance(self.child.after, bytes) else b""))
        return int(index)

    def answer(self, text: str) -> None:
        self.child.sendline(text)

    def ctrl_c(self) -> None:
        """Ctrl-C typed at the terminal: the line discipline sends SIGINT to the process."""
        self.child.sendintr()

    def answer_all(self, answers: list[str]) -> None:
        """Answer each guided question as it appears, in order; then read to the end."""
        pending = list(answers)
        while self.expect(CHOICES, NODE_TO_SKIP) < 2:
            assert pending, f"a question with no answer left:\n{self.text()}"
            self.answer(pending.pop(0))
        assert not pending, f"the run ended with answers left {pending}:\n{self.text()}"

    def wait(self) -> int:
        """Read to the end; the exit code."""
        self.expect()
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -(self.child.signalstatus or 0))

    def text(self) -> str:
        """Everything the terminal shows, scrolled-off lines included: what was drawn over
        (erased) is not in it."""
        top = ["".join(row[x].data for x in range(COLUMNS)).rstrip() for row in self._screen.history.top]
        return "\n".join(top + [line.rstrip() for line in self._screen.display]).strip("\n")
