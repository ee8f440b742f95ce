"""Prompts a person can trust (issue 29), on a terminal as the operator sees it: the
question stays on screen under the live progress bar, a typo asks again, Ctrl-C at a
question stops the run as anywhere else, the guided choices say what they would do, a soak
counts down, a pause is not an error, and a resumed run's bar counts what was done."""

from __future__ import annotations

import json
import re

import yaml

from tests.cli.terminal import CHOICES, CONFIRM, Terminal

PLAN = ("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml")


def states(cli) -> dict[str, str]:
    return {n["name"]: n["state"] for n in json.loads(cli("status", "p.yaml", "-o", "json").out)["nodes"]}


def run_status(cli) -> str:
    return json.loads(cli("status", "p.yaml", "-o", "json", "--offline").out)["run"]


def waves(cli) -> list[list[str]]:
    return [[n["name"] for n in w["nodes"]] for w in yaml.safe_load((cli.cwd / "p.yaml").read_text())["waves"]]


def test_the_confirmation_question_stays_on_screen_under_the_progress_bar(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    term = Terminal(cli, "apply", "p.yaml")
    assert term.expect(CONFIRM) == 0, term.text()
    term.answer("y")
    assert term.wait() == 0, term.text()
    # The bar was live before the question and after it: the question and its answer are
    # still on the screen, not drawn over by a refresh of the bar.
    assert re.search(r"Apply plan \w+ to sim://c1 \(4 nodes, 4 waves\)\? \[y/N\]: y$", term.text(), re.M), term.text()
    assert "20/20" in term.text()


def test_ctrl_c_at_the_confirmation_stops_before_anything_is_written(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    term = Terminal(cli, "apply", "p.yaml")
    term.expect(CONFIRM)
    term.ctrl_c()
    assert term.wait() == 5, term.text()
    assert "Traceback" not in term.text()
    assert run_status(cli) == "not-started"
    assert set(states(cli).values()) == {"pending"}


def test_ctrl_c_at_a_guided_question_stops_the_run_cleanly_at_once_and_it_resumes(cli):
    """Before: the first Ctrl-C was swallowed by the prompt, the second left the journal
    'running'. Now the first stops the run at that boundary, as Ctrl-C anywhere does."""
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    term = Terminal(cli, "apply", "p.yaml", "--guided")
    term.expect(CHOICES)
    term.answer("c")  # the canary
    term.expect(CHOICES)  # before wave 2
    term.ctrl_c()
    assert term.expect(CHOICES) == 1, f"asked again after Ctrl-C:\n{term.text()}"
    assert term.child.wait() == 5, term.text()
    assert "Traceback" not in term.text()
    assert "stopped at the prompt: received SIGINT" in term.text(), term.text()
    assert run_status(cli) == "interrupted"
    assert states(cli) == {"worker-1": "migrated", "worker-2": "pending", "worker-3": "pending", "cp-1": "pending"}
    nodes = json.loads(cli("sim", "show", "c1", "-o", "json").out)["nodes"]
    assert not any(n["unschedulable"] for n in nodes), "a node of the stopped wave was left cordoned"
    assert cli("resume", "p.yaml", "--yes").code == 0
    assert set(states(cli).values()) == {"migrated"}


def test_a_typo_at_node_to_skip_asks_again_instead_of_stopping_the_run(cli):
    cli("sim", "create", "c1", "--nodes", "6")
    cli(*PLAN[:-2], "--max-unavailable", "2", "--out", "p.yaml")
    plan = waves(cli)
    first, second = plan[1]
    term = Terminal(cli, "apply", "p.yaml", "--guided")
    term.answer_all(["c", "s", "worker-99", first, *(["c"] * (len(plan) - 2))])
    assert term.wait() == 5, term.text()
    assert "'worker-99' is not one of:" in term.text()
    assert term.text().count("node to skip (") == 2
    assert f"1 node(s) skipped by the operator ({first})" in term.text()
    assert states(cli)[first] == "pending" and states(cli)[second] == "migrated"


def test_a_typo_at_the_choices_asks_again(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    term = Terminal(cli, "apply", "p.yaml", "--guided")
    term.answer_all(["x", "c", "p"])
    assert term.wait() == 5, term.text()
    assert "please answer one of: c, s, p, a" in term.text()
    assert states(cli)["worker-1"] == "migrated"


def test_roll_back_is_offered_for_the_last_migrated_wave_not_an_earlier_one(cli):
    """Skip a node of wave 2, finish the others, resume: the question before wave 2 used
    to offer 'roll back wave 1' (the canary) while waves 2 and 3 had migrated nodes. It
    offers the wave a rollback would undo first, names its nodes, and does just that."""
    cli("sim", "create", "c1", "--nodes", "6")
    cli(*PLAN[:-2], "--max-unavailable", "2", "--out", "p.yaml")
    plan = waves(cli)
    assert len(plan) == 4 and len(plan[1]) == 2 and len(plan[2]) == 2, plan
    skipped, migrated = plan[1]
    term = Terminal(cli, "apply", "p.yaml", "--guided")
    term.answer_all(["c", "s", skipped, "c", "c"])
    assert term.wait() == 5, term.text()
    assert states(cli)[skipped] == "pending" and states(cli)["cp-1"] == "migrated"

    term = Terminal(cli, "resume", "p.yaml", "--guided")
    term.expect(CHOICES)
    offered = term.text().splitlines()[-1]
    assert "roll back wave 1" not in offered
    assert "[r]oll back wave 4 (cp-1)" in offered, offered
    term.answer("r")
    assert term.wait() == 5, term.text()
    assert "rolled back wave 4 (cp-1)" in term.text()
    after = states(cli)
    assert after["cp-1"] == "rolled-back" and after["worker-1"] == "migrated" and after[migrated] == "migrated"
    assert all(after[n] == "migrated" for n in plan[2])


def test_an_intentional_pause_is_not_printed_as_an_error(cli):
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    result = cli("apply", "p.yaml", "--yes", "--pause-after-canary")
    assert result.code == 5
    assert result.err.strip().splitlines() == [
        "paused after the canary wave 1 (worker-1): check it, then continue with 'cni-migrate resume'"
    ]
    term = Terminal(cli, "resume", "p.yaml", "--guided")
    term.answer_all(["p"])
    assert term.wait() == 5
    assert "paused before wave 2" in term.text() and "error:" not in term.text(), term.text()


def test_a_soak_counts_down_on_a_terminal_and_says_when_it_ends_in_a_log(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    cli(*PLAN)
    assert len(waves(cli)) == 3
    term = Terminal(cli, "apply", "p.yaml", "--yes", "--soak", "2s")
    assert term.wait() == 0, term.text()
    # The bar's countdown column, drawn as the soak begins and redrawn while it runs.
    assert re.search(rb"soaking 2s before wave 2 .*\b[12]s left", term.raw), term.raw[-2000:]
    assert re.search(r"^soaking 2s before wave 3 \(until \d\d:\d\d:\d\d\)$", term.text(), re.M), term.text()

    cli("sim", "create", "c2", "--nodes", "3")
    cli("plan", "--sim", "c2", "--force", "--delete-emptydir-data", "--out", "q.yaml")
    result = cli("apply", "q.yaml", "--yes", "--soak", "1s")
    assert result.code == 0, result.err
    assert re.search(r"^soaking 1s before wave 2 \(until \d\d:\d\d:\d\d\)$", result.out, re.M), result.out


def test_a_resumed_run_counts_the_steps_done_before_and_ends_full(cli):
    """Before: a resume's bar started at 0 and ended at 15/20."""
    cli("sim", "create", "c1", "--nodes", "4")
    cli(*PLAN)
    assert cli("apply", "p.yaml", "--yes", "--pause-after-canary").code == 5
    term = Terminal(cli, "resume", "p.yaml", "--yes")
    assert term.wait() == 0, term.text()
    bars = re.findall(r"(\d+)/20", term.text())
    assert bars and bars[-1] == "20", term.text()
    assert "15/20" not in term.text()
