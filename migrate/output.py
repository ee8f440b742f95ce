"""Everything users and machines read: plan summaries, status tables, json/yaml, logs.

The engine emits ``Event`` objects; this module turns them into console lines (a live
rich progress view on a terminal, plain lines otherwise), structured JSON lines via
structlog (the audit log next to the checkpoints, and stderr with ``--log-format json``),
and Kubernetes Events on nodes (through the cluster adapter).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import structlog

from migrate import reconcile, yamltext
from migrate.errors import BadInput, JournalUnwritable
from migrate.estimate import ASSUMED_PODS_PER_NODE, estimate
from migrate.journal import NodeRun, NodeState, RunState, RunStatus, StepStatus
from migrate.model import HANDOFF_LABEL, DeploymentInfo, PodInfo
from migrate.plan import Plan, Severity
from migrate.policy import PolicyVerdict
from migrate.ports import Cluster, Event
from migrate.reconcile import LiveNode
from migrate.steps.surge import unreadable
from migrate.window import duration


# -- formats ----------------------------------------------------------------------------------
def render(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    if fmt == "yaml":
        return yamltext.dump(data)
    raise ValueError(fmt)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h).upper() for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in cells)


# -- plan --------------------------------------------------------------------------------------
def plan_summary(plan: Plan, path: Path | None = None) -> str:
    lines = [f"Plan {plan.id} for {plan.target.backend} {plan.target.name} ({plan.cluster.server})"]
    if path is not None:
        lines[0] += f" written to {path}"
    o = plan.options
    # The runbook's and the window gate's estimate (migrate.estimate), not a third one.
    est = estimate(plan)
    lines.append(
        f"  {len(plan.nodes)} node(s) in {len(plan.waves)} wave(s); max unavailable {o.max_unavailable}, "
        f"canary {o.canary}, drain timeout {o.drain_timeout_seconds}s"
    )
    for wave in plan.waves:
        label = " (canary)" if wave.canary else ""
        names = ", ".join(n.name for n in wave.nodes)
        lines.append(f"  wave {wave.index}{label}: {names} (about {duration(est.waves[wave.index])})")
    if plan.nodes:
        lines.append(
            f"  estimated duration: about {duration(est.total)} ({ASSUMED_PODS_PER_NODE} pods per node assumed; "
            "the runbook shows the model)"
        )
    surging = [n for n in plan.nodes if n.surge]
    if surging:
        lines.append("  surge before evict (replacements Ready elsewhere first):")
        lines += [f"    {n.name}: {', '.join(n.surge)}" for n in surging]
    handing = [n for n in plan.nodes if n.handoff]
    if handing:
        lines.append("  hand off UDP backends (out of their Services before they stop):")
        lines += [
            f"    {n.name}: " + ", ".join(f"{h.deployment} ({', '.join(h.services)})" for h in n.handoff)
            for n in handing
        ]
    for name, reason in plan.excluded:
        lines.append(f"  not in plan: {name}: {reason}")
    if not plan.nodes:
        lines.append("  nothing to do: " + ("; ".join(sorted({r for _, r in plan.excluded})) or "no nodes"))
    lines.append("  steps per node: cordon -> drain -> swap-cni -> validate -> uncordon")
    for f in plan.findings:
        mark = "BLOCKING" if f.severity is Severity.BLOCKING else "warning "
        lines.append(f"  {mark} [{f.check}] {f.message}" + (f" -- fix: {f.fix}" if f.fix else ""))
    if not plan.findings:
        lines.append("  preflight: no findings")
    return "\n".join(lines)


def nodes_table(nodes: Sequence[Mapping[str, Any]]) -> str:
    """Nodes as ``sim show`` and the demo list them: name, CNI, cordoned, pods."""
    rows = [(n["name"], n["cni"], "yes" if n["unschedulable"] else "no", len(n["pods"])) for n in nodes]
    return table(("node", "cni", "cordoned", "pods"), rows)


def policy_table(verdicts: Sequence[PolicyVerdict], written: Sequence[str], directory: Path | None) -> str:
    """``policy-report``'s table, and a line counting each outcome (and the files written)."""
    rows = [
        (v.kind, f"{v.namespace}/{v.name}" if v.namespace else v.name, v.outcome, "; ".join(v.reasons))
        for v in verdicts
    ]
    counts = {k: sum(1 for v in verdicts if v.outcome == k) for k in ("kept", "translated", "untranslatable")}
    tally = ", ".join(f"{n} {k}" for k, n in counts.items())
    if directory:
        tally += f"; wrote {len(written)} file(s) to {directory}"
    return table(("kind", "policy", "outcome", "why"), rows) + "\n" + tally


# -- runs --------------------------------------------------------------------------------------
def run_summary(plan: Plan, state: RunState, requests: int | None) -> str:
    """The line apply and resume end with: nodes migrated, gone, the run's status, and the
    API requests made (where the backend counts them)."""
    done = sum(1 for r in state.nodes.values() if r.state.value == "migrated")
    gone = sorted(n for n, r in state.nodes.items() if r.state.value == "gone")
    load = f" ({requests} API requests)" if requests is not None else ""
    left = f", {len(gone)} gone from the cluster ({', '.join(gone)})" if gone else ""
    return f"plan {plan.id}: {done}/{len(state.nodes)} node(s) migrated{left}, run {state.status.value}{load}"


def rollback_summary(plan: Plan, state: RunState) -> str:
    back = sorted(n for n, r in state.nodes.items() if r.state.value == "rolled-back")
    return f"plan {plan.id}: rolled back {', '.join(back) or 'nothing'}; run {state.status.value}"


# -- status ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveView:
    """What status read from the cluster beside the journal: every node (one node list,
    read-only), who holds the executor lock, and why the cluster could not be read."""

    nodes: Mapping[str, LiveNode] | None = None  # None: not read (offline, or unreachable)
    error: str = ""
    executor: str = ""  # the lock's holder ("pid 4242", a Lease holder), "" when none holds it
    surges: tuple[DeploymentInfo, ...] = ()  # Deployments scaled up by a surge now (migrate.surge)
    handed_off: tuple[PodInfo, ...] = ()  # pods out of their UDP Services now (migrate.handoff)


def status_record(
    plan: Plan, state: RunState | None, live: LiveView | None = None, *, archived: bool = False
) -> dict[str, Any]:
    """The stable JSON shape of ``cni-migrate status -o json``: the journal's record of each
    node, the live node beside it (when read) and, for a node whose last step failed, the
    failure's particulars (step, check, observed, expected, attempt)."""
    live = live or LiveView()
    nodes = []
    for wave in plan.waves:
        for node in wave.nodes:
            run = state.nodes.get(node.name) if state else None
            journal = run.state if run else NodeState.PENDING
            seen = live.nodes.get(node.name) if live.nodes is not None else None
            nodes.append(
                {
                    "name": node.name,
                    "wave": wave.index,
                    "state": journal.value,
                    "lastStep": run.last_step if run else "",
                    "startedAt": run.started_at if run else "",
                    "finishedAt": run.finished_at if run else "",
                    "message": run.message if run else "",
                    "failure": _failure(run) if run else None,
                    "live": _live_node(seen) if live.nodes is not None else None,
                    "drift": reconcile.disagreement(plan, node.name, journal, live.nodes)
                    if live.nodes is not None
                    else "",
                }
            )
    status = state.status.value if state else "not-started"
    running = status == RunStatus.RUNNING.value
    return {
        "planId": plan.id,
        "cluster": plan.cluster.server,
        "run": status,
        # A run the journal calls running is alive only while an executor holds the lock;
        # else it died (kill -9, a lost machine) and resume continues it.
        "executor": {"alive": bool(live.executor), "holder": live.executor} if running else None,
        "archived": archived,  # the journal is this plan's last run, replaced since by another plan's
        "liveRead": live.nodes is not None,
        "liveError": live.error,
        # Cluster-level steps: before the first node (install-cilium) and after the last.
        "prepare": {str(k): str(v) for k, v in state.prepare.items()} if state else {},
        "finalize": {str(k): str(v) for k, v in state.finalize.items()} if state else {},
        # Deployments a surge has scaled up now: a live run's, or a killed one's that the
        # next apply, resume or rollback puts back first.
        "surges": [
            {
                "deployment": d.key,
                "replicas": d.replicas,
                "original": d.surge.original,
                "node": d.surge.node,
                "plan": d.surge.plan,
            }
            for d in live.surges
            if d.surge is not None
        ],
        # Pods a hand-off took out of their UDP Services: a live drain's, or a killed run's
        # that the next apply, resume or rollback deletes first.
        "handedOff": [
            {"pod": p.key, "node": p.node or "", "service": p.labels.get(HANDOFF_LABEL, "")} for p in live.handed_off
        ],
        # Deployments whose surge record cannot be read (edited by hand, truncated): apply,
        # resume and rollback refuse until an operator sets their count and removes it.
        "unreadableSurges": [
            {"deployment": d.key, "replicas": d.replicas, "annotation": d.unreadable_surge, "fix": unreadable(d)}
            for d in live.surges
            if d.unreadable_surge is not None
        ],
        "nodes": nodes,
    }


def _failure(run: NodeRun) -> dict[str, Any] | None:
    """The node's failed step, if its last forward or rollback pass ended in one."""
    failed = [(sid, r) for sid, r in run.steps.items() if r.status is StepStatus.FAILED]
    if not failed or run.state not in (NodeState.FAILED, NodeState.ROLLING_BACK, NodeState.ROLLED_BACK):
        return None
    sid, record = failed[-1]
    return {
        "step": sid,
        "kind": record.kind.value,
        "check": record.detail.get("check", ""),
        "observed": record.detail.get("observed", ""),
        "expected": record.detail.get("expected", ""),
        "tries": int(record.detail.get("tries", "1") or 1),
        "attempt": run.attempt,
        "at": record.finished_at,
        "message": record.message,
    }


def _live_node(node: LiveNode | None) -> dict[str, Any]:
    if node is None:
        return {"present": False}
    return {
        "present": True,
        "cni": "cilium" if node.labelled else "calico",  # by the migration label: status runs no node task
        "labelled": node.labelled,
        "cordoned": node.unschedulable,
        "ready": node.ready,
    }


def status_table(record: dict[str, Any]) -> str:
    live = record.get("liveRead")
    rows = []
    for n in record["nodes"]:
        row = [n["name"], n["wave"], n["state"], n["lastStep"] or "-", n["startedAt"] or "-", n["finishedAt"] or "-"]
        if live:
            seen = n["live"]
            if not seen["present"]:
                row.append("gone")
            else:
                parts = (
                    [seen["cni"]] + (["cordoned"] if seen["cordoned"] else []) + ([] if seen["ready"] else ["NotReady"])
                )
                row.append(", ".join(parts))
        failure = n.get("failure")
        message = n["message"]
        if n.get("drift"):
            message = f"{n['drift']}; {message}" if message else n["drift"]
        elif failure and failure["check"] and failure["check"] not in message:
            message = f"{failure['check']}: {message}"
        row.append(message)
        rows.append(tuple(row))
    run = record["run"]
    executor = record.get("executor")
    if executor is not None:
        run += (
            f" (executor {executor['holder']})"
            if executor["alive"]
            else " (no executor holds the lock: the run died; 'cni-migrate resume' continues it)"
        )
    if record.get("archived"):
        run += " (archived: another plan's run came after it)"
    head = f"plan {record['planId']}  cluster {record['cluster']}  run {run}\n"
    if record.get("liveError"):
        head += f"live cluster not read: {record['liveError']}\n"
    for s in record.get("surges", ()):
        head += (
            f"surged: {s['deployment']} at {s['replicas']} replicas (its own {s['original']}) for {s['node']}, "
            f"plan {s['plan']}; the next apply, resume or rollback puts it back\n"
        )
    for h in record.get("handedOff", ()):
        head += (
            f"handed off: {h['pod']} on {h['node']}, out of {h['service']}; "
            "the drain under way, or the next apply, resume or rollback, deletes it\n"
        )
    for s in record.get("unreadableSurges", ()):
        head += f"unreadable surge record: {s['fix']}; apply, resume and rollback refuse until then\n"
    for phase in ("prepare", "finalize"):
        if record.get(phase):
            head += f"{phase}: {', '.join(f'{k} {v}' for k, v in record[phase].items())}\n"
    columns = ("node", "wave", "state", "last step", "started", "finished", *(("live",) if live else ()), "message")
    return head + table(columns, rows)


# -- events ------------------------------------------------------------------------------------
def configure_logging(audit_path: Path | None, json_to_stderr: bool) -> Callable[[Event], None]:
    """structlog to a JSON audit file (always, when a path is given) and stderr (on request)."""
    audit: IO[str] | None = None
    if audit_path is not None:
        try:
            audit_path.parent.mkdir(parents=True, exist_ok=True)
            audit = open(audit_path, "a", encoding="utf-8")  # noqa: SIM115 - lives for the run
        except OSError as exc:
            raise BadInput(f"cannot write the audit log {audit_path}: {exc.strerror}; nothing was changed") from exc

    def write(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
        line = json.dumps(event_dict, sort_keys=True) + "\n"
        if audit is not None:
            try:
                audit.write(line)
                audit.flush()
            except OSError as exc:
                # The audit trail is part of the record: a run that cannot keep it stops.
                raise JournalUnwritable(
                    f"cannot write the audit log {audit_path}: {exc.strerror}; the run stopped after its last "
                    "recorded step: fix the state directory, then 'cni-migrate resume'"
                ) from exc
        if json_to_stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            write,
        ],
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger("cni-migrate")

    def emit(event: Event) -> None:
        fields = {k: v for k, v in vars(event).items() if v not in ("", 0, 0.0) and k != "kind"}
        if "duration" in fields:
            fields["duration"] = round(float(fields["duration"]), 3)
        if event.outcome == "failed":
            log.warning(event.kind, **fields)
        else:
            log.info(event.kind, **fields)

    return emit


def discard_stdout() -> None:
    """Point the standard output at /dev/null, so that nothing written later (and nothing
    flushed at exit) fails on a pipe or terminal that is gone."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


class Console:
    """Human output: a live progress bar on a terminal, plain lines elsewhere."""

    def __init__(self, total_steps: int, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.total = total_steps
        self._progress: Any = None
        self._task: Any = None
        self._asking = False
        # Called once when the output goes away (``| head`` exited, the terminal hung up):
        # the run stops as on Ctrl-C rather than dying mid-step on a write.
        self.on_closed: Callable[[], None] = lambda: None
        self.closed = False

    def __enter__(self) -> Console:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                countdown_column(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("migrating", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def done_before(self, steps: int) -> None:
        """The steps an earlier run of this plan finished (``steps_done``): a resumed run's
        bar counts on from them, and ends full."""
        if self._progress is not None:
            self._progress.update(self._task, completed=steps)

    @contextlib.contextmanager
    def asking(self) -> Iterator[None]:
        """While a question waits for the operator: the live bar is taken off the screen
        (each refresh would redraw it over the question) and drawn again below the answer."""
        if self._progress is None or self._asking:
            yield
            return
        live = self._progress.live
        self._asking = True
        live.transient = True  # stop() erases the bar instead of leaving a stale copy above the question
        self._progress.stop()
        try:
            yield
        finally:
            live.transient = False
            self._asking = False
            if self._progress is not None:
                self._progress.start()

    def print(self, line: str) -> None:
        if self.closed:
            return
        try:
            if self._progress is not None:
                self._progress.console.print(line, markup=False, highlight=False)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
        except OSError:  # EPIPE, or EIO from a terminal that hung up
            self.closed = True
            if self._progress is not None:
                self._progress = None  # never drawn again
            discard_stdout()
            self.on_closed()

    def __call__(self, event: Event) -> None:
        if event.kind in ("wave-started", "step-started") and self._progress is not None:
            self._progress.update(self._task, until=None)  # a wait (soak) is over when work starts
        if event.kind == "wave-started":
            self.print(f"wave {event.wave}: {event.message}")
        elif event.kind == "step-started" and self._progress is not None:
            self._progress.update(self._task, description=f"{event.node} {event.phase} {event.step}")
        elif event.kind == "soak":
            # An intentional wait: a countdown in the bar on a terminal (redrawn by its
            # refresh), the moment it ends in plain output.
            until = time.time() + event.duration
            if self._progress is not None:
                self._progress.update(self._task, description=event.message, until=until)
            clock = datetime.fromtimestamp(until).astimezone().strftime("%H:%M:%S")
            self.print(f"{event.message} (until {clock})")
        elif event.kind == "step-finished":
            mark = "ok  " if event.outcome == "succeeded" else "FAIL"
            phase = "" if event.phase == "apply" else f"{event.phase} "
            self.print(f"  {mark} {event.node:<14} {phase}{event.step:<12} {event.message} ({event.duration:.1f}s)")
            if self._progress is not None and event.phase == "apply" and event.outcome == "succeeded":
                self._progress.advance(self._task)
        elif event.kind in ("wait", "surge", "handoff", "node-back"):
            self.print(f"  ...  {event.node:<14} {event.message}")
        elif event.kind == "prepare":
            self.print(f"{event.step}: {event.message}")
        elif event.kind == "node-state" and event.outcome != "migrated":
            self.print(f"  node {event.node} is {event.outcome}" + (f": {event.message}" if event.message else ""))
        elif event.kind == "run-finished" and event.outcome == "interrupted" and event.phase != "rollback":
            self.print(f"stopped: {event.message}")


def countdown_column() -> Any:
    """A progress column with the time left of an intentional wait (a soak): the task's
    ``until`` field, a Unix time; nothing when the run is not waiting. (Built on first use:
    rich's progress module is slow to import, and most commands never draw a bar.)"""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Countdown(ProgressColumn):
        def render(self, task: Any) -> Text:
            until = task.fields.get("until")
            if until is None:
                return Text("")
            return Text(f"{duration(max(0, math.ceil(until - time.time())))} left")

    return Countdown()


def steps_done(plan: Plan, state: RunState | None) -> int:
    """The forward steps of ``plan`` that an earlier run finished and this one will not run
    again: every step of a migrated node (or of one gone from the cluster: nothing is left
    to do there), the succeeded steps of a node under way. A node put back starts again."""
    if state is None or state.plan_id != plan.id:
        return 0
    done = 0
    for node in plan.nodes:
        run = state.nodes.get(node.name)
        if run is None:
            continue
        if run.state in (NodeState.MIGRATED, NodeState.GONE):
            done += len(node.steps)
        elif run.state is NodeState.IN_PROGRESS:
            done += sum(1 for s in node.steps if run.succeeded(s.id))
    return done


class NodeEvents:
    """Post step transitions as Kubernetes Events on the node (``kubectl describe node``),
    from a thread of their own, like client-go's event broadcaster: an Event is a courtesy
    to whoever runs kubectl describe, so it never holds up a step (fourteen a node, each an
    API request, on the steps' path) and never fails one. At most ``limit`` wait to be
    sent; past that they are dropped and counted. ``close`` sends what is queued, waiting
    at most ``timeout`` seconds for it."""

    def __init__(self, cluster: Cluster, limit: int = 10_000) -> None:
        self.cluster = cluster
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, str, str, bool] | None] = queue.Queue(limit)
        self._sender: threading.Thread | None = None
        self._start = threading.Lock()

    def __call__(self, event: Event) -> None:
        if not event.node or event.kind not in ("step-started", "step-finished", "node-state"):
            return
        if event.kind == "step-started":
            reason, message, warning = "MigrationStepStarted", f"{event.phase} {event.step} started", False
        elif event.kind == "step-finished":
            warning = event.outcome != "succeeded"
            reason = "MigrationStepFailed" if warning else "MigrationStepSucceeded"
            message = f"{event.phase} {event.step}: {event.message}"
        else:
            warning = event.outcome != "migrated"
            reason, message = "MigrationNode" + event.outcome.title().replace("-", ""), event.message or event.outcome
        with self._start:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send, name="node-events", daemon=True)
                self._sender.start()
        try:
            self._queue.put_nowait((event.node, reason, f"cni-migrate plan {event.plan_id}: {message}", warning))
        except queue.Full:
            self.dropped += 1

    def _send(self) -> None:
        while (item := self._queue.get()) is not None:
            with contextlib.suppress(Exception):
                self.cluster.record_event(*item)

    def close(self, timeout: float = 10.0) -> None:
        with self._start:
            sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(queue.Full):  # a full queue on a hung API: the thread is a daemon
                self._queue.put(None, timeout=timeout)
            sender.join(timeout)


def fan_out(*sinks: Callable[[Event], None]) -> Callable[[Event], None]:
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return emit
