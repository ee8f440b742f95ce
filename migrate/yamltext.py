"""Block-style YAML for plain records (dict, list, str, int, bool, None), fast.

PyYAML spends most of a 5,000-node plan's time in its Python representer, even with
libyaml's C emitter (3.3 s for the 1.9 MB plan; this module: a tenth of that). Records
here are small trees of a few types, so the text is written directly:

- mappings and sequences in block style, two-space indent, sequences under a key at the
  key's indent (PyYAML's ``default_flow_style=False`` layout); ``{}`` / ``[]`` when empty;
- a string is written plain when that is unambiguous (no leading indicator, no ``": "`` or
  ``" #"``, no control or non-ASCII character, and YAML's resolver reads it back as a
  string: not ``yes``, ``1:30``, ``0x1f``, ``null`` ...), else double-quoted;
- anything else (floats, odd characters) is handed to PyYAML for that one scalar.

The contract, tested with hypothesis: ``yaml.safe_load(dump(r)) == r`` for every record.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"
# Plain-safe: starts with a letter, digit or one of _./( and holds only printable ASCII
# without the characters that start YAML syntax inside a block scalar line.
_PLAIN = re.compile(r"[A-Za-z0-9_./(][A-Za-z0-9 _./()=+,;:<>~@%$^'-]*\Z")
# Most strings of a plan (names, step ids, kinds) are identifiers: a letter first, then
# letters, digits and _./- . YAML's resolver reads those as strings unless they are one of
# its bool or null words, so they skip it (and those words, in any case, take the slow path).
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*\Z")
_WORDS = frozenset(("yes", "no", "true", "false", "on", "off", "null", "y", "n"))
# Double-quoted by JSON's rules is valid YAML when every character is printable ASCII.
_JSON_SAFE = re.compile(r"[\x00-\x7e]*\Z")


def dump(record: Any) -> str:
    """The YAML document for ``record``, ending in a newline."""
    lines: list[str] = []
    if isinstance(record, Mapping) and record:
        _mapping(record, 0, lines)
    elif isinstance(record, (list, tuple)) and record:
        _sequence(record, 0, lines)
    else:  # a lone scalar: quoted, since a plain "..." on column 0 would end the document
        lines.append(_by_pyyaml(record) if isinstance(record, str) else _scalar(record))
    lines.append("")
    return "\n".join(lines)


def _mapping(m: Mapping[Any, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, value in m.items():
        head = f"{pad}{_scalar(key)}:"
        if isinstance(value, Mapping) and value:
            out.append(head)
            _mapping(value, indent + 2, out)
        elif isinstance(value, (list, tuple)) and value:
            out.append(head)
            _sequence(value, indent, out)
        else:
            out.append(f"{head} {_scalar(value)}")


def _sequence(items: list[Any] | tuple[Any, ...], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, (Mapping, list, tuple)) and item:
            start = len(out)
            if isinstance(item, Mapping):
                _mapping(item, indent + 2, out)
            else:
                _sequence(item, indent + 2, out)
            # The item's first line moves up beside its dash: "- key: value".
            out[start] = f"{pad}- {out[start][indent + 2 :]}"
        else:
            out.append(f"{pad}- {_scalar(item)}")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{}"  # only empty collections reach here
    if isinstance(value, (list, tuple)):
        return "[]"
    return _by_pyyaml(value)


@functools.lru_cache(maxsize=4096)
def _string(s: str) -> str:
    if _IDENT.match(s) and s.lower() not in _WORDS:
        return s
    if (
        _PLAIN.match(s)
        and not s.endswith((" ", ":"))
        and ": " not in s
        and " #" not in s
        and _RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) == _STR_TAG
    ):
        return s
    if _JSON_SAFE.match(s):
        return json.dumps(s)
    return _by_pyyaml(s)


def _by_pyyaml(value: Any) -> str:
    text = yaml.dump(value, Dumper=_Dumper, default_style='"' if isinstance(value, str) else None, width=2**31 - 1)
    return text.removesuffix("\n").removesuffix("\n...").strip()
