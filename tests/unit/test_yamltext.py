"""The plan's YAML writer: whatever it writes, YAML reads back as the same record."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate import yamltext
from migrate.backends import simworld
from migrate.backends.simulated import SimStore
from migrate.plan import PlanOptions, Target
from migrate.planner import build_plan

# Strings that look like other YAML types, or hold YAML syntax, next to arbitrary text.
TRICKY = st.sampled_from(
    [
        "",
        " ",
        "yes",
        "No",
        "on",
        "null",
        "~",
        "true",
        "1:30",
        "0x1f",
        "0o17",
        "017",
        "1e3",
        "1.5",
        ".inf",
        "2026-12-01",
        "=",
        "<<",
        "-",
        "- a",
        "---",
        "...",
        "a: b",
        "a #b",
        "#a",
        "a:",
        "key:value",
        "sha256:ab",
        "'q'",
        '"q"',
        "[x]",
        "{x}",
        "&a",
        "*a",
        "!t",
        "|",
        ">",
        "%x",
        "@x",
        "`x",
        "a\nb",
        "tab\there",
        "\x7f",
        "é",
        "\u2028",
        "\x85",
        "😀",
        "trailing ",
        " leading",
        "10.245.0.0/16",
        "node-00001",
        "(x)",
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), TRICKY, st.text(max_size=12), st.text(alphabet="ab :#-", max_size=6)
)
RECORDS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(TRICKY, st.text(max_size=6)), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=600, deadline=None)
@given(RECORDS)
def test_round_trip(record: object) -> None:
    assert yaml.safe_load(yamltext.dump(record)) == record


def test_plan_reads_back_and_stays_reviewable(tmp_path: Path) -> None:
    cluster = SimStore(tmp_path).create("demo", simworld.default_world("demo"))
    plan = build_plan(
        cluster.inventory(), PlanOptions(force=True, delete_emptydir_data=True), Target("sim", "demo", "")
    )
    record = plan.to_record()
    text = yamltext.dump(record)
    assert yaml.safe_load(text) == record
    # The layout a reviewer sees from PyYAML's block style: plain names, nested lists.
    assert text.startswith("apiVersion: cni-migrate.io/v1\nkind: MigrationPlan\nmetadata:\n")
    assert "\n  - name: worker-1\n" in text
    assert "    steps:\n    - id: worker-1/cordon\n      kind: cordon\n" in text
    # Messages stay on one line, quoted where YAML needs it.
    assert '  message: "bare pod: no controller re-creates it: default/debug"\n' in text


def test_layout_matches_pyyaml_block_style() -> None:
    record = {"a": [{"b": 1, "c": [1, 2]}, [3, [4]], "x"], "d": {}, "e": [], "f": {"g": None, "h": True}}
    assert yamltext.dump(record) == yaml.safe_dump(record, sort_keys=False, default_flow_style=False)
