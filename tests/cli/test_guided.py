"""Guided mode on a terminal: answers typed at the prompts, pause, resume."""

from __future__ import annotations

import json

import yaml

from tests.cli.terminal import Terminal


def run_in_pty(cli, args, answers):
    """Run the CLI on a terminal; each time a question appears, type the next answer."""
    term = Terminal(cli, *args)
    term.answer_all(answers)
    return term.wait(), term.text()


def test_guided_run_continues_the_canary_pauses_before_wave_two_and_resumes(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--max-unavailable", "2", "--out", "p.yaml")
    code, screen = run_in_pty(cli, ["apply", "p.yaml", "--guided"], ["c", "p"])
    assert code == 5, screen
    waves = yaml.safe_load((cli.cwd / "p.yaml").read_text())["waves"]
    second = ", ".join(n["name"] for n in waves[1]["nodes"])
    assert "next: wave 1 (canary): worker-1" in screen and f"next: wave 2: {second}" in screen
    assert "paused before wave 2" in screen
    nodes = {n["name"]: n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}
    assert nodes == {"worker-1": "migrated", "worker-2": "pending", "worker-3": "pending", "cp-1": "pending"}
    code, screen = run_in_pty(cli, ["resume", "p.yaml", "--guided"], ["c"] * (len(waves) - 1))
    assert code == 0, screen
    nodes = {n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}
    assert nodes == {"migrated"}


def states(cli):
    return {n["name"]: n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}


def test_guided_each_node_skip_then_roll_back_a_wave_then_resume(cli):
    cli("sim", "create", "c2", "--nodes", "6")
    cli("plan", "--sim", "c2", "--force", "--delete-emptydir-data", "--max-unavailable", "2", "--out", "p.yaml")
    waves = [[n["name"] for n in w["nodes"]] for w in yaml.safe_load((cli.cwd / "p.yaml").read_text())["waves"]]
    assert waves[0] == ["worker-1"] and len(waves[1]) == 2, waves
    first, second = waves[1]
    # wave 1: continue, worker-1: continue; wave 2: continue, first: skip, second: continue;
    # wave 3 (cp-1): roll back wave 2.
    answers = ["c", "c", "c", "s", "c", "r"]
    code, screen = run_in_pty(cli, ["apply", "p.yaml", "--guided", "--confirm-each-node"], answers)
    assert code == 5, screen
    assert f"next: node {first} (wave 2)" in screen and "[s]kip this node" in screen
    assert "[r]oll back wave 2" in screen
    assert "rolled back wave 2" in screen
    rest = {n: "pending" for w in waves[2:] for n in w}
    assert states(cli) == {"worker-1": "migrated", first: "pending", second: "rolled-back", **rest}
    nodes = {n["name"]: n for n in json.loads(cli("sim", "show", "c2", "-o", "json").out)["nodes"]}
    cilium = {n: (v["cni"], v["unschedulable"]) for n, v in nodes.items()}
    assert cilium == {n: ("cilium" if n == "worker-1" else "calico", False) for n in cilium}
    # Skip a node at the wave prompt (typed by name), then finish it on the next resume.
    answers = ["s", second, *(["c"] * (len(waves) - 2))]
    code, screen = run_in_pty(cli, ["resume", "p.yaml", "--guided"], answers)
    assert code == 5, screen
    assert f"1 node(s) skipped by the operator ({second})" in screen
    assert states(cli)[second] == "pending" and states(cli)[first] == "migrated"
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert set(states(cli).values()) == {"migrated"}


def test_guided_pause_after_canary_stops_once(cli):
    cli("sim", "create", "c3", "--nodes", "4")
    cli("plan", "--sim", "c3", "--force", "--delete-emptydir-data", "--out", "p.yaml")
    result = cli("apply", "p.yaml", "--yes", "--pause-after-canary")
    assert result.code == 5 and "paused after the canary wave 1 (worker-1)" in result.err, result
    result = cli("resume", "p.yaml", "--yes", "--pause-after-canary", "--soak", "0s")
    assert result.code == 0, result
