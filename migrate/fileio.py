"""Files the operator names on the command line: plans, values, runbooks, policies.

Read only when they are regular files (a FIFO would block for ever, ``/dev/zero`` never
ends), written atomically (a temporary file beside the target, then a rename) and only
onto a regular file or nothing: renaming over ``/dev/full`` would replace the device. A
symbolic link is followed, so the file it points to is replaced and the link kept. Every
defect is one ``BadInput`` line naming the file and what it is for.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from migrate.errors import BadInput


def read_text(path: Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at ``path``, at most ``max_bytes`` long."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once, so it can be refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BadInput(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise BadInput(f"{what} {path} is a directory")
        raise BadInput(f"{what} {path} is not a regular file ({_kind(mode)})")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise BadInput(f"{what} {path} is larger than {_size(max_bytes)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text") from None


def check_target(path: Path, what: str) -> Path:
    """Where ``write_text`` would write: ``path``, or the file its link points to. Refuses,
    before anything is written anywhere, a target that is not a regular file."""
    target = Path(os.path.realpath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        if not target.parent.is_dir() and target.parent.exists():
            raise BadInput(f"cannot write {what} {path}: {target.parent} is not a directory") from None
        return target
    except OSError as exc:
        raise BadInput(f"cannot write {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise BadInput(f"cannot write {what} {path}: it is a directory")
    if not stat.S_ISREG(mode):
        raise BadInput(f"cannot write {what} {path}: it is not a regular file ({_kind(mode)})")
    return target


def write_text(path: Path, text: str, what: str, *, mode: int = 0o600) -> None:
    """Replace (or create) the file at ``path`` with ``text``, all or nothing."""
    target = check_target(path, what)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BadInput(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 else f"{n} bytes"
