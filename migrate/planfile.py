"""Reading and writing plan files (YAML, mode 0600). Every defect is one ``BadInput`` line."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from migrate import yamltext
from migrate.errors import BadInput
from migrate.plan import Plan

MAX_PLAN_BYTES = 64 * 2**20
# libyaml's C parser when PyYAML has it (the wheels do): 5,000-node plans are big.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(plan: Plan) -> str:
    return yamltext.dump(plan.to_record())


def write(plan: Plan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dump(plan))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path: Path) -> Plan:
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise BadInput(f"plan file {path} is larger than {MAX_PLAN_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"plan file {path} does not exist") from None
    except IsADirectoryError:
        raise BadInput(f"plan file {path} is a directory") from None
    except UnicodeDecodeError:
        raise BadInput(f"plan file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read plan file {path}: {exc.strerror}") from None
    try:
        record = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInput(f"plan file {path} is not valid YAML{where}") from None
    except RecursionError:
        raise BadInput(f"plan file {path} is nested too deeply to be a plan") from None
    if record is None:
        raise BadInput(f"plan file {path} is empty")
    return Plan.from_record(record)
