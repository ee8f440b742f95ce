"""The questions a run asks between waves and nodes: the maintenance window's end, the
guided run's prompts (continue, skip, pause, roll back a wave, abort), and one gate made
of several. Gates are the executor's ``WaveGate`` / ``NodeGate`` callbacks; a stop is an
``Interrupted`` they raise (``Paused`` where the operator asked for it). A typo asks again;
Ctrl-C at a question stops the run there (``migrate.cli.app.ask``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from migrate.errors import Paused
from migrate.estimate import estimate
from migrate.executor import CONTINUE, GateAnswer, NodeGate, WaveGate, last_migrated_wave, skippable
from migrate.journal import NodeState, RunState
from migrate.plan import NodePlan, Plan, Wave
from migrate.ports import SystemClock
from migrate.window import duration, wave_fits, wave_seconds_left


def window_gate(plan: Plan, end: datetime, clock: SystemClock, say: Callable[[str], None]) -> WaveGate:
    """Stop at a wave boundary when the next wave would not finish before the window ends,
    by the runbook's estimator (``migrate.estimate``): a parallel wave as long as its slowest node."""
    est = estimate(plan)

    def gate(wave: Wave, state: RunState) -> None:
        fits, needed = wave_fits(clock.now(), end, plan, wave, state, est)
        if fits:
            return
        ahead = [w for w in plan.waves if w.index >= wave.index]
        left = sum(1 for w in ahead for n in w.nodes if state.nodes[n.name].state is not NodeState.MIGRATED)
        rest = sum(wave_seconds_left(plan, w, state, est) for w in ahead)
        raise Paused(
            f"the window ends at {end.isoformat(timespec='minutes')}: wave {wave.index} needs about "
            f"{duration(int(needed))}; stopped before it with {left} node(s) left in {len(ahead)} wave(s) "
            f"(about {duration(int(rest))}); continue with 'cni-migrate resume' in the next window"
        )

    return gate


# Asks one question and returns the answer as typed (``migrate.cli.app.ask`` on a console).
Ask = Callable[[str, str | None], str]


def choose(ask: Ask, say: Callable[[str], None], choices: dict[str, str]) -> str:
    """Ask one question; each choice is answered by its first letter; ask again on anything else."""
    prompt = ", ".join(f"[{key}]{label[1:]}" for key, label in choices.items())
    while True:
        answer = ask(prompt, next(iter(choices))).strip().lower()[:1]
        if answer in choices:
            return answer
        say(f"  please answer one of: {', '.join(choices)}")


def pick(ask: Ask, say: Callable[[str], None], question: str, names: list[str]) -> str:
    """Ask for one of ``names`` by name; ask again on anything else (a typo must not stop
    a window's run, nor skip another node)."""
    while True:
        name = ask(f"{question} ({', '.join(names)})", None).strip()
        if name in names:
            return name
        say(f"  {name!r} is not one of: {', '.join(names)}")


def stop_if_asked(choice: str, where: str) -> None:
    if choice == "p":
        raise Paused(f"paused {where}; continue with 'cni-migrate resume'")
    if choice == "a":
        raise Paused(f"aborted {where}; 'cni-migrate rollback' undoes what was done")


def guided_gate(ask: Ask, say: Callable[[str], None], plan: Plan) -> WaveGate:
    """Before each wave: continue, skip a node, pause (resumable), roll back the last
    migrated wave (the one rollback would undo first, named with its nodes), or abort."""

    def gate(wave: Wave, state: RunState) -> GateAnswer | None:
        todo = [n.name for n in wave.nodes if state.nodes[n.name].state is not NodeState.MIGRATED]
        say(f"next: wave {wave.index}{' (canary)' if wave.canary else ''}: {', '.join(todo)}")
        say("  each node: cordon -> drain -> swap-cni -> validate -> uncordon")
        last = last_migrated_wave(plan, state)
        fresh = [n for n in todo if skippable(state, n)]
        choices = {"c": "continue"}
        if fresh:
            choices["s"] = "skip a node"
        choices["p"] = "pause (resume later)"
        if last is not None:
            choices["r"] = f"roll back wave {last[0].index} ({', '.join(last[1])})"
        choices["a"] = "abort"
        choice = choose(ask, say, choices)
        if choice == "s":
            return GateAnswer(skip=(pick(ask, say, "  node to skip", fresh),))
        if choice == "r" and last is not None:
            return GateAnswer(rollback_wave=last[0].index)
        stop_if_asked(choice, f"before wave {wave.index}")
        return None

    return gate


def node_gate(ask: Ask, say: Callable[[str], None]) -> NodeGate:
    """With --confirm-each-node: before a node is cordoned, continue, skip it, pause or abort."""

    def gate(wave: Wave, node: NodePlan, state: RunState) -> GateAnswer | None:
        role = "control-plane node" if node.control_plane else "node"
        say(f"next: {role} {node.name} (wave {wave.index}): cordon -> drain -> swap-cni -> validate -> uncordon")
        choice = choose(ask, say, {"c": "continue", "s": "skip this node", "p": "pause (resume later)", "a": "abort"})
        if choice == "s":
            return GateAnswer(skip=(node.name,))
        stop_if_asked(choice, f"before {node.name}")
        return None

    return gate


def chain(*gates: WaveGate | None) -> WaveGate | None:
    """One gate asking each in turn; the first that skips, rolls back or stops wins."""
    live = [g for g in gates if g is not None]
    if not live:
        return None

    def gate(wave: Wave, state: RunState) -> GateAnswer | None:
        for g in live:
            answer = g(wave, state)
            if answer is not None and answer != CONTINUE:
                return answer
        return None

    return gate
