"""Every hook point sends the one schema hooks/README.md documents: a recording hook at each
point of a real (simulated) run, and what it received held to the README's two tables, read
from the README itself, so the documentation and the code cannot drift apart."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from migrate.hooks import HookPoint

README = Path(__file__).resolve().parents[2] / "hooks" / "README.md"

RECORDER = """#!{python}
import json, os, sys
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_MIGRATE_")}}
record = {{"env": env, "stdin": json.load(sys.stdin)}}
with open(os.environ["HOOK_RECORD"], "a") as f:
    f.write(json.dumps(record) + "\\n")
"""


def tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of ``text``: each a list of rows of cells, header first."""
    found: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                rows.append(cells)
        elif rows:
            found.append(rows)
            rows = []
    return found


def code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def documented() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The README's schema: {stdin key: variable ("" for none)}, and {point: {key: JSON
    value with placeholders}}."""
    all_tables = tables(README.read_text())
    keys = next(t for t in all_tables if t[0][:2] == ["Key", "Variable"])
    variables = {code(row[0]): code(row[1]) if row[1] else "" for row in keys[1:]}
    points = next(t for t in all_tables if t[0][0] == "Point" and "`outcome`" in t[0])
    header = [code(c) for c in points[0][1:]]
    values = {code(row[0]): dict(zip(header, (code(c) for c in row[1:]), strict=True)) for row in points[1:]}
    return variables, values


def expected(cell: str, node: str, wave: int, step: str) -> object:
    """A documented value with its placeholders filled in; ``<why>`` stays for the caller."""
    return json.loads(cell.replace("<node>", node).replace("<wave>", str(wave)).replace("<step>", step))


def test_the_readme_documents_every_point_and_the_same_keys_for_each():
    variables, values = documented()
    assert set(values) == {p.value for p in HookPoint}
    assert all(set(row) == set(variables) - {"hook", "plan_id"} for row in values.values())


@pytest.mark.parametrize("point", [p.value for p in HookPoint])
def test_each_hook_point_sends_the_documented_schema(cli, point):
    failing = point == HookPoint.ON_FAILURE
    sim = ("sim", "create", "c1", "--nodes", "3", *(("--fail-validation-on", "worker-1") if failing else ()))
    assert cli(*sim).code == 0
    assert cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml").code == 0
    hooks = cli.cwd / "hooks"
    hooks.mkdir()
    recorder = hooks / f"{point}.record"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    record = cli.cwd / "record.jsonl"
    result = cli("apply", "p.yaml", "--yes", "--hooks-dir", "hooks", env={"HOOK_RECORD": str(record)})
    assert result.code == (4 if failing else 0), result.err
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls, f"the {point} hook never ran"
    got = calls[0]  # the first call: the run's own, or the canary worker-1's (wave 1)

    variables, values = documented()
    plan_id = json.loads(cli("status", "p.yaml", "-o", "json", "--offline").out)["planId"]
    stdin = got["stdin"]
    assert set(stdin) == set(variables), "stdin keys differ from the README's table"
    assert stdin["hook"] == point and stdin["plan_id"] == plan_id
    for key, cell in values[point].items():
        if cell == '"<why>"':
            assert isinstance(stdin[key], str) and "worker-1" in stdin[key], (key, stdin[key])
        else:
            assert stdin[key] == expected(cell, "worker-1", 1, "validate"), (point, key, stdin[key], cell)

    # The variables: exactly the documented ones were added, each the stdin value as text.
    added = {k for k in got["env"] if k not in cli.env}
    assert added == {v for v in variables.values() if v}, added
    for key, var in variables.items():
        if var:
            value = stdin[key]
            assert got["env"][var] == ("" if value is None else str(value)), (var, got["env"][var], value)
