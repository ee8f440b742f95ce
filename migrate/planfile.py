"""Reading and writing plan files (YAML, mode 0600). Every defect is one ``BadInput`` line."""

from __future__ import annotations

from pathlib import Path

import yaml

from migrate import fileio, yamltext
from migrate.errors import BadInput
from migrate.plan import Plan

MAX_PLAN_BYTES = 64 * 2**20
# libyaml's C parser when PyYAML has it (the wheels do): 5,000-node plans are big.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(plan: Plan) -> str:
    return yamltext.dump(plan.to_record())


def write(plan: Plan, path: Path) -> None:
    fileio.write_text(path, dump(plan), "plan file")


def read(path: Path) -> Plan:
    text = fileio.read_text(path, "plan file", MAX_PLAN_BYTES)
    try:
        record = _load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInput(f"plan file {path} is not valid YAML{where}") from None
    except RecursionError:
        raise BadInput(f"plan file {path} is nested too deeply to be a plan") from None
    except _AliasFound as exc:
        raise BadInput(
            f"plan file {path} uses YAML anchors and aliases (line {exc.line}): plans never hold them; "
            "re-run 'cni-migrate plan'"
        ) from None
    if record is None:
        raise BadInput(f"plan file {path} is empty")
    return Plan.from_record(record)


class _AliasFound(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _load(text: str) -> object:
    """The YAML document, refused if a node is reached twice (an alias): cni-migrate never
    writes one, and a few kilobytes of nested aliases expand to gigabytes. Text without
    ``&`` or ``*`` holds no anchor, so the common case costs nothing more."""
    if "&" not in text and "*" not in text:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        seen: set[int] = set()
        todo = [node]
        while todo:
            current = todo.pop()
            if id(current) in seen:
                raise _AliasFound(current.start_mark.line + 1)
            seen.add(id(current))
            if isinstance(current, yaml.MappingNode):
                for key, value in current.value:
                    todo += (key, value)
            elif isinstance(current, yaml.SequenceNode):
                todo += current.value
        return loader.construct_document(node)
    finally:
        loader.dispose()
